"""GRPO throughput: medlib's path vs plain TRL on the same tiny config, side by side.

    .venv/bin/python bench/grpo.py [--steps 12] [--checkpoint runs/tiny/sft/final] [--data-dir runs/tiny/data]

Without a checkpoint it builds the tiny random-init model and a small synthetic set in a
temporary folder. Prints seconds per GRPO step and generated tokens per second for each path
(steps after the first, which pays one-off set-up), then the ratio medlib / plain TRL.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from medlib import data, grpo, models, synthetic, workspace
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


def _medlib(checkpoint: str, dataset: Any, out_dir: Path, fields: dict[str, Any]):
    """medlib's path: reward recipe from params, build_grpo_config, make_grpo_trainer."""
    model, processor = _model(checkpoint)
    functions, weights = grpo.reward_setup(["format", "accuracy"], [0.2, 0.8])
    config = grpo.build_grpo_config(out_dir, reward_weights=weights, **fields)
    return grpo.make_grpo_trainer(model, processor, config, dataset, functions)


def _measure(trainer: Any, generations_per_step: int) -> dict[str, float]:
    """Train, then seconds per step and generated tokens per second over every step but the first."""
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    logs = [entry for entry in trainer.state.log_history if "step_time" in entry][1:]
    step_seconds = statistics.mean(entry["step_time"] for entry in logs)
    tokens = statistics.mean(entry["completions/mean_length"] for entry in logs) * generations_per_step
    return {"s/step": step_seconds, "tokens/s": tokens / step_seconds, "wall s": wall}


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
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=24)
    parser.add_argument("--checkpoint", default="", help="model folder (default: a fresh tiny model)")
    parser.add_argument("--data-dir", default="", help="records folder with train.jsonl (default: synthetic)")
    args = parser.parse_args()
    workspace.seed_everything(0)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        checkpoint, data_dir = _inputs(args, scratch)
        records = data.read_records(data_dir / "train.jsonl")[: args.steps * args.batch_size]
        dataset = data.to_dataset(data.grpo_rows(records, data_dir, image_size=IMAGE_SIZE))
        results = {}
        for name, build in (("plain TRL", _plain_trl), ("medlib", _medlib)):
            workspace.seed_everything(0)
            trainer = build(checkpoint, dataset, scratch / name.replace(" ", "_"), _fields(args))
            results[name] = _measure(trainer, args.batch_size)
    print(f"\n{workspace.environment_line()}")
    print(f"{'path':<10} {'s/step':>8} {'tokens/s':>10} {'wall s':>8}")
    for name, row in results.items():
        print(f"{name:<10} {row['s/step']:>8.3f} {row['tokens/s']:>10.1f} {row['wall s']:>8.1f}")
    ratio = results["medlib"]["tokens/s"] / results["plain TRL"]["tokens/s"]
    print(f"tokens/s ratio medlib / plain TRL: {ratio:.2f}×")


if __name__ == "__main__":
    main()
