"""GRPO throughput: medlib's path vs plain TRL on the same tiny config, side by side.

    .venv/bin/python bench/grpo.py [--steps 24] [--rollout-engine compiled] [--rollout-batch-steps 4]
                                   [--checkpoint runs/tiny/sft/final] [--data-dir runs/tiny/data]

Without a checkpoint it builds the tiny random-init model and a small synthetic set in a
temporary folder. Both paths train the same number of completions per optimizer step. Prints
seconds per GRPO step and generated tokens per second in the steady state (after the first
generation cycle, which pays one-off set-up such as compilation) and the whole wall time, then
the steady-state ratio medlib / plain TRL.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from medlib import data, grpo, models, rollouts, synthetic, workspace
from medlib.rewards import accuracy_reward, format_reward

IMAGE_SIZE = 112


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The GRPOConfig fields both paths share."""
    return {"max_steps": args.steps, "per_device_train_batch_size": args.batch_size,
            "num_generations": args.num_generations, "max_completion_length": args.max_completion_length,
            "temperature": 1.0, "beta": 0.0, "learning_rate": 1e-5, "logging_steps": 1, "save_strategy": "no",
            "report_to": "none", "disable_tqdm": True, "seed": 0, "gradient_checkpointing": False}


def _model(checkpoint: str):
    """The checkpoint loaded for full fine-tuning with plain transformers (the same for both paths)."""
    model, processor, backend = models.load_model(checkpoint, backend="hf", full_finetuning=True,
                                                  min_pixels=IMAGE_SIZE**2, max_pixels=IMAGE_SIZE**2)
    return models.prepare_for_training(model, backend, "full", models.LoraSettings()), processor


def _plain_trl(checkpoint: str, dataset: Any, out_dir: Path, fields: dict[str, Any]):
    """TRL's GRPOTrainer as its documentation shows it: GRPOConfig + two reward functions."""
    from trl import GRPOConfig, GRPOTrainer

    model, processor = _model(checkpoint)
    on_cuda = torch.cuda.is_available()
    config = GRPOConfig(output_dir=str(out_dir), use_cpu=not on_cuda, bf16=on_cuda, reward_weights=[0.2, 0.8],
                        **fields)
    return GRPOTrainer(model=model, args=config, reward_funcs=[format_reward, accuracy_reward],
                       train_dataset=dataset, processing_class=processor)


def _medlib(checkpoint: str, dataset: Any, out_dir: Path, fields: dict[str, Any], engine: str, batch_steps: int):
    """medlib's path: reward recipe from params, build_grpo_config with the rollout engine, make_grpo_trainer."""
    model, processor = _model(checkpoint)
    functions, weights = grpo.reward_setup(["format", "accuracy"], [0.2, 0.8])
    engine_fields = rollouts.rollout_config_fields(engine, backend="hf", rollout_batch_steps=batch_steps)
    config = grpo.build_grpo_config(out_dir, reward_weights=weights, **fields, **engine_fields)
    trainer = grpo.make_grpo_trainer(model, processor, config, dataset, functions)
    if engine == "compiled":
        rollouts.enable_compiled_decoding(trainer)
    return trainer


class _StepClock(TrainerCallback):
    """Wall-clock time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        """Record the time (CUDA work finished)."""
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def _measure(trainer: Any, warmup_steps: int) -> dict[str, float]:
    """Train; steady-state seconds per step and generated tokens per second after `warmup_steps`, and wall time."""
    clock = _StepClock()
    trainer.add_callback(clock)
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    generation_rows = trainer.args.generation_batch_size
    # Generation metrics are logged at the steps that generated; each covers one generation batch.
    tokens = sum(entry["completions/mean_length"] * generation_rows for entry in trainer.state.log_history
                 if "completions/mean_length" in entry and entry.get("step", 0) > warmup_steps)
    seconds = clock.ends[-1] - clock.ends[warmup_steps - 1]
    steps = len(clock.ends) - warmup_steps
    return {"s/step": seconds / steps, "tokens/s": tokens / seconds, "wall s": wall}


def _inputs(args: argparse.Namespace, scratch: Path) -> tuple[str, Path]:
    """Checkpoint and data folder: the given ones, or a tiny model and synthetic set built in scratch."""
    checkpoint = args.checkpoint or workspace.ensure_base_model(str(scratch / "base"), "qwen2_5_vl",
                                                                image_size=IMAGE_SIZE, seed=0)
    data_dir = Path(args.data_dir) if args.data_dir else scratch / "data"
    if not args.data_dir:
        synthetic.make_split(data_dir, "train", 64, seed=0, image_size=IMAGE_SIZE)
    return checkpoint, data_dir


def main() -> None:
    """Run both paths on the same config and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps (a multiple of the batch steps)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=24)
    parser.add_argument("--rollout-engine", default="compiled", choices=["eager", "compiled"],
                        help="medlib's rollout engine (see medlib.rollouts)")
    parser.add_argument("--rollout-batch-steps", type=int, default=4,
                        help="medlib generates the rollouts of this many steps in one batch (0: every step)")
    parser.add_argument("--checkpoint", default="", help="model folder (default: a fresh tiny model)")
    parser.add_argument("--data-dir", default="", help="records folder with train.jsonl (default: synthetic)")
    args = parser.parse_args()
    workspace.seed_everything(0)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        checkpoint, data_dir = _inputs(args, scratch)
        records = data.read_records(data_dir / "train.jsonl")[: args.steps * args.batch_size]
        dataset = data.to_dataset(data.grpo_rows(records, data_dir, image_size=IMAGE_SIZE))
        warmup = max(args.rollout_batch_steps, 1)  # one whole generation cycle of the medlib path
        results = {}
        workspace.seed_everything(0)
        trainer = _plain_trl(checkpoint, dataset, scratch / "plain", _fields(args))
        results["plain TRL"] = _measure(trainer, warmup)
        workspace.seed_everything(0)
        trainer = _medlib(checkpoint, dataset, scratch / "medlib", _fields(args), args.rollout_engine,
                          args.rollout_batch_steps)
        results["medlib"] = _measure(trainer, warmup)
    print(f"\n{workspace.environment_line()}")
    print(f"batch {args.batch_size} completions/step · {args.num_generations} per prompt · "
          f"{args.max_completion_length} new tokens · medlib rollouts: {args.rollout_engine}, "
          f"{max(args.rollout_batch_steps, 1)} step(s) per generation batch")
    print(f"{'path':<10} {'s/step':>8} {'tokens/s':>10} {'wall s':>8}")
    for name, row in results.items():
        print(f"{name:<10} {row['s/step']:>8.3f} {row['tokens/s']:>10.1f} {row['wall s']:>8.1f}")
    ratio = results["medlib"]["tokens/s"] / results["plain TRL"]["tokens/s"]
    print(f"steady-state tokens/s ratio medlib / plain TRL: {ratio:.2f}× "
          f"(wall, with one-off compilation: {results['plain TRL']['wall s'] / results['medlib']['wall s']:.2f}×)")


if __name__ == "__main__":
    main()
