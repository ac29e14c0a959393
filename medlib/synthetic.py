"""An offline, learnable synthetic lesion data set: the answer is determined by the image."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DATASET_NAME = "synthetic_lesions"
QUESTION_TYPES = ("presence", "count", "side")
SPLIT_OFFSETS = {"train": 0, "validation": 1, "test": 2}


@dataclass(frozen=True)
class Question:
    """A question template of one type with its task, wording and fixed reasoning line."""

    task: str
    text: str
    rationale: str
    choices: tuple[str, ...] | None


QUESTIONS = {
    "presence": Question("vqa_closed", "Is there a lesion in this image? Answer yes or no.",
                         "Bright round spots are lesions.", ("yes", "no")),
    "count": Question("counting", "How many lesions are visible? Answer with a number.",
                      "I count the bright round spots.", None),
    "side": Question("classification", "Which side of the image is the lesion on? A) left B) right",
                     "I compare the left half with the right half.", ("left", "right")),
}


def _disk_centres(rng: np.random.Generator, count: int, size: int, radius: int,
                  side: str | None) -> list[tuple[int, int]]:
    """Place non-overlapping disk centres; a `side` restricts x to that half (away from the midline)."""
    centres: list[tuple[int, int]] = []
    margin = radius + 2
    while len(centres) < count:
        if side == "left":
            x = int(rng.integers(margin, size // 2 - radius))
        elif side == "right":
            x = int(rng.integers(size // 2 + radius, size - margin))
        else:
            x = int(rng.integers(margin, size - margin))
        y = int(rng.integers(margin, size - margin))
        if all((x - cx) ** 2 + (y - cy) ** 2 > (2 * radius + 4) ** 2 for cx, cy in centres):
            centres.append((x, y))
    return centres


def render_image(rng: np.random.Generator, count: int, size: int = 112, side: str | None = None) -> Image.Image:
    """Draw grey noise with `count` bright disks (lesions); returns an 8-bit greyscale image."""
    pixels = rng.normal(70, 18, (size, size))
    radius = max(4, size // 14)
    yy, xx = np.mgrid[0:size, 0:size]
    for cx, cy in _disk_centres(rng, count, size, radius, side):
        r = radius + int(rng.integers(-1, 2))
        pixels[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = rng.normal(215, 10)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def _answer_and_layout(rng: np.random.Generator, question_type: str, max_count: int) -> tuple[str, int, str | None]:
    """Draw the ground truth first (balanced), then the image layout that realises it."""
    if question_type == "presence":
        present = bool(rng.integers(0, 2))
        count = int(rng.integers(1, max_count + 1)) if present else 0
        return ("yes" if present else "no"), count, None
    if question_type == "count":
        count = int(rng.integers(0, max_count + 1))
        return str(count), count, None
    side = ("left", "right")[int(rng.integers(0, 2))]
    return ("A" if side == "left" else "B"), 1, side


def make_split(out_dir: str | Path, split: str, n: int, *, seed: int = 0, image_size: int = 112,
               question_types: tuple[str, ...] | list[str] = ("presence", "count"),
               max_count: int = 3) -> Path:
    """Write `n` records of one split as JSONL plus PNG images under out_dir; return the JSONL path."""
    unknown = sorted(set(question_types) - set(QUESTIONS))
    if unknown:
        raise ValueError(f"unknown synthetic question types {unknown}; known: {list(QUESTIONS)}")
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, SPLIT_OFFSETS.get(split, 9)])
    records = []
    for index in range(n):
        question_type = question_types[index % len(question_types)]
        question = QUESTIONS[question_type]
        answer, count, side = _answer_and_layout(rng, question_type, max_count)
        record_id = f"{split}-{index:05d}"
        image_rel = f"images/{split}/{record_id}.png"
        render_image(rng, count, image_size, side).save(out_dir / image_rel)
        record = {
            "id": record_id, "dataset": DATASET_NAME, "modality": "synthetic", "task": question.task,
            "images": [image_rel], "question": question.text, "answer": answer,
            "meta": {"split": split, "question_type": question_type, "lesion_count": count,
                     "side": side, "rationale": question.rationale, "source_file": f"{split}.jsonl"},
        }
        if question.choices:
            record["choices"] = list(question.choices)
        records.append(record)
    path = out_dir / f"{split}.jsonl"
    tmp = path.with_suffix(".jsonl.partial")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(path)
    return path


def ensure_dataset(out_dir: str | Path, *, sizes: dict[str, int], seed: int = 0, image_size: int = 112,
                   question_types: tuple[str, ...] | list[str] = ("presence", "count"),
                   max_count: int = 3) -> dict[str, Path]:
    """Generate every split unless an identical data set (same settings) already exists."""
    out_dir = Path(out_dir)
    settings = {"sizes": sizes, "seed": seed, "image_size": image_size,
                "question_types": list(question_types), "max_count": max_count}
    marker = out_dir / "synthetic.json"
    paths = {split: out_dir / f"{split}.jsonl" for split in sizes}
    if marker.exists() and json.loads(marker.read_text()) == settings and all(p.exists() for p in paths.values()):
        return paths
    if out_dir.exists():
        shutil.rmtree(out_dir)
    for split, n in sizes.items():
        make_split(out_dir, split, n, seed=seed, image_size=image_size,
                   question_types=question_types, max_count=max_count)
    marker.write_text(json.dumps(settings, indent=2))
    return paths
