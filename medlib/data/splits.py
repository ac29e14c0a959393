"""A validation split for sources released without one (VQA-RAD has only train and test): carved from train, by image."""
from __future__ import annotations

from pathlib import Path

from medlib.data.records import read_records, split_records


def carve_validation(data_dir: str | Path, fraction: float, *, seed: int) -> Path | None:
    """Move a seeded `fraction` of train (grouped by first image) into validation.jsonl when there is none.

    Returns the written validation file, or None when nothing was done (fraction 0, a validation
    split already exists, or no train split). train.jsonl is rewritten atomically without those records.
    """
    from medlib.data.readers.common import write_jsonl

    data_dir = Path(data_dir)
    train, validation = data_dir / "train.jsonl", data_dir / "validation.jsonl"
    pending = data_dir / ".validation.jsonl.carved"
    if pending.exists() and not validation.exists():
        pending.replace(validation)  # a kill after train was rewritten: finish the move
        return validation
    if fraction <= 0 or validation.exists() or not train.exists():
        return None
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {fraction}")
    parts = split_records(read_records(train), {"train": 1 - fraction, "validation": fraction}, seed=seed)
    for record in parts["validation"]:
        record.setdefault("meta", {})["split"] = "validation"
    # Never both lose and duplicate records: validation waits beside train until train no longer holds them.
    write_jsonl(parts["validation"], pending)
    write_jsonl(parts["train"], train)
    pending.replace(validation)
    return validation
