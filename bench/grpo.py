"""GRPO throughput: medlib's path vs plain TRL on the same tiny config, side by side.

    .venv/bin/python bench/grpo.py [--steps 24] [--rollout-engine eager|compiled] [--rollout-batch-steps 4]
                                   [--finetune lora|full] [--no-vision-cache] [--image-size 112]
                                   [--checkpoint runs/tiny/sft/final] [--data-dir runs/tiny/data]

Without a checkpoint it builds the tiny random-init model and a small synthetic set in a
temporary folder. Both paths train the same number of completions per optimizer step. Prints
seconds per GRPO step and generated tokens per second in the steady state (after the first
generation cycle, which pays one-off set-up such as compilation) and the whole wall time, then
the steady-state ratio medlib / plain TRL.
"""
from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from medlib import data, models
from medlib.data import synthetic
from medlib.models import vision_cache
from medlib.pipeline import workspace
from medlib.training import grpo, rollouts
from medlib.training.rewards import accuracy_reward, format_reward

LORA = models.LoraParams(r=16, lora_alpha=32, lora_dropout=0.0)  # on the language model, vision frozen


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The GRPOConfig fields both paths share."""
    return {"max_steps": args.steps, "per_device_train_batch_size": args.batch_size,
            "num_generations": args.num_generations, "max_completion_length": args.max_completion_length,
            "temperature": 1.0, "beta": 0.0, "learning_rate": 1e-5, "logging_steps": 1, "save_strategy": "no",
            "report_to": "none", "disable_tqdm": True, "seed": 0,
            "gradient_checkpointing": args.gradient_checkpointing}


def _model(args: argparse.Namespace, checkpoint: str):
    """The checkpoint loaded with plain transformers for full fine-tuning or LoRA (the same for both paths)."""
    full = args.finetune == "full"
    pixels = args.image_size**2
    model, processor, backend = models.load_model(checkpoint, backend="hf", full_finetuning=full,
                                                  gradient_checkpointing=args.gradient_checkpointing,
                                                  min_pixels=pixels, max_pixels=pixels)
    model = models.prepare_for_training(model, backend, args.finetune, LORA,
                                        gradient_checkpointing=args.gradient_checkpointing)
    return model, processor


def _plain_trl(args: argparse.Namespace, checkpoint: str, dataset: Any, out_dir: Path):
    """TRL's GRPOTrainer as its documentation shows it: GRPOConfig + two reward functions."""
    from trl import GRPOConfig, GRPOTrainer

    from medlib.models.loading import mixed_precision

    fields = _fields(args)
    model, processor = _model(args, checkpoint)
    config = GRPOConfig(output_dir=str(out_dir), use_cpu=not torch.cuda.is_available(), **mixed_precision(),
                        reward_weights=[0.2, 0.8], **fields)
    return GRPOTrainer(model=model, args=config, reward_funcs=[format_reward, accuracy_reward],
                       train_dataset=dataset, processing_class=processor)


def _medlib(args: argparse.Namespace, checkpoint: str, dataset: Any, out_dir: Path):
    """medlib's path: reward recipe, rollout engine, batched rollouts and the vision feature cache."""
    model, processor = _model(args, checkpoint)
    cache = None if args.no_vision_cache else vision_cache.cache_for_training(model, 4.0)
    functions, weights = grpo.reward_setup(["format", "accuracy"], [0.2, 0.8])
    engine_fields = rollouts.rollout_config_fields(args.rollout_engine, backend="hf",
                                                   rollout_batch_steps=args.rollout_batch_steps)
    config = grpo.build_grpo_config(out_dir, reward_weights=weights, **_fields(args), **engine_fields)
    trainer = grpo.make_grpo_trainer(model, processor, config, dataset, functions, backend="hf")
    if args.rollout_engine == "compiled":
        rollouts.enable_compiled_decoding(trainer)
    return trainer, cache


