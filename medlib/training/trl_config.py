"""Stage parameters → TRL config fields: every field TRL declares under the same name passes straight through."""
from __future__ import annotations

import dataclasses
from typing import Any

# medlib's "0 means never" for these intervals; TRL wants a strategy and a positive interval.
_INTERVALS = {"eval_steps": "eval_strategy", "save_steps": "save_strategy"}
_TRL_DEFAULT_INTERVAL = 500


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
