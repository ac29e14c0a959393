"""The synthetic lesion data set (medlib.data.synthetic): deterministic, balanced, answer determined by the image."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlib.data import read_records, synthetic, validate_record
from medlib.data.synthetic import ensure_dataset, make_split

ALL_TYPES = ("presence", "count", "side")
BRIGHT = 160  # disks are drawn around 215, the background around 70 ± 18
MIN_BLOB_PIXELS = 20  # a disk of radius >= 3 has ~30 pixels; lone noise pixels are not lesions

try:
    from scipy import ndimage
except ImportError:  # pragma: no cover - scipy ships with the dev environment
    ndimage = None


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: (labels, count), with scipy or a small flood fill."""
    if ndimage is not None:
        return ndimage.label(mask)
    labels = np.zeros(mask.shape, dtype=int)
    count = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        stack = [start]
        while stack:
            y, x = stack.pop()
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = count
                    stack.append((ny, nx))
    return labels, count


def bright_blobs(pixels: np.ndarray) -> list[tuple[float, float]]:
    """Centroids (x, y) of the bright blobs big enough to be drawn disks."""
    labels, count = label_components(pixels > BRIGHT)
    centroids = []
    for label in range(1, count + 1):
        ys, xs = np.nonzero(labels == label)
        if len(xs) >= MIN_BLOB_PIXELS:
            centroids.append((float(xs.mean()), float(ys.mean())))
    return centroids


def pixels_of(root: Path, record: dict) -> np.ndarray:
    with Image.open(root / record["images"][0]) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def big_split(tmp_path_factory) -> tuple[Path, list[dict]]:
    """400 records of every question type, generated once."""
    root = tmp_path_factory.mktemp("synthetic")
    return root, read_records(make_split(root, "train", 400, seed=7, question_types=ALL_TYPES))


def test_same_seed_is_byte_identical(tmp_path: Path) -> None:
    first = make_split(tmp_path / "a", "train", 12, seed=3, question_types=ALL_TYPES)
    second = make_split(tmp_path / "b", "train", 12, seed=3, question_types=ALL_TYPES)
    assert first.read_bytes() == second.read_bytes()
    for record in read_records(first):
        assert np.array_equal(pixels_of(tmp_path / "a", record), pixels_of(tmp_path / "b", record))


def test_other_seed_or_split_differs(tmp_path: Path) -> None:
    base = make_split(tmp_path / "a", "train", 12, seed=3, question_types=ALL_TYPES)
    other = make_split(tmp_path / "b", "train", 12, seed=4, question_types=ALL_TYPES)
    assert base.read_bytes() != other.read_bytes()
    base_records = read_records(base)
    assert all(not np.array_equal(pixels_of(tmp_path / "a", r), pixels_of(tmp_path / "b", r)) for r in base_records)
    test_split = read_records(make_split(tmp_path / "a", "test", 12, seed=3, question_types=ALL_TYPES))
    assert not np.array_equal(pixels_of(tmp_path / "a", base_records[0]), pixels_of(tmp_path / "a", test_split[0]))


def test_images_are_grey_of_the_requested_size(tmp_path: Path) -> None:
    records = read_records(make_split(tmp_path, "validation", 3, image_size=64))
    for record in records:
        with Image.open(tmp_path / record["images"][0]) as image:
            assert (image.mode, image.size) == ("L", (64, 64))


def test_answer_is_determined_by_the_image(big_split) -> None:
    root, records = big_split
    for record in records:
        blobs = bright_blobs(pixels_of(root, record))
        meta = record["meta"]
        assert len(blobs) == meta["lesion_count"], record["id"]
        question_type = meta["question_type"]
        if question_type == "presence":
            assert record["answer"] == ("yes" if blobs else "no"), record["id"]
        elif question_type == "count":
            assert record["answer"] == str(len(blobs)), record["id"]
        else:
            assert len(blobs) == 1, record["id"]
            width = pixels_of(root, record).shape[1]
            assert record["answer"] == ("A" if blobs[0][0] < width / 2 else "B"), record["id"]
            assert meta["side"] == ("left" if record["answer"] == "A" else "right")


def test_answers_are_balanced(big_split) -> None:
    _, records = big_split
    by_type = {t: [r["answer"] for r in records if r["meta"]["question_type"] == t] for t in ALL_TYPES}
    assert {t: len(a) for t, a in by_type.items()} == {"presence": 134, "count": 133, "side": 133}
    for question_type, majority in (("presence", "yes"), ("side", "A")):
        share = by_type[question_type].count(majority) / len(by_type[question_type])
        assert 0.38 <= share <= 0.62, (question_type, share)
    counts = Counter(by_type["count"])
    assert set(counts) == {"0", "1", "2", "3"}
    assert all(0.13 <= n / len(by_type["count"]) <= 0.37 for n in counts.values()), counts


