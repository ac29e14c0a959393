"""GRPO: TRL GRPOConfig from params, combined named rewards, the trainer, per-reward logs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medlib.rewards import build_reward_functions
from medlib.sft import last_checkpoint

__all__ = ["build_grpo_config", "make_grpo_trainer", "reward_series", "reward_summary", "scored_samples",
           "last_checkpoint"]


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


def make_grpo_trainer(model: Any, processor: Any, config: Any, train_dataset: Any, reward_names: list[str],
                      callbacks: list | None = None):
    """Build TRL's GRPOTrainer with the named reward functions (Unsloth patches it on CUDA)."""
    from trl import GRPOTrainer

    return GRPOTrainer(model=model, args=config, reward_funcs=build_reward_functions(reward_names),
                       train_dataset=train_dataset, processing_class=processor, callbacks=callbacks or [])


def reward_series(log_history: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Collect each logged reward component, the total, completion length and KL over steps."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in log_history:
        if "step" not in entry:
            continue
        for key, value in entry.items():
            wanted = (key.startswith("rewards/") and key.endswith("/mean")) or key in (
                "reward", "kl", "completions/mean_length")
            if wanted and isinstance(value, (int, float)):
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
                   reward_names: list[str], *, image_size: int | None, answer_format: str,
                   system_prompt: str | None, max_new_tokens: int, temperature: float = 1.0, seed: int = 0):
    """Sample one completion per record and score it with each reward: a DataFrame to read."""
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
    for name, function in zip(reward_names, build_reward_functions(reward_names)):
        table[name] = function(prompts=[None] * len(records), completions=completions, **columns)
    return table
