"""Stage parameters → TRL config fields, the fields always passed explicitly, and the effective config.

Every field TRL declares under a stage parameter's name passes straight through (`trl_fields`).
Unsloth's patched `SFTConfig`/`GRPOConfig` change many defaults (unsloth 2026.10.9
`models/rl.py`: the `replacements` blocks, and the `loss_type == 'dapo'` branch that turns on
`mask_truncated_completions` and `epsilon_high = 0.28` when dapo is passed explicitly), so a
run that leaves them unset trains differently on a GPU than on a CPU. `PINNED` lists them with
TRL 1.15's own default: the config builders always pass them (a stage parameter wins), and
`effective_config` shows what the trainer really runs with; `check_config` names any field a
config class or trainer changed after medlib set it.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

# medlib's "0 means never" for these intervals; TRL wants a strategy and a positive interval.
_INTERVALS = {"eval_steps": "eval_strategy", "save_steps": "save_strategy"}
_TRL_DEFAULT_INTERVAL = 500

# Field → TRL 1.15's default, for every field whose default Unsloth 2026.10.9 changes (its value in the comment).
# Not pinned on purpose: router_aux_loss_coef (MoE models only), vllm_importance_sampling_correction (vLLM
# rollouts only), generation_kwargs (Unsloth's {} means TRL's None), include_num_input_tokens_seen (logging).
PINNED_COMMON: dict[str, Any] = {
    "optim": "adamw_torch_fused",  # Unsloth: adamw_8bit
    "weight_decay": 0.0,  # Unsloth: 0.001
    "seed": 42,  # Unsloth: 3407
    "per_device_train_batch_size": 8,  # Unsloth: 4
    "gradient_accumulation_steps": 1,  # Unsloth: 2
    "per_device_eval_batch_size": 8,  # Unsloth: 4
    "eval_accumulation_steps": None,  # Unsloth: 2
    "torch_empty_cache_steps": None,  # Unsloth: 250
    "logging_steps": 10,  # Unsloth: 1
    "warmup_steps": 0,  # Unsloth: 0.1
    "logging_nan_inf_filter": True,  # Unsloth: False
}
PINNED: dict[str, dict[str, Any]] = {
    "sft": {**PINNED_COMMON, "learning_rate": 2e-5,  # Unsloth: 5e-5
            "padding_free": False},  # Unsloth: None (detects and may turn it on)
    "grpo": {**PINNED_COMMON, "learning_rate": 1e-6,  # Unsloth: 5e-5
             "num_generations": 8,  # Unsloth: 8 too, but its batch-size fix-up reads it
             "beta": 0.0,  # Unsloth: None, resolved from loss_type
             "loss_type": "dapo",  # Unsloth: None, resolved to dapo without the DAPO extras below
             "epsilon": 0.2,
             "epsilon_high": None,  # Unsloth: 0.28 for an explicit dapo (TRL: None = epsilon; medlib passes a number)
             "mask_truncated_completions": False,  # Unsloth: True for an explicit dapo
             "scale_rewards": "group"},  # Unsloth: forced to none for dr_grpo
}
# Shown in the effective config beside the pinned fields.
SHOWN: dict[str, tuple[str, ...]] = {
    "sft": ("bf16", "fp16", "learning_rate", "lr_scheduler_type", "max_steps", "num_train_epochs",
            "gradient_checkpointing", "max_length", "max_seq_length", "loss_type", "assistant_only_loss",
            "completion_only_loss"),
    "grpo": ("bf16", "fp16", "lr_scheduler_type", "max_steps", "gradient_checkpointing", "max_completion_length",
             "temperature", "importance_sampling_level", "steps_per_generation", "generation_batch_size",
             "cache_implementation", "reward_weights", "max_seq_length"),
}


def trl_fields(settings: Any, config_cls: type) -> dict[str, Any]:
    """The settings' fields that `config_cls` (SFTConfig, GRPOConfig) also declares, with intervals translated."""
    accepted = {f.name for f in dataclasses.fields(config_cls)}
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name in accepted}
    for interval, strategy in _INTERVALS.items():
        if interval in values:
            every = values[interval]
            values[strategy] = "steps" if every > 0 else "no"
            values[interval] = every if every > 0 else _TRL_DEFAULT_INTERVAL
    if "seed" in values:
        values["data_seed"] = values["seed"]
    return values


def pinned_fields(kind: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every pinned field of `kind` (sft | grpo): the given value, else TRL's default."""
    values = {**PINNED[kind], **{name: given[name] for name in PINNED[kind] if name in given}}
    if kind == "grpo":
        if values["epsilon_high"] is None:  # TRL's meaning of None; a number, so Unsloth cannot read it as unset
            values["epsilon_high"] = values["epsilon"]
        if values["loss_type"] == "dr_grpo" and values["scale_rewards"] not in ("none", False):
            raise ValueError(f"grpo: loss_type dr_grpo needs scale_rewards: none, got {values['scale_rewards']!r} "
                             "(the Dr. GRPO paper; Unsloth forces it, so another value would train differently there)")
    return values


def _plain(value: Any) -> Any:
    """A config value as JSON can hold it (enums by value, anything odd as text)."""
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def effective_config(config: Any, kind: str) -> dict[str, Any]:
    """The pinned and shown fields of a built config or a trainer's `args`, as plain values."""
    names = [*PINNED[kind], *SHOWN[kind]]
    return {name: _plain(getattr(config, name)) for name in names if hasattr(config, name)}


def changed_fields(requested: Mapping[str, Any], config: Any, kind: str) -> dict[str, list[Any]]:
    """Fields whose value in `config` is not what medlib asked for: name → [asked, got]."""
    watched = set(PINNED[kind]) | set(SHOWN[kind])
    changes = {}
    for name, asked in requested.items():
        if name in watched and hasattr(config, name):
            got = _plain(getattr(config, name))
            if _plain(asked) != got:
                changes[name] = [_plain(asked), got]
    return changes


def announce(kind: str, backend: str, effective: Mapping[str, Any], changed: Mapping[str, list[Any]]) -> None:
    """Print the effective trainer config, and every field the config class or trainer changed."""
    text = " ".join(f"{name}={value}" for name, value in effective.items())
    print(f"[medlib] {kind} trainer config ({backend} backend): {text}", flush=True)
    for name, (asked, got) in changed.items():
        print(f"[medlib] WARNING: {kind}: the {backend} trainer changed {name} from {asked!r} to {got!r}", flush=True)


def remember_changes(config: Any, requested: Mapping[str, Any], kind: str) -> None:
    """Keep on the config the fields its class changed from `requested` (Unsloth's patched configs do)."""
    config._medlib_changed = changed_fields(requested, config, kind)


def report_start(trainer: Any, config: Any, before: Mapping[str, Any], kind: str, backend: str) -> dict[str, Any]:
    """Print a new trainer's effective config and every field changed after medlib set it; keep it on the trainer.

    `before` is `effective_config(config)` taken before the trainer was built (Unsloth's trainers adjust args).
    """
    changed = {**getattr(config, "_medlib_changed", {}), **changed_fields(before, trainer.args, kind)}
    effective = effective_config(trainer.args, kind)
    announce(kind, backend, effective, changed)
    trainer.medlib_config = {"backend": backend, "effective": effective, "changed": changed}
    return trainer.medlib_config
