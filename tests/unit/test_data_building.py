"""Data set building (medlib.data): subsets, seeded splits, curriculum, mixing, lazy images, resize policy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from medlib import data
from medlib.data.processing import load_image


def rec(i: int, task: str = "vqa_open", dataset: str = "a", image: str | None = None, **extra) -> dict:
    return {"id": f"r{i}", "dataset": dataset, "modality": "CT" if i % 2 else "MR", "task": task,
            "images": [image or f"img/{i}.png"], "question": "q", "answer": "x", "meta": {}, **extra}


RECORDS = [rec(i, task=("vqa_closed", "vqa_open", "classification", "report_generation")[i % 4],
               dataset=("a", "b")[i % 2], image=f"img/{i // 3}.png") for i in range(60)]


def test_select_records() -> None:
    assert len(data.select_records(RECORDS, datasets=["a"])) == 30
    assert {r["task"] for r in data.select_records(RECORDS, tasks=["vqa_open"])} == {"vqa_open"}
    assert {r["modality"] for r in data.select_records(RECORDS, modalities=["CT"])} == {"CT"}
    assert [r["id"] for r in data.select_records(RECORDS, max_samples=3)] == ["r0", "r1", "r2"]
    sampled = data.select_records(RECORDS, max_samples=5, seed=1)
    assert len(sampled) == 5 and sampled == data.select_records(RECORDS, max_samples=5, seed=1)
    assert sampled != data.select_records(RECORDS, max_samples=5, seed=2)
    assert len(data.select_records(RECORDS, max_samples=-1)) == 60
    with pytest.raises(ValueError, match="segmentation"):
        data.select_records(RECORDS, tasks=["segmentation"])


def test_split_records_is_seeded_and_keeps_images_together() -> None:
    splits = data.split_records(RECORDS, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)
    assert sum(map(len, splits.values())) == 60
    assert {name: len({r["images"][0] for r in rs}) for name, rs in splits.items()} == \
        {"train": 16, "validation": 2, "test": 2}
    images = {name: {r["images"][0] for r in rs} for name, rs in splits.items()}
    assert not images["train"] & images["validation"] and not images["train"] & images["test"]
    assert splits == data.split_records(RECORDS, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)
    assert splits != data.split_records(RECORDS, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=1)
    with pytest.raises(ValueError, match="sum to 1"):
        data.split_records(RECORDS, {"train": 0.8}, seed=0)


def test_curriculum_open_first_then_closed() -> None:
    ordered = data.curriculum_order(RECORDS, "open_first", seed=0)
    closed = [data.is_closed(r) for r in ordered]
    assert closed == sorted(closed) and closed.count(True) == 30
    assert sorted(r["id"] for r in ordered) == sorted(r["id"] for r in RECORDS)
    assert [data.is_closed(r) for r in data.curriculum_order(RECORDS, "closed_first", seed=0)][:30] == [True] * 30
    assert data.curriculum_order(RECORDS, "none") == RECORDS
    assert data.curriculum_order(RECORDS, "shuffle", seed=3) == data.curriculum_order(RECORDS, "shuffle", seed=3)
    assert data.is_closed(rec(0, task="counting", choices=["1", "2"]))
    with pytest.raises(ValueError, match="'hard_first'"):
        data.curriculum_order(RECORDS, "hard_first")


def test_mix_datasets_follows_the_ratios() -> None:
    records = [rec(i, dataset="big") for i in range(100)] + [rec(100 + i, dataset="small") for i in range(20)]
    mixed = data.mix_datasets(records, {"big": 3, "small": 1}, seed=0)
    assert Counter(r["dataset"] for r in mixed) == {"big": 60, "small": 20}  # the most that fit without repeats
    assert len({r["id"] for r in mixed}) == len(mixed)
    assert Counter(r["dataset"] for r in data.mix_datasets(records, {"big": 1, "small": 1}, seed=0, total=30)) == \
        {"big": 15, "small": 15}
    with pytest.raises(ValueError, match="at most 40"):
        data.mix_datasets(records, {"big": 1, "small": 1}, seed=0, total=50)
    with pytest.raises(ValueError, match="missing"):
        data.mix_datasets(records, {"other": 1}, seed=0)


def test_lazy_dataset_opens_images_only_when_read(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    Image.new("L", (40, 20), 77).save(tmp_path / "img" / "0.png")
    records = [rec(0), rec(1)]  # img/1.png does not exist: building must not touch it
    dataset = data.lazy_dataset(records, tmp_path, image_size=16)
    assert len(dataset) == 2 and dataset.column_names[-1] == "image_paths"
    row = dataset[0]
    assert (row["images"][0].mode, row["images"][0].size) == ("RGB", (16, 16))
    assert row["images"][0].getpixel((3, 3)) == (77, 77, 77)
    with pytest.raises(FileNotFoundError):
        dataset[1]
    ranged = data.lazy_dataset(records[:1], tmp_path, max_pixels=200)[0]["images"][0]
    assert ranged.size == (20, 10)  # aspect kept, 800 → 200 pixels


def test_load_image_pixel_range(tmp_path: Path) -> None:
    Image.new("L", (40, 20)).save(tmp_path / "x.png")
    assert load_image(tmp_path / "x.png", min_pixels=3200).size == (80, 40)
    assert load_image(tmp_path / "x.png", max_pixels=200).size == (20, 10)
    assert load_image(tmp_path / "x.png", min_pixels=100, max_pixels=10_000).size == (40, 20)
    assert load_image(tmp_path / "x.png", 24, max_pixels=100).size == (24, 24)  # a fixed size wins
