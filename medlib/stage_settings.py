"""Parameters the training notebooks share (the `common:` block and model loading), as a dataclass base."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

SettingsT = TypeVar("SettingsT", bound="TrainingStageSettings")


@dataclass
class TrainingStageSettings:
    """The fields every training stage has; each stage's dataclass adds its own."""

    experiment: str = "experiment"
    seed: int = 3407
    data_dir: str = "data/records"
    image_size: int = 448
    runs_dir: str = "runs/experiment"
    results_dir: str = "results/experiment"
    model_id: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    tiny_arch: str = ""
    backend: str = "auto"
    answer_format: str = "think_answer"
    system_prompt: str = ""
    trust_remote_code: bool = False
    report_to: str = "none"
    finetune_mode: str = "lora"
    load_in_4bit: bool = False
    gradient_checkpointing: bool = True
    vision_cache_gib: float = 4.0
    num_processes: int = 1

    @classmethod
    def from_namespace(cls: type[SettingsT], namespace: Mapping[str, Any]) -> SettingsT:
        """Pick this dataclass's fields out of a namespace (a notebook's globals, a params dict)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in namespace.items() if k in names})