class _StepClock(TrainerCallback):
    """Wall-clock time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        """Record the time (CUDA work finished)."""
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def _measure(trainer: Any, warmup_steps: int) -> dict[str, Any]:
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
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return {"s/step": seconds / steps, "tokens/s": tokens / seconds, "wall s": wall, "peak GiB": peak}


def _release() -> None:
    """Free the previous path's model before the next one is built, and reset the memory peak."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _inputs(args: argparse.Namespace, scratch: Path) -> tuple[str, Path]:
    """Checkpoint and data folder: the given ones, or a tiny model and synthetic set built in scratch."""
    checkpoint = args.checkpoint or workspace.ensure_base_model(str(scratch / "base"), "qwen2_5_vl",
                                                                image_size=args.image_size, seed=0)
    data_dir = Path(args.data_dir) if args.data_dir else scratch / "data"
    if not args.data_dir:
        synthetic.make_split(data_dir, "train", 64, seed=0, image_size=args.image_size)
    return checkpoint, data_dir


def main() -> None:
    """Run both paths on the same config and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps (a multiple of the batch steps)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=24)
    parser.add_argument("--rollout-engine", default="eager", choices=["eager", "compiled"],
                        help="medlib's rollout engine (see medlib.training.rollouts)")
    parser.add_argument("--rollout-batch-steps", type=int, default=4,
                        help="medlib generates the rollouts of this many steps in one batch (0: every step)")
    parser.add_argument("--finetune", default="lora", choices=["full", "lora"],
                        help="full fine-tuning, or LoRA r=16 on the language model (vision frozen: cache applies)")
    parser.add_argument("--no-vision-cache", action="store_true", help="medlib without its vision feature cache")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--checkpoint", default="", help="model folder (default: a fresh tiny model)")
    parser.add_argument("--data-dir", default="", help="records folder with train.jsonl (default: synthetic)")
    args = parser.parse_args()
    if args.rollout_batch_steps and args.steps % args.rollout_batch_steps:
        parser.error(f"--steps {args.steps} must be a multiple of --rollout-batch-steps {args.rollout_batch_steps}")
    workspace.seed_everything(0)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        checkpoint, data_dir = _inputs(args, scratch)
        records = data.read_records(data_dir / "train.jsonl")[: args.steps * args.batch_size]
        dataset = data.to_dataset(data.grpo_rows(records, data_dir, image_size=args.image_size))
        warmup = max(args.rollout_batch_steps, 1)  # one whole generation cycle of the medlib path
        results = {}
        workspace.seed_everything(0)
        results["plain TRL"] = _measure(_plain_trl(args, checkpoint, dataset, scratch / "plain"), warmup)
        _release()
        workspace.seed_everything(0)
        trainer, cache = _medlib(args, checkpoint, dataset, scratch / "medlib")
        results["medlib"] = _measure(trainer, warmup)
    print(f"\n{workspace.environment_line()}")
    print(f"{args.finetune} fine-tuning · {args.image_size}px · batch {args.batch_size} completions/step · "
          f"{args.num_generations} per prompt · {args.max_completion_length} new tokens · medlib rollouts: "
          f"{args.rollout_engine}, {max(args.rollout_batch_steps, 1)} step(s) per generation batch")
    if cache is not None:
        print(f"medlib vision feature cache: {cache.stats()}")
    print(f"{'path':<10} {'s/step':>8} {'tokens/s':>10} {'wall s':>8} {'peak GiB':>9}")
    for name, row in results.items():
        print(f"{name:<10} {row['s/step']:>8.3f} {row['tokens/s']:>10.1f} {row['wall s']:>8.1f} {row['peak GiB']:>9.1f}")
    ratio = results["medlib"]["tokens/s"] / results["plain TRL"]["tokens/s"]
    print(f"steady-state tokens/s ratio medlib / plain TRL: {ratio:.2f}× "
          f"(wall, with one-off compilation: {results['plain TRL']['wall s'] / results['medlib']['wall s']:.2f}×)")


if __name__ == "__main__":
    main()
