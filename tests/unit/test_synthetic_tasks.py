"""The synthetic set's added task types: every answer follows from the image; temporal pairs use change words."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medlib.data import TASKS, exploration, read_records, validate_record
from medlib.data.synthetic import CHANGES, QUESTION_TYPES, make_split
from medlib.evaluation.parsing import answers_match, parse_answer

NEW_TYPES = ("findings", "detect", "instances", "size", "location", "report", "temporal")


def blobs(pixels: np.ndarray, mask: np.ndarray) -> list[dict]:
    """Connected blobs of at least 9 pixels: bounding box (inclusive), area and fill ratio."""
    labels, count = ndimage.label(mask)
    found = []
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        area = int((labels[box] == index).sum())
        if area >= 9:
            ys, xs = box
            bbox = [xs.start, ys.start, xs.stop - 1, ys.stop - 1]
            found.append({"box": bbox, "area": area, "fill": area / ((xs.stop - xs.start) * (ys.stop - ys.start))})
    return found


def findings_in(pixels: np.ndarray) -> dict[str, list[dict]]:
    bright = blobs(pixels, pixels > 160)
    return {"mass": [b for b in bright if b["fill"] < 0.95], "calcification": [b for b in bright if b["fill"] >= 0.95],
            "cyst": blobs(pixels, pixels < 30)}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("synthetic_tasks")
    return root, read_records(make_split(root, "train", 140, seed=5, image_size=112, question_types=NEW_TYPES))


def pixels(root: Path, rel: str) -> np.ndarray:
    with Image.open(root / rel) as image:
        return np.asarray(image).astype(int)


def test_every_task_type_is_covered(tmp_path: Path) -> None:
    records = read_records(make_split(tmp_path, "train", 20, seed=0, image_size=64, question_types=QUESTION_TYPES))
    assert {r["task"] for r in records} == set(TASKS)
    for record in records:
        validate_record(record, record["id"])
        parsed, error = parse_answer(record["task"], record["answer"], record.get("choices"))
        assert error is None and answers_match(record["task"], parsed, record["answer"], record.get("choices"))


def test_answers_follow_from_the_image(split) -> None:
    root, records = split
    assert Counter(r["meta"]["question_type"] for r in records) == {t: 20 for t in NEW_TYPES}
    for record in records:
        kind = record["meta"]["question_type"]
        image = pixels(root, record["images"][0])
        found = findings_in(image)
        if kind == "findings":
            present = sorted(name for name, items in found.items() if items)
            assert record["answer"] == ", ".join(present), record["id"]
        elif kind == "detect":
            assert sorted(b["box"] for b in found["mass"]) == sorted(json.loads(record["answer"])), record["id"]
        elif kind == "instances":
            expected = {name: sorted(b["box"] for b in found[name]) for name in ("cyst", "mass") if found[name]}
            assert json.loads(record["answer"]) == expected, record["id"]
        elif kind == "size":
            (mass,) = found["mass"]
            assert record["answer"] == str(mass["box"][2] - mass["box"][0] + 1), record["id"]
        elif kind == "location":
            (mass,) = found["mass"]
            x, y = (mass["box"][0] + mass["box"][2]) / 2, (mass["box"][1] + mass["box"][3]) / 2
            assert record["answer"] == f"{'upper' if y < 56 else 'lower'} {'left' if x < 56 else 'right'}"
        elif kind == "report":
            count = len(found["mass"])
            assert record["answer"].startswith("Findings: ") and "Impression:" in record["answer"]
            assert record["answer"].startswith(f"Findings: {count} bright") or (count == 0 and "No focal" in record["answer"])


def test_temporal_pairs_use_change_words_that_match_the_images(split) -> None:
    root, records = split
    temporal = [r for r in records if r["meta"]["question_type"] == "temporal"]
    for record in temporal:
        current, prior = (len(findings_in(pixels(root, rel))["mass"]) for rel in record["images"])
        assert record["images"][1].endswith("_prior.png") and len(record["images"]) == 2
        change = record["meta"]["change"]
        expected = ("new" if prior == 0 else "resolved" if current == 0 else "increased" if current > prior
                    else "decreased" if current < prior else "unchanged")
        assert change == expected and change.split()[0].lower() in record["answer"].lower(), record["id"]
    assert len({r["meta"]["change"] for r in temporal}) >= 4
    assert set(CHANGES) >= {r["meta"]["change"] for r in temporal}


def test_exploration_helpers(split, tmp_path: Path) -> None:
    root, records = split
    counts = exploration.label_counts(records)
    assert set(counts["findings"]) <= {"mass", "cyst", "calcification"}
    assert all(label.endswith("boxes") for label in counts["detect"])
    assert exploration.report_lengths(records) and min(exploration.report_lengths(records)) >= 5
    detect = next(r for r in records if r["task"] == "detection")
    assert [box for _, box in exploration.boxes_of(detect)] == json.loads(detect["answer"])
    images = exploration.image_table(records, root)
    assert set(images["mode"]) == {"L"} and set(images["width"]) == {112}
    fig = exploration.gallery(records[:8], root)
    assert len(fig.axes[0].patches) + len(fig.axes[1].patches) >= 1  # boxes drawn on the detection samples
    leak = exploration.leakage(records[:10], records[5:20], root)
    assert leak["shared_images"] == len({rel for r in records[5:10] for rel in r["images"]})
    copy = tmp_path / "copy.png"
    copy.write_bytes((root / records[0]["images"][0]).read_bytes())
    assert exploration.image_digest(copy) == exploration.image_digest(root / records[0]["images"][0])
