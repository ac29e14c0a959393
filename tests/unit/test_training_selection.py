"""Training selection (filters, mixing, cap) and the carved validation split."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medlib.data.splits import carve_validation
from medlib.pipeline.declaration import build
from medlib.training.params import SFTParams
from medlib.training.selection import training_records


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _records(n: int, dataset: str, task: str = "vqa_closed") -> list[dict]:
    return [{"id": f"{dataset}-{i}", "dataset": dataset, "modality": "CT", "task": task, "images": [f"{dataset}/{i // 2}.png"],
             "question": "q?", "answer": "yes", "meta": {"split": "train"}} for i in range(n)]


def test_training_records_filter_mix_and_cap(tmp_path: Path) -> None:
    _write(tmp_path / "train.jsonl", _records(20, "A") + _records(10, "B", "vqa_open") + _records(10, "C"))
    settings = build(SFTParams, {"data_dir": str(tmp_path)})
    assert len(training_records(settings)) == 40
    only_a = build(SFTParams, {"data_dir": str(tmp_path), "train_datasets": ["A"]})
    assert {r["dataset"] for r in training_records(only_a)} == {"A"}
    open_only = build(SFTParams, {"data_dir": str(tmp_path), "train_tasks": ["vqa_open"]})
    assert {r["task"] for r in training_records(open_only)} == {"vqa_open"}
    mixed = training_records(build(SFTParams, {"data_dir": str(tmp_path), "dataset_mix": {"A": 1, "B": 1}}))
    counts = {name: sum(r["dataset"] == name for r in mixed) for name in "ABC"}
    assert counts["A"] == counts["B"] > 0 and counts["C"] == 0
    capped = build(SFTParams, {"data_dir": str(tmp_path), "max_train_samples": 5})
    assert len(training_records(capped)) == 5
    with pytest.raises(ValueError, match="unknown tasks"):
        training_records(build(SFTParams, {"data_dir": str(tmp_path), "train_tasks": ["segmentation"]}))


def test_validation_is_carved_by_image_once_and_nothing_is_lost(tmp_path: Path) -> None:
    records = _records(40, "A")
    _write(tmp_path / "train.jsonl", records)
    written = carve_validation(tmp_path, 0.25, seed=0)
    assert written == tmp_path / "validation.jsonl"
    train = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    validation = [json.loads(x) for x in written.read_text().splitlines()]
    assert sorted(r["id"] for r in train + validation) == sorted(r["id"] for r in records)
    assert not {r["images"][0] for r in train} & {r["images"][0] for r in validation}
    assert 0 < len(validation) < len(train) and all(r["meta"]["split"] == "validation" for r in validation)
    assert carve_validation(tmp_path, 0.25, seed=0) is None  # a validation split exists: never twice
    assert carve_validation(tmp_path / "absent", 0.25, seed=0) is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        (tmp_path / "validation.jsonl").unlink()
        carve_validation(tmp_path, 1.5, seed=0)
