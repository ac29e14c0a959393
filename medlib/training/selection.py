"""Which records a training stage trains on: data set and task filters, mixing ratios, a cap — the same for SFT and GRPO."""
from __future__ import annotations

from typing import Any

from medlib import data
from medlib.pipeline import workspace
from medlib.training.params import TrainingParams


def training_records(settings: TrainingParams, split: str = "train", limit: int | None = None) -> list[dict[str, Any]]:
    """Records of `split` selected by `train_datasets`/`train_tasks`, mixed by `dataset_mix`, at most `limit`."""
    records = data.read_records(workspace.split_path(settings.data_dir, split))
    records = data.select_records(records, datasets=settings.train_datasets or None,
                                  tasks=settings.train_tasks or None)
    if settings.dataset_mix and split == "train":
        records = data.mix_datasets(records, settings.dataset_mix, seed=settings.seed)
    cap = settings.max_train_samples if limit is None else limit
    return records if cap < 0 else records[:cap]
