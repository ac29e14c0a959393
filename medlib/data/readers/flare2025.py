"""FLARE 2025 2D release: organized_dataset/<split>/<Category>/<dataset>/ with images* and question files.

Layout as released for the FLARE 2025 2D multimodal challenge and read by its QWen2.5-VL baseline's
`prepare_data.py`: `{training,validation-public,validation-hidden}/<Category>/<dataset>/imagesTr|imagesVal/`
beside `<dataset>_questions_<split>.json`, a list of `{TaskType, Modality, ImageName (str or list),
Question, Answer, Split}`. IU_XRay's report questions ship as `IU_XRay_all_{train,val}.json` (the name the
FLARE Task 5 repo's `prepare_flare_task5_jsonl.py` hard-codes); both names are read. Any other JSON file
below the root is counted as `unrecognised_file`, never skipped silently.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from medlib.data.readers.common import (
    PathEscape,
    ReadResult,
    answer_text,
    canonical_split,
    is_yes_no,
    parse_options,
    place_file,
    read_json_file,
    relative_dir,
    safe_join,
)

NAME = "flare2025"
LAYOUT = ("<split>/<Category>/<dataset>/ folders with <dataset>_questions_<split>.json or "
          "IU_XRay_all_<split>.json and imagesTr/imagesVal")
OPTIONS: frozenset[str] = frozenset()
QUESTION_FILE = re.compile(r"^(?P<dataset>.+?)_(?P<kind>questions|all)_(?P<split>[A-Za-z_-]+)\.json$")
IGNORED_FILES = ("convert.json",)  # medlib's own conversion manifest
REQUIRED = ("TaskType", "Question", "Answer", "ImageName")
# TaskType spellings seen in the release (lower-cased, '_'/'-' read as spaces) → record task.
TASK_TYPES = {
    "classification": "classification", "binary classification": "classification",
    "multi label classification": "multi_label", "multilabel classification": "multi_label",
    "multi label": "multi_label",
    "detection": "detection", "object detection": "detection",
    "instance detection": "instance_detection",
    "counting": "counting", "cell counting": "counting",
    "regression": "regression", "measurement": "regression",
    "report generation": "report_generation", "report": "report_generation",
    "open vqa": "vqa_open", "vqa open": "vqa_open", "closed vqa": "vqa_closed", "vqa closed": "vqa_closed",
}
TASK_NAMES = {
    "classification": "Classification", "multi_label": "Multi-label Classification", "detection": "Detection",
    "instance_detection": "Instance Detection", "counting": "Counting", "regression": "Regression",
    "report_generation": "Report Generation", "vqa_open": "Open VQA", "vqa_closed": "Closed VQA",
}
SPLIT_FOLDERS = {"train": ("training", "imagesTr", "train"), "validation": ("validation-public", "imagesVal", "val"),
                 "validation_hidden": ("validation-hidden", "imagesVal", "val"), "test": ("testing", "imagesTs", "test")}
IMAGE_FOLDERS = ("imagesTr", "imagesVal", "imagesTs", "images")


def normalize_task_type(raw: Any) -> str | None:
    """Record task for a TaskType spelling (`Multi-label Classification`, `cell_counting`), or None."""
    if not isinstance(raw, str):
        return None
    key = " ".join(re.sub(r"[_\-]+", " ", raw).lower().split())
    return TASK_TYPES.get(key)


def question_files(src: Path) -> list[Path]:
    """Every `<dataset>_questions_<split>.json` and `<dataset>_all_<split>.json` below src, sorted."""
    return sorted(p for p in Path(src).rglob("*.json") if QUESTION_FILE.match(p.name))


def detect(src: Path) -> str | None:
    """Why src is a FLARE 2025 tree (it holds question files), or None."""
    if not Path(src).is_dir():
        return None
    files = question_files(src)
    if not files:
        return None
    return f"{len(files)} FLARE question files such as {relative_dir(files[0], Path(src))}"


def _image_paths(raw: Any, dataset_dir: Path, dataset_rel: str) -> list[str]:
    """Image names (string or list) → paths relative to the data root; bare names are looked up in images*/."""
    names = raw if isinstance(raw, list) else [raw]
    if not names:
        raise PathEscape("empty list of image names")
    paths = []
    for name in names:
        rel = safe_join(dataset_rel, name)
        if "/" not in str(name).strip().replace("\\", "/") and not (dataset_dir / name).exists():
            for folder in IMAGE_FOLDERS:
                if (dataset_dir / folder / name).exists():
                    rel = safe_join(dataset_rel, f"{folder}/{name}")
                    break
        paths.append(rel)
    return paths


def _record(item: dict[str, Any], task: str, images: list[str], dataset: str, modality: str, split: str,
            record_id: str, source: str) -> dict[str, Any]:
    """One record from a FLARE question."""
    question = str(item["Question"]).strip()
    answer = answer_text(item["Answer"])
    record: dict[str, Any] = {
        "id": record_id, "dataset": dataset, "modality": str(item.get("Modality") or modality), "task": task,
        "images": images, "question": question, "answer": answer,
        "meta": {"split": split, "source_file": source, "task_type": item["TaskType"]},
    }
    choices = parse_options(question) if task in ("classification", "vqa_closed", "multi_label") else None
    if choices:
        record["choices"] = choices
    elif task == "vqa_closed" and is_yes_no(answer):
        record["choices"] = ["yes", "no"]
    return record


def _unread_files(src: Path, files: list[Path]) -> list[Path]:
    """JSON files below src that are not question files (each is a counted problem)."""
    known = set(files)
    return sorted(p for p in src.rglob("*.json")
                  if p not in known and p.name not in IGNORED_FILES and not any(part.startswith(".") for part in
                                                                                p.relative_to(src).parts))


def _duplicates(files: list[Path]) -> dict[Path, Path]:
    """`X_all_<split>.json` files whose folder also has `X_questions_<split>.json` → that file."""
    found = {}
    for path in files:
        match = QUESTION_FILE.match(path.name)
        if match["kind"] == "all":
            twin = path.with_name(f"{match['dataset']}_questions_{match['split']}.json")
            if twin in files:
                found[path] = twin
    return found


def read(src: Path, *, media_dir: Path | None = None, **_: object) -> ReadResult:
    """Read every question file below src; bad questions and files are skipped and counted."""
    src = Path(src)
    result = ReadResult(data_root=src)
    files = question_files(src)
    for path in _unread_files(src, files):
        result.found(path, 1)
        result.skip("unrecognised_file", path, "file", "not a FLARE question file (<dataset>_questions_<split>.json "
                    "or <dataset>_all_<split>.json); not read")
    duplicates = _duplicates(files)
    for path in files:
        if path in duplicates:
            result.found(path, 1)
            result.skip("duplicate_file", path, "file", f"same data set and split as {duplicates[path].name}, "
                        "which is read instead")
            continue
        dataset_dir = path.parent
        dataset = QUESTION_FILE.match(path.name)["dataset"]
        modality = dataset_dir.parent.name
        split = canonical_split(dataset_dir.parent.parent.name, canonical_split(QUESTION_FILE.match(path.name)["split"]))
        source = relative_dir(path, src)
        before = len(result.problems)
        items = read_json_file(path, result)
        if items is None:
            result.found(path, len(result.problems) - before)
            continue
        if not isinstance(items, list):
            result.found(path, 1)
            result.skip("malformed_json", path, "top level", f"expected a list of questions, got {type(items).__name__}")
            continue
        result.found(path, len(items))
        dataset_rel = relative_dir(dataset_dir, src)
        for index, item in enumerate(items):
            where = f"{path}[{index}]"
            if result.skip_non_object(item, where, "question") or result.skip_missing(item, REQUIRED, where):
                continue
            task = normalize_task_type(item["TaskType"])
            if task is None:
                result.skip("unknown_task", where, "TaskType", f"unknown TaskType {item['TaskType']!r}")
                continue
            try:
                images = _image_paths(item["ImageName"], dataset_dir, dataset_rel)
            except PathEscape as error:
                result.skip("path_escape", where, "ImageName", str(error))
                continue
            record_id = f"{path.stem}-{index:05d}"
            result.records.append(_record(item, task, images, dataset, modality, split, record_id, source))
    return result


def write(records: list[dict[str, Any]], data_root: Path, out: Path) -> Path:
    """Write records in the FLARE 2025 layout under out/organized_dataset (images hard-linked or copied)."""
    root = Path(out) / "organized_dataset"
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in records:
        split = (record.get("meta") or {}).get("split", "train")
        groups.setdefault((split, record.get("modality") or "Unknown", record["dataset"]), []).append(record)
    for (split, modality, dataset), group in sorted(groups.items()):
        split_dir, image_dir, file_split = SPLIT_FOLDERS.get(split, (split, "images", split))
        dataset_dir = root / split_dir / modality / dataset
        names: dict[str, str] = {}
        items = []
        for record in group:
            image_names = []
            for rel in record["images"]:
                if rel not in names:
                    name = Path(rel).name
                    if name in names.values():
                        name = f"{len(names):06d}_{name}"
                    names[rel] = name
                    place_file(Path(data_root) / rel, dataset_dir / image_dir / name)
                image_names.append(f"{image_dir}/{names[rel]}")
            items.append({"TaskType": TASK_NAMES[record["task"]], "Modality": modality,
                          "ImageName": image_names[0] if len(image_names) == 1 else image_names,
                          "Question": record["question"], "Answer": record["answer"], "Split": file_split})
        target = dataset_dir / f"{dataset}_questions_{file_split}.json"
        target.write_text(json.dumps(items, indent=1, ensure_ascii=False))
    return root
