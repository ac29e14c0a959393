"""Supervised fine-tuning: TRL SFTConfig from params, the trainer for either backend, resume."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, TrainerCallback

from medlib.pipeline.declaration import build, pick, refuse_conflicts
from medlib.training import trl_config
from medlib.training.launch import base_model_for_rank
from medlib.training.params import SFTParams
from medlib.training.selection import training_records
from medlib.training.settings import begin_stage, finish_training, trainable_model
from medlib.training.trl_config import trl_fields

# Qwen chat markers that Unsloth's collator uses to keep the loss on assistant turns only.
INSTRUCTION_PART = "<|im_start|>user\n"
RESPONSE_PART = "<|im_start|>assistant\n"


def build_sft_config(output_dir: str | Path, *, backend: str, seed: int, report_to: str = "none",
                     **training_fields: Any):
    """Return a TRL SFTConfig; `training_fields` use SFTConfig's own names (learning_rate, max_steps, ...).

    Every field whose default Unsloth changes is passed explicitly (`trl_config.PINNED`), and the
    bf16/fp16 flags follow the GPU (`models.loading.mixed_precision`), so a run trains the same on both backends.
    """
    from trl import SFTConfig

    from medlib.models.loading import mixed_precision

    fields: dict[str, Any] = {
        "output_dir": str(output_dir), "seed": seed, "data_seed": seed, "report_to": report_to,
        "use_cpu": not torch.cuda.is_available(), **mixed_precision(),
        "max_length": None,  # never truncate: cutting image tokens breaks the vision inputs (max_seq_length checks rows)
        "dataloader_num_workers": 0, "save_only_model": False, "logging_first_step": True,
    }
    fields.update(training_fields)
    fields.update(trl_config.pinned_fields("sft", fields))
    if backend == "unsloth":
        # Unsloth's collator tokenises itself; TRL must not pre-process the vision rows.
        fields.update(remove_unused_columns=False, dataset_text_field="",
                      dataset_kwargs={"skip_prepare_dataset": True})
    config = SFTConfig(**fields)
    trl_config.remember_changes(config, fields, "sft")  # what Unsloth's patched class changed, if anything
    return config


def make_sft_trainer(model: Any, processor: Any, backend: str, config: Any, train_dataset: Any,
                     eval_dataset: Any = None, callbacks: list | None = None):
    """Build the SFTTrainer: TRL's vision collator (hf) or Unsloth's (unsloth), loss on answers only.

    Rows longer than the model's `max_seq_length` are an error first (`medlib.training.lengths`);
    the effective trainer config is printed and kept as `trainer.medlib_config`.
    """
    from trl import SFTTrainer

    from medlib.training.lengths import check_row_lengths

    max_seq_length = getattr(model, "max_seq_length", None)
    for dataset in (train_dataset, eval_dataset):
        check_row_lengths(dataset, processor, max_seq_length, stage="sft")
    kwargs: dict[str, Any] = {"model": model, "args": config, "train_dataset": train_dataset,
                              "eval_dataset": eval_dataset, "processing_class": processor,
                              "callbacks": callbacks or []}
    if backend == "unsloth":
        from unsloth.trainer import UnslothVisionDataCollator

        kwargs["data_collator"] = UnslothVisionDataCollator(
            model, processor, train_on_responses_only=True, instruction_part=INSTRUCTION_PART,
            response_part=RESPONSE_PART, resize="max", max_seq_length=max_seq_length)
    before = trl_config.effective_config(config, "sft")
    trainer = SFTTrainer(**kwargs)
    trl_config.report_start(trainer, config, before, "sft", backend)
    return trainer


def last_checkpoint(output_dir: str | Path) -> str | None:
    """Return the newest complete `checkpoint-N` folder under output_dir, or None.

    The Trainer writes trainer_state.json last, so a folder without it was cut off by a kill.
    """
    folders = [p for p in Path(output_dir).glob("checkpoint-*")
               if re.fullmatch(r"checkpoint-\d+", p.name) and (p / "trainer_state.json").exists()]
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


def settings_from(namespace: Mapping[str, Any]) -> SFTParams:
    """The SFT parameters declared in a namespace (a notebook's globals)."""
    return pick(SFTParams, namespace)


def settings_from_params(values: Mapping[str, Any]) -> SFTParams:
    """The SFT parameters from a resolved params mapping; unknown names are an error."""
    return build(SFTParams, values, where="sft")


class GenerationEvalCallback(TrainerCallback):
    """Every N steps: generate on a validation slice, log `eval_task_accuracy`, keep the best model."""

    def __init__(self, processor: Any, records: list[dict[str, Any]], settings: SFTParams, best_dir: Path):
        self.processor, self.records, self.settings, self.best_dir = processor, records, settings, best_dir
        self.best: float | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        """Score generations at the configured interval (main process only)."""
        every = self.settings.generation_eval_steps
        if not every or state.global_step % every or not state.is_world_process_zero:
            return control
        from medlib import models
        from medlib.evaluation import inference, metrics

        unwrapped = getattr(model, "module", model)
        was_training = unwrapped.training
        predictions = inference.predict_records(
            unwrapped, self.processor, self.records, self.settings.data_dir, checkpoint=f"step-{state.global_step}",
            image_size=self.settings.image_size, answer_format=self.settings.answer_format,
            system_prompt=self.settings.system_prompt or None, batch_size=16, max_new_tokens=0, progress=False)
        accuracy = metrics.score_predictions(predictions)["overall"]["accuracy"]
        state.log_history.append({"step": state.global_step, "eval_task_accuracy": accuracy})
        if self.settings.best_metric == "task_accuracy" and (self.best is None or accuracy > self.best):
            self.best = accuracy
            models.save_checkpoint(unwrapped, self.processor, self.best_dir)
        if was_training:  # Unsloth's generate turned gradient checkpointing off: train() alone keeps it off
            from medlib.models.loading import for_training, resolve_backend

            for_training(unwrapped, resolve_backend(self.settings.backend))
        return control


def _rows(settings: SFTParams, split: str, limit: int, style: str):
    """Training rows of one split as a Dataset (curriculum order for the training split)."""
    from medlib import data

    records = training_records(settings, split, limit)
    if split == "train" and settings.curriculum != "none":
        records = data.curriculum_order(records, settings.curriculum, seed=settings.seed)
    rows = data.sft_rows(records, settings.data_dir, image_size=settings.image_size,
                         answer_format=settings.answer_format, system_prompt=settings.system_prompt or None,
                         style=style)
    return data.to_dataset(rows), records


def train(settings: SFTParams) -> dict[str, Any]:
    """Run SFT end to end (in this process, or one rank of a torchrun job); return the summary."""
    from medlib import data, models
    from medlib.pipeline import workspace

    backend, paths = begin_stage(settings, "sft")
    base_id = base_model_for_rank(settings.model_id, settings.tiny_arch, image_size=settings.image_size,
                                  seed=settings.seed)
    lora = models.lora_params_of(settings)
    model, processor, backend, parameter_counts, cache = trainable_model(settings, base_id, backend, lora)
    style = "messages" if backend == "unsloth" else "prompt_completion"
    train_dataset, _ = _rows(settings, "train", settings.max_train_samples, style)
    evaluating = settings.eval_steps > 0
    eval_dataset = _rows(settings, "validation", settings.max_eval_samples, style)[0] if evaluating else None
    keep_best = settings.early_stopping_patience > 0 and settings.best_metric == "eval_loss"
    from trl import SFTConfig

    config = build_sft_config(
        paths["sft"], backend=backend, **trl_fields(settings, SFTConfig),
        per_device_eval_batch_size=settings.per_device_train_batch_size,
        load_best_model_at_end=keep_best, metric_for_best_model="eval_loss" if keep_best else None,
        greater_is_better=False if keep_best else None,
        **({"train_sampling_strategy": "sequential"} if settings.curriculum not in ("none", "shuffle") else {}))
    callbacks: list = []
    if keep_best:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience))
    if settings.generation_eval_steps > 0:
        slice_records = data.read_records(workspace.split_path(settings.data_dir, "validation"))
        callbacks.append(GenerationEvalCallback(processor, slice_records[:settings.generation_eval_samples],
                                                settings, paths["sft"] / "best"))
    trainer = make_sft_trainer(model, processor, backend, config, train_dataset, eval_dataset, callbacks)
    from medlib.training.doctor import at_training_start

    guard_report = at_training_start("sft", settings, trainer, processor, backend)  # stops on a silent failure
    checkpoint = last_checkpoint(paths["sft"]) if settings.resume else None
    trainer.train(resume_from_checkpoint=checkpoint)
    summary = {**training_summary(trainer), "backend": backend, "finetune_mode": settings.finetune_mode,
               "parameters": parameter_counts, "train_questions": len(train_dataset),
               "resumed_from": checkpoint, "world_size": int(trainer.args.world_size),
               "checkpoint": str(paths["sft_final"]), "vision_cache": cache.stats() if cache else None,
               "guards": guard_report, "log_history": trainer.state.log_history}
    return finish_training(trainer, processor, paths, "sft", summary,
                           merged=settings.save_merged and settings.finetune_mode == "lora")


def run(settings: SFTParams) -> dict[str, Any]:
    """Train in this process, or launch `num_processes` ranks with torchrun and read rank 0's summary."""
    refuse_conflicts(settings, "sft")  # a notebook's edited parameters cell is not read through a profile
    if settings.num_processes <= 1:
        return train(settings)
    from medlib.pipeline.workspace import ensure_base_model, stage_paths
    from medlib.training.launch import torchrun_stage

    ensure_base_model(settings.model_id, settings.tiny_arch, image_size=settings.image_size, seed=settings.seed)
    return torchrun_stage("sft", asdict(settings), stage_paths(settings.runs_dir)["sft"], settings.num_processes)