def test_records_follow_the_contract(big_split) -> None:
    root, records = big_split
    tasks = {"presence": "vqa_closed", "count": "counting", "side": "classification"}
    for record in records:
        assert validate_record(record, record["id"]) is record
        assert record["task"] == tasks[record["meta"]["question_type"]]
        assert (root / record["images"][0]).is_file()
        if record["task"] != "counting":
            assert record["answer"] in {"yes", "no", "A", "B"}
            assert len(record["choices"]) == 2
    assert len({r["id"] for r in records}) == len(records)


def test_ensure_dataset_reuses_identical_set(tmp_path: Path, monkeypatch) -> None:
    sizes = {"train": 4, "test": 2}
    paths = ensure_dataset(tmp_path / "d", sizes=sizes, seed=1)
    assert set(paths) == {"train", "test"} and all(p.exists() for p in paths.values())
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "d").rglob("*") if p.is_file()}

    def no_regeneration(*args, **kwargs):
        raise AssertionError("ensure_dataset regenerated an identical data set")

    with monkeypatch.context() as patched:
        patched.setattr(synthetic, "make_split", no_regeneration)
        assert ensure_dataset(tmp_path / "d", sizes=sizes, seed=1) == paths
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_ensure_dataset_regenerates_when_settings_change(tmp_path: Path) -> None:
    out = tmp_path / "d"
    old = ensure_dataset(out, sizes={"train": 4, "test": 2}, seed=1)["train"].read_bytes()
    new_paths = ensure_dataset(out, sizes={"train": 5}, seed=2, question_types=ALL_TYPES)
    assert len(read_records(new_paths["train"])) == 5
    assert new_paths["train"].read_bytes() != old
    assert not (out / "test.jsonl").exists()  # the stale split is gone
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 2
    # A deleted split is regenerated even when the settings are the same.
    new_paths["train"].unlink()
    assert ensure_dataset(out, sizes={"train": 5}, seed=2, question_types=ALL_TYPES)["train"].exists()


def test_unknown_question_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tumour_grade"):
        make_split(tmp_path, "train", 2, question_types=("presence", "tumour_grade"))
    with pytest.raises(ValueError, match="tumour_grade"):
        ensure_dataset(tmp_path / "d", sizes={"train": 2}, question_types=["tumour_grade"])


def test_multiple_choice_letters_name_the_lesion_quadrant(tmp_path: Path) -> None:
    """OmniMedVQA/Med-R1 style: `A)x, B)y, ...` options parsed back by the readers, the answer letter marks the drawn quadrant."""
    from medlib.data.readers.common import parse_options

    records = read_records(make_split(tmp_path, "train", 40, seed=1, question_types=["choice"]))
    letters = Counter()
    for record in records:
        options = record["choices"]
        assert parse_options(record["question"]) == options and sorted(options) == sorted(synthetic.QUADRANTS)
        assert record["task"] == "vqa_closed"
        chosen = options["ABCD".index(record["answer"])]
        assert chosen == record["meta"]["quadrant"]
        (x, y), = bright_blobs(pixels_of(tmp_path, record))
        assert chosen == f"{'upper' if y < 56 else 'lower'} {'left' if x < 56 else 'right'}"
        letters[record["answer"]] += 1
    assert len(letters) == 4  # the options are shuffled: every letter is an answer somewhere


def test_flare_layout_twin_data_comes_back_through_the_reader(tmp_path: Path) -> None:
    """ensure_flare_dataset writes the FLARE 2025 layout and converts it: one data set per type, reused when unchanged."""
    types = ["side", "count", "report"]
    paths = synthetic.ensure_flare_dataset(tmp_path / "data", sizes={"train": 6, "test": 3}, question_types=types)
    records = read_records(paths["train"])
    assert {r["dataset"] for r in records} == {f"synthetic_{t}" for t in types}
    assert {r["task"] for r in records} == {"classification", "counting", "report_generation"}
    assert (synthetic.flare_layout_dir(tmp_path / "data") / "organized_dataset" / "testing").is_dir()
    stamp = paths["train"].stat().st_mtime_ns
    synthetic.ensure_flare_dataset(tmp_path / "data", sizes={"train": 6, "test": 3}, question_types=types)
    assert paths["train"].stat().st_mtime_ns == stamp
