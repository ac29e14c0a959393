"""What notebook 10 shows about a data set: counts, label and length distributions, image stats, leakage, gallery."""
from __future__ import annotations

import hashlib
import math
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from medlib.data import load_record_images
from medlib.data.processing import image_header, open_image
from medlib.evaluation.parsing import parse_answer


def records_table(records_by_split: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """One row per question: split, dataset, modality, task, question type, image count, answer, answer words."""
    rows = [{"split": split, "dataset": r["dataset"], "modality": r.get("modality") or "", "task": r["task"],
             "question_type": (r.get("meta") or {}).get("question_type", r["task"]), "n_images": len(r["images"]),
             "answer": r["answer"], "answer_words": len(r["answer"].split())}
            for split, records in records_by_split.items() for r in records]
    columns = ["split", "dataset", "modality", "task", "question_type", "n_images", "answer", "answer_words"]
    return pd.DataFrame(rows, columns=columns)


def labels_of(record: dict[str, Any]) -> list[str]:
    """The labels a reference names: each label for multi_label, box counts for detection, else the answer."""
    task = record["task"]
    parsed, _ = parse_answer(task, record["answer"], record.get("choices"))
    if task == "multi_label" and isinstance(parsed, list):
        return [str(label) for label in parsed]
    if task == "detection" and isinstance(parsed, list):
        return [f"{len(parsed)} boxes"]
    if task == "instance_detection" and isinstance(parsed, dict):
        return sorted(parsed)
    if task in ("report_generation", "vqa_open") and len(record["answer"].split()) > 4:
        return []  # free text: its length distribution says more than its values
    return [record["answer"].strip()]


def label_counts(records: list[dict[str, Any]], group: str = "question_type", top: int = 12) -> dict[str, dict[str, int]]:
    """Per group (question type or task), the `top` most frequent labels and their counts."""
    counts: dict[str, Counter] = {}
    for record in records:
        key = (record.get("meta") or {}).get(group, record["task"]) if group == "question_type" else record[group]
        counts.setdefault(str(key), Counter()).update(labels_of(record))
    return {key: dict(counter.most_common(top)) for key, counter in sorted(counts.items()) if counter}


def image_table(records: list[dict[str, Any]], data_root: str | Path, limit: int | None = None) -> pd.DataFrame:
    """Width, height and mode of each distinct image (headers only), up to `limit` images; unreadable ones skipped."""
    paths = sorted({rel for r in records for rel in r["images"]})[:limit]
    rows = []
    for rel in paths:
        try:
            width, height, mode = image_header(Path(data_root) / rel)  # as shown: EXIF rotation, DICOM
            rows.append({"image": rel, "width": width, "height": height, "mode": mode})
        except (OSError, ValueError):
            continue  # validation reports these; the histograms show what opens
    return pd.DataFrame(rows, columns=["image", "width", "height", "mode"])


def image_digest(path: str | Path) -> str:
    """SHA-1 of an image's decoded pixels, size and mode: the same picture in two files hashes the same."""
    image = open_image(path)  # the pixels training sees (upright; DICOM rendered)
    header = f"{image.mode}:{image.size}".encode()
    return hashlib.sha1(header + image.tobytes()).hexdigest()


def leakage(train: list[dict[str, Any]], other: list[dict[str, Any]], data_root: str | Path) -> dict[str, Any]:
    """Images of `other` whose pixels also appear in `train` (by hash): count, share and a few examples."""
    def digests(records: list[dict[str, Any]]) -> dict[str, str]:
        found = {}
        for rel in sorted({rel for r in records for rel in r["images"]}):
            try:
                found[rel] = image_digest(Path(data_root) / rel)
            except (OSError, ValueError):  # unreadable files and DICOMs without an image: validation names them
                continue
        return found

    train_hashes = set(digests(train).values())
    other_digests = digests(other)
    shared = sorted(rel for rel, digest in other_digests.items() if digest in train_hashes)
    return {"shared_images": len(shared), "checked_images": len(other_digests),
            "share": len(shared) / len(other_digests) if other_digests else 0.0, "examples": shared[:5]}


def report_lengths(records: list[dict[str, Any]]) -> list[int]:
    """Word counts of report_generation references."""
    return [len(r["answer"].split()) for r in records if r["task"] == "report_generation"]


def image_histograms(images: pd.DataFrame) -> plt.Figure:
    """Width, height and mode of the images in three panels."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, column in zip(axes[:2], ("width", "height")):
        ax.hist(images[column], bins=min(30, max(1, images[column].nunique())))
        ax.set_title(f"image {column} (pixels)")
        ax.set_ylabel("images")
    modes = images["mode"].value_counts()
    axes[2].bar(modes.index.astype(str), modes.values)
    axes[2].set_title("image mode")
    fig.tight_layout()
    return fig


def length_histogram(lengths: dict[str, list[int]], title: str = "report length (words)") -> plt.Figure:
    """Overlaid histograms of word counts per split."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, values in lengths.items():
        if values:
            ax.hist(values, bins=20, alpha=0.6, label=f"{name} (n={len(values)})")
    ax.set_title(title)
    ax.set_xlabel("words")
    ax.set_ylabel("reports")
    if any(lengths.values()):
        ax.legend()
    fig.tight_layout()
    return fig


def boxes_of(record: dict[str, Any]) -> list[tuple[str, list[float]]]:
    """(label, [x1, y1, x2, y2]) boxes a detection or instance_detection reference names; empty otherwise."""
    if record["task"] not in ("detection", "instance_detection"):
        return []
    parsed, _ = parse_answer(record["task"], record["answer"])
    if isinstance(parsed, dict):
        return [(str(label), box) for label, boxes in parsed.items() for box in boxes or []]
    return [("", box) for box in parsed or []]


def gallery(records: list[dict[str, Any]], data_root: str | Path, *, columns: int = 4) -> plt.Figure:
    """Each record's current image with its question and answer; reference boxes drawn for detection."""
    rows = max(1, math.ceil(len(records) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 4.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, record in zip(axes.flat, records):
        ax.imshow(load_record_images(record, data_root, None)[0], cmap="gray")
        for label, (x1, y1, x2, y2) in boxes_of(record):
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="red", linewidth=1.5))
            if label:
                ax.text(x1, y1 - 1, label, color="red", fontsize=7)
        answer = "detection boxes drawn" if boxes_of(record) else record["answer"]
        question = textwrap.wrap(f"[{record['task']}] {record['question']}", 44)
        lines = question[:3] + [textwrap.shorten(f"→ {answer}", 44)]
        ax.set_title("\n".join(lines), fontsize=7)
        if len(record["images"]) > 1:
            ax.text(0, 1, f"+{len(record['images']) - 1} prior", color="yellow", fontsize=7, va="top",
                    transform=ax.transAxes)
    fig.tight_layout()
    return fig
