"""Worker for test_grpo_two_process: medlib's GRPO path under torchrun (DDP, gloo on CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from medlib import data, grpo, models

IMAGE_SIZE = 112


def main(checkpoint: str, data_dir: str, out_dir: str, max_steps: str) -> None:
    """Train GRPO up to max_steps, resuming from out_dir; rank 0 writes the world size and logged steps."""
    torch.set_num_threads(1)
    model, processor, backend = models.load_model(checkpoint, backend="hf", full_finetuning=True,
                                                  min_pixels=IMAGE_SIZE**2, max_pixels=IMAGE_SIZE**2)
    model = models.prepare_for_training(model, backend, "full", models.LoraSettings())
    records = data.read_records(Path(data_dir) / "train.jsonl")
    dataset = data.to_dataset(data.grpo_rows(records, data_dir, image_size=IMAGE_SIZE))
    functions, weights = grpo.reward_setup(["format", "accuracy"], [0.2, 0.8])
    config = grpo.build_grpo_config(out_dir, seed=0, reward_weights=weights, max_steps=int(max_steps),
                                    per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
                                    learning_rate=1e-4, beta=0.0, logging_steps=1, save_strategy="steps",
                                    save_steps=3, gradient_checkpointing=False, disable_tqdm=True,
                                    ddp_backend="gloo")
    trainer = grpo.make_grpo_trainer(model, processor, config, dataset, functions)
    trainer.train(resume_from_checkpoint=grpo.resume_checkpoint(out_dir, resume=True))
    if trainer.accelerator.is_main_process:
        steps, _ = grpo.reward_series(trainer.state.log_history).get("reward", ([], []))
        result = {"world_size": trainer.accelerator.num_processes, "global_step": trainer.state.global_step,
                  "logged_steps": steps}
        (Path(out_dir) / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:5])
