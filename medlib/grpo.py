"""GRPO: TRL GRPOConfig from params, per-task reward recipes, the trainer, resume, per-reward logs.

vLLM rollouts: GRPOConfig's own `use_vllm`, `vllm_mode`, `vllm_gpu_memory_utilization`, ... fields
pass straight through `build_grpo_config`; they need the vllm package and are not exercised by
this repository's tests.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from medlib.reward_recipes import build_recipe, recipe_from_params, total_rewards
from medlib.rewards import RewardFunction, build_reward_functions
from medlib.sft import last_checkpoint

__all__ = ["build_grpo_config", "make_grpo_trainer", "reward_setup", "reward_series", "reward_summary",
           "scored_samples", "last_checkpoint", "resume_checkpoint", "TOTAL_REWARD_KEY"]

TOTAL_REWARD_KEY = "reward"  # TRL's key for the weighted total reward


def reward_setup(reward_functions: Sequence[str] = (), reward_weights: Sequence[float] | None = None,
                 reward_recipes: Mapping[str, Mapping[str, float]] | None = None
                 ) -> tuple[list[RewardFunction], list[float]]:
    """TRL reward functions and weights from params: default names/weights plus per-task recipes."""
    return build_recipe(recipe_from_params(reward_functions, reward_weights, reward_recipes))


def build_grpo_config(output_dir: str | Path, *, seed: int, reward_weights: list[float] | None = None,
                      report_to: str = "none", **training_fields: Any):
    """Return a TRL GRPOConfig; `training_fields` use GRPOConfig's own names (num_generations, beta, ...)."""
    from trl import GRPOConfig

    on_cuda = torch.cuda.is_available()
    fields: dict[str, Any] = {
        "output_dir": str(output_dir), "seed": seed, "data_seed": seed, "report_to": report_to,
        "use_cpu": not on_cuda, "bf16": on_cuda, "fp16": False, "dataloader_num_workers": 0,
        "logging_first_step": True,
        "remove_unused_columns": False,  # the rewards read answer/task/choices columns
    }
    if reward_weights:
        fields["reward_weights"] = list(reward_weights)
    fields.update(training_fields)
    return GRPOConfig(**fields)


def make_grpo_trainer(model: Any, processor: Any, config: Any, train_dataset: Any,
                      reward_funcs: Sequence[str | RewardFunction], callbacks: list | None = None):
    """Build TRL's GRPOTrainer with reward functions (or registry names); Unsloth patches it on CUDA."""
    from trl import GRPOTrainer

    functions = [build_reward_functions([f])[0] if isinstance(f, str) else f for f in reward_funcs]
    return GRPOTrainer(model=model, args=config, reward_funcs=functions, train_dataset=train_dataset,
                       processing_class=processor, callbacks=callbacks or [])


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

    from medlib.inference import generate_batch

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
