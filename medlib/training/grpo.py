"""GRPO: TRL GRPOConfig from params, per-task reward recipes, the trainer, resume, per-reward logs.

Rollout engines (TRL's eager generate, compiled static-cache decoding, vLLM) are chosen in
`medlib.training.rollouts`; `train` runs the whole stage in one process or one rank of a torchrun job.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from medlib.pipeline.declaration import build, pick, refuse_conflicts
from medlib.training import grpo_diagnostics, trl_config
from medlib.training.params import GRPOParams
from medlib.training.rewards import RewardFunction, build_reward_functions
from medlib.training.rewards.recipes import build_recipe, recipe_from_params, total_rewards
from medlib.training.selection import training_records
from medlib.training.settings import begin_stage, finish_training, trainable_model
from medlib.training.sft import last_checkpoint
from medlib.training.trl_config import trl_fields

__all__ = ["build_grpo_config", "make_grpo_trainer", "reward_setup", "reward_series", "reward_summary",
           "scored_samples", "last_checkpoint", "resume_checkpoint", "TOTAL_REWARD_KEY", "GRPOParams",
           "settings_from", "train", "run"]

TOTAL_REWARD_KEY = "reward"  # TRL's key for the weighted total reward
BASE_CHECKPOINT = "base"  # init_checkpoint value: start from the base model, no SFT stage (Med-R1)


def reward_setup(reward_functions: Sequence[str] = (), reward_weights: Sequence[float] | None = None,
                 reward_recipes: Mapping[str, Mapping[str, float]] | None = None
                 ) -> tuple[list[RewardFunction], list[float]]:
    """TRL reward functions and weights from params: default names/weights plus per-task recipes."""
    return build_recipe(recipe_from_params(reward_functions, reward_weights, reward_recipes))


def build_grpo_config(output_dir: str | Path, *, seed: int, reward_weights: list[float] | None = None,
                      report_to: str = "none", **training_fields: Any):
    """Return a TRL GRPOConfig; `training_fields` use GRPOConfig's own names (num_generations, beta, ...).

    Every field whose default Unsloth changes is passed explicitly (`trl_config.PINNED`: optim,
    weight_decay, loss_type with epsilon_high and mask_truncated_completions, ...), and the bf16/fp16
    flags follow the GPU (`models.loading.mixed_precision`), so a run trains the same on both backends.
    """
    from trl import GRPOConfig

    from medlib.models.loading import mixed_precision

    fields: dict[str, Any] = {
        "output_dir": str(output_dir), "seed": seed, "data_seed": seed, "report_to": report_to,
        "use_cpu": not torch.cuda.is_available(), **mixed_precision(), "dataloader_num_workers": 0,
        "logging_first_step": True,
        "remove_unused_columns": False,  # the rewards read answer/task/choices columns
    }
    if reward_weights:
        fields["reward_weights"] = list(reward_weights)
    fields.update(training_fields)
    fields.update(trl_config.pinned_fields("grpo", fields))
    config = GRPOConfig(**fields)
    trl_config.remember_changes(config, fields, "grpo")  # what Unsloth's patched class changed, if anything
    return config


def make_grpo_trainer(model: Any, processor: Any, config: Any, train_dataset: Any,
                      reward_funcs: Sequence[str | RewardFunction], callbacks: list | None = None,
                      backend: str | None = None):
    """Build TRL's GRPOTrainer with reward functions (or registry names); Unsloth patches it on CUDA.

    Prompts too long for the model's `max_seq_length` with `max_completion_length` new tokens are an
    error first; the effective trainer config is printed and kept as `trainer.medlib_config`.
    """
    from trl import GRPOTrainer

    from medlib.models.loading import resolve_backend
    from medlib.training.lengths import check_row_lengths

    check_row_lengths(train_dataset, processor, getattr(model, "max_seq_length", None), stage="grpo",
                      new_tokens=config.max_completion_length or 0)
    functions = [build_reward_functions([f])[0] if isinstance(f, str) else f for f in reward_funcs]
    before = trl_config.effective_config(config, "grpo")
    trainer = GRPOTrainer(model=model, args=config, reward_funcs=functions, train_dataset=train_dataset,
                          processing_class=processor, callbacks=callbacks or [])
    trl_config.report_start(trainer, config, before, "grpo", backend or resolve_backend("auto"))
    return trainer


def resume_checkpoint(output_dir: str | Path, resume: bool) -> str | None:
    """The checkpoint to resume from: the newest under output_dir when `resume`, else None."""
    return last_checkpoint(output_dir) if resume else None


def reward_series(log_history: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Collect each logged reward component, the total, completion length and KL over steps."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in log_history:
        if "step" not in entry:
            continue
        for key, value in entry.items():
            wanted = (key.startswith("rewards/") and key.endswith("/mean")) or key in (
                TOTAL_REWARD_KEY, "kl", "completions/mean_length")
            if wanted and isinstance(value, (int, float)) and math.isfinite(value):
                steps, values = series.setdefault(key, ([], []))
                steps.append(int(entry["step"]))
                values.append(float(value))
    return series


def reward_summary(log_history: list[dict[str, Any]], window: int = 5) -> dict[str, Any]:
    """Mean of each reward series over its first and last `window` logged steps."""
    summary: dict[str, Any] = {}
    for key, (_, values) in reward_series(log_history).items():
        head, tail = values[:window], values[-window:]
        summary[key] = {"first": sum(head) / len(head), "last": sum(tail) / len(tail)}
    return summary


def scored_samples(model: Any, processor: Any, records: list[dict[str, Any]], data_root: str | Path,
                   reward_funcs: Sequence[str | RewardFunction], *, image_size: int | None, answer_format: str,
                   system_prompt: str | None, max_new_tokens: int, reward_weights: Sequence[float] | None = None,
                   temperature: float = 1.0, seed: int = 0):
    """Sample one completion per record and score it with each reward and the weighted total: a DataFrame."""
    import pandas as pd

    from medlib.evaluation.inference import generate_batch

    torch.manual_seed(seed)
    completions = generate_batch(model, processor, records, data_root, image_size=image_size,
                                 answer_format=answer_format, system_prompt=system_prompt,
                                 max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature)
    table = pd.DataFrame({"question": [r["question"] for r in records], "answer": [r["answer"] for r in records],
                          "completion": completions})
    columns = {"answer": [r["answer"] for r in records], "task": [r["task"] for r in records],
               "choices": [r.get("choices") for r in records]}
    functions = [build_reward_functions([f])[0] if isinstance(f, str) else f for f in reward_funcs]
    scores = [function([None] * len(records), completions, **columns) for function in functions]
    for function, values in zip(functions, scores, strict=True):
        table[function.__name__] = values
    weights = list(reward_weights) if reward_weights else [1.0] * len(functions)
    table["total"] = total_rewards(weights, scores)
    return table


def settings_from(namespace: Mapping[str, Any]) -> GRPOParams:
    """The GRPO parameters declared in a namespace (a notebook's globals)."""
    return pick(GRPOParams, namespace)


def settings_from_params(values: Mapping[str, Any]) -> GRPOParams:
    """The GRPO parameters from a resolved params mapping; unknown names are an error."""
    return build(GRPOParams, values, where="grpo")


def start_checkpoint(settings: GRPOParams, sft_final: Path | str) -> str:
    """What GRPO starts from: `init_checkpoint`, the base model for `base` (built first when tiny), else SFT's final."""
    if settings.init_checkpoint == BASE_CHECKPOINT:
        from medlib.training.launch import base_model_for_rank

        return base_model_for_rank(settings.model_id, settings.tiny_arch, image_size=settings.image_size,
                                   seed=settings.seed)
    return settings.init_checkpoint or str(sft_final)


def train(settings: GRPOParams) -> dict[str, Any]:
    """Run GRPO end to end from the SFT checkpoint (this process, or one torchrun rank); return the summary."""
    from medlib import data, models
    from medlib.training import rollouts

    backend, paths = begin_stage(settings, "grpo")
    start = start_checkpoint(settings, paths["sft_final"])
    model, processor, backend, parameter_counts, cache = trainable_model(settings, start, backend,
                                                                         models.lora_params_of(settings))
    records = training_records(settings)
    dataset = data.to_dataset(data.grpo_rows(records, settings.data_dir, image_size=settings.image_size,
                                             answer_format=settings.answer_format,
                                             system_prompt=settings.system_prompt or None))
    reward_funcs, weights = reward_setup(settings.reward_functions, settings.reward_weights, settings.reward_recipes)
    engine_fields = rollouts.rollout_config_fields(
        settings.rollout_engine, backend=backend, rollout_batch_steps=settings.rollout_batch_steps,
        gradient_accumulation_steps=settings.gradient_accumulation_steps)
    from trl import GRPOConfig

    config = build_grpo_config(
        paths["grpo"], **{**trl_fields(settings, GRPOConfig), "reward_weights": weights, **engine_fields},
        log_completions=settings.report_to in ("wandb", "trackio"))  # completion tables for those trackers only
    heldout = grpo_diagnostics.heldout_callback(settings, processor, reward_funcs, weights, run_folder=paths["grpo"])
    trainer = make_grpo_trainer(model, processor, config, dataset, reward_funcs, backend=backend,
                                callbacks=[heldout] if heldout else [])
    if settings.rollout_engine == "compiled":
        rollouts.enable_compiled_decoding(trainer)
    from medlib.training.doctor import at_training_start

    guard_report = at_training_start("grpo", settings, trainer, processor, backend)  # stops on a silent failure
    checkpoint = resume_checkpoint(paths["grpo"], settings.resume)
    trainer.train(resume_from_checkpoint=checkpoint)
    summary = {"global_step": int(trainer.state.global_step), "backend": backend,
               "rollout_engine": settings.rollout_engine, "finetune_mode": settings.finetune_mode,
               "parameters": parameter_counts, "train_prompts": len(dataset), "resumed_from": checkpoint,
               "world_size": int(trainer.args.world_size), "started_from": start,
               "reward_weights": dict(zip([f.__name__ for f in reward_funcs], weights, strict=True)),
               "rewards": reward_summary(trainer.state.log_history), "checkpoint": str(paths["grpo_final"]),
               "diagnostics": grpo_diagnostics.series_summary(grpo_diagnostics.diagnostic_series(
                   trainer.state.log_history)),
               "vision_cache": cache.stats() if cache else None, "guards": guard_report,
               "log_history": trainer.state.log_history}
    if heldout is not None and heldout.kept is not None:
        summary["heldout_best"] = heldout.kept
    summary = finish_training(trainer, processor, paths, "grpo", summary)
    if trainer.is_world_process_zero():
        # The final checkpoint holds the kept weights; a second copy of a full fine-tune is not worth its disk
        # (also left by an interrupted keep_best_heldout run resumed with the option off).
        grpo_diagnostics.BestHeldOutStep(Path(summary["checkpoint"]).parent).remove_files()
    return summary


def run(settings: GRPOParams) -> dict[str, Any]:
    """Train in this process, or launch `num_processes` ranks with torchrun and read rank 0's summary."""
    refuse_conflicts(settings, "grpo")  # a notebook's edited parameters cell is not read through a profile
    if settings.num_processes <= 1:
        return train(settings)
    from medlib.pipeline.workspace import stage_paths
    from medlib.training.launch import torchrun_stage

    return torchrun_stage("grpo", asdict(settings), stage_paths(settings.runs_dir)["grpo"], settings.num_processes)
