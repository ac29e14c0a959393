"""Supervised fine-tuning: TRL SFTConfig from params, the trainer for either backend, resume."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

# Qwen chat markers that Unsloth's collator uses to keep the loss on assistant turns only.
INSTRUCTION_PART = "<|im_start|>user\n"
RESPONSE_PART = "<|im_start|>assistant\n"


def build_sft_config(output_dir: str | Path, *, backend: str, seed: int, report_to: str = "none",
                     **training_fields: Any):
    """Return a TRL SFTConfig; `training_fields` use SFTConfig's own names (learning_rate, max_steps, ...)."""
    from trl import SFTConfig

    on_cuda = torch.cuda.is_available()
    fields: dict[str, Any] = {
        "output_dir": str(output_dir), "seed": seed, "data_seed": seed, "report_to": report_to,
        "use_cpu": not on_cuda, "bf16": on_cuda, "fp16": False,
        "max_length": None,  # never truncate: cutting image tokens breaks the vision inputs
        "dataloader_num_workers": 0, "save_only_model": False, "logging_first_step": True,
    }
    fields.update(training_fields)
    if backend == "unsloth":
        # Unsloth's collator tokenises itself; TRL must not pre-process the vision rows.
        fields.update(remove_unused_columns=False, dataset_text_field="",
                      dataset_kwargs={"skip_prepare_dataset": True})
    return SFTConfig(**fields)


def make_sft_trainer(model: Any, processor: Any, backend: str, config: Any, train_dataset: Any,
                     eval_dataset: Any = None, callbacks: list | None = None):
    """Build the SFTTrainer: TRL's vision collator (hf) or Unsloth's (unsloth), loss on answers only."""
    from trl import SFTTrainer

    kwargs: dict[str, Any] = {"model": model, "args": config, "train_dataset": train_dataset,
                              "eval_dataset": eval_dataset, "processing_class": processor,
                              "callbacks": callbacks or []}
    if backend == "unsloth":
        from unsloth.trainer import UnslothVisionDataCollator

        kwargs["data_collator"] = UnslothVisionDataCollator(
            model, processor, train_on_responses_only=True, instruction_part=INSTRUCTION_PART,
            response_part=RESPONSE_PART, resize="max")
    return SFTTrainer(**kwargs)


def last_checkpoint(output_dir: str | Path) -> str | None:
    """Return the newest `checkpoint-N` folder under output_dir, or None."""
    folders = [p for p in Path(output_dir).glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)]
    if not folders:
        return None
    return str(max(folders, key=lambda p: int(p.name.split("-")[1])))


def log_series(log_history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Extract (steps, values) of one logged quantity (e.g. `loss`, `eval_loss`) from a Trainer log."""
    steps, values = [], []
    for entry in log_history:
        if key in entry and "step" in entry:
            steps.append(int(entry["step"]))
            values.append(float(entry[key]))
    return steps, values


def training_summary(trainer: Any) -> dict[str, Any]:
    """Summarise a finished run: steps, first/last train loss, best eval loss, runtime."""
    history = trainer.state.log_history
    _, losses = log_series(history, "loss")
    _, eval_losses = log_series(history, "eval_loss")
    runtime = [e["train_runtime"] for e in history if "train_runtime" in e]
    return {
        "global_step": int(trainer.state.global_step),
        "first_train_loss": losses[0] if losses else None,
        "last_train_loss": losses[-1] if losses else None,
        "best_eval_loss": min(eval_losses) if eval_losses else None,
        "train_runtime_s": runtime[-1] if runtime else None,
    }
