"""Read and validate records (docs/architecture.md contract) and turn them into training data sets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medlib.data import prompts
from medlib.data.processing import load_image

TASKS = ("classification", "multi_label", "detection", "instance_detection", "counting", "regression",
         "report_generation", "vqa_open", "vqa_closed")
REQUIRED_FIELDS = {"id": str, "dataset": str, "task": str, "images": list, "question": str, "answer": str}


class RecordError(ValueError):
    """A record that breaks the record contract; the message names the file, line and field."""


def validate_record(record: Any, where: str) -> dict[str, Any]:
    """Return the record if it satisfies the contract, else raise RecordError naming `where` and the field."""
    if not isinstance(record, dict):
        raise RecordError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    for field, kind in REQUIRED_FIELDS.items():
        if field not in record:
            raise RecordError(f"{where}: missing field '{field}'")
        if not isinstance(record[field], kind):
            raise RecordError(f"{where}: field '{field}' must be {kind.__name__}, "
                              f"got {type(record[field]).__name__}")
    if record["task"] not in TASKS:
        raise RecordError(f"{where}: field 'task' is {record['task']!r}; expected one of {', '.join(TASKS)}")
    if not all(isinstance(p, str) and p for p in record["images"]):
        raise RecordError(f"{where}: field 'images' must be a list of relative paths")
    for path in record["images"]:
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise RecordError(f"{where}: field 'images' entry {path!r} escapes the data root")
    choices = record.get("choices")
    if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
        raise RecordError(f"{where}: field 'choices' must be a list of strings")
    if not isinstance(record.get("meta", {}), dict):
        raise RecordError(f"{where}: field 'meta' must be an object")
    return record


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a records JSONL file, validating every line; errors name the file, line and field."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: records file not found")
    records = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as error:
            raise RecordError(f"{where}: not valid JSON ({error.msg})") from None
        record = validate_record(raw, where)
        if record["id"] in seen:
            raise RecordError(f"{where}: field 'id' {record['id']!r} repeats an earlier record")
        seen.add(record["id"])
        records.append(record)
    return records


def dicom_frames(record: dict[str, Any]) -> list[int | None]:
    """The DICOM frame chosen for each image (validation records it in meta["dicom"]), None elsewhere."""
    facts = (record.get("meta") or {}).get("dicom") or []
    frames = [(f or {}).get("frame") if isinstance(f, dict) else None for f in facts]
    return (frames + [None] * len(record["images"]))[: len(record["images"])]


def load_record_images(record: dict[str, Any], data_root: str | Path, image_size: int | None) -> list:
    """Load a record's images (current first) as RGB PIL images, the same way for training and inference."""
    root = Path(data_root)
    return [load_image(root / rel, image_size, frame=frame)
            for rel, frame in zip(record["images"], dicom_frames(record), strict=True)]


def sft_rows(records: list[dict[str, Any]], data_root: str | Path, *, image_size: int | None,
             answer_format: str = "think_answer", system_prompt: str | None = None,
             style: str = "prompt_completion") -> list[dict[str, Any]]:
    """Return TRL SFT rows with `images`: `prompt`+`completion` (loss on the completion only) or `messages`."""
    rows = []
    for record in records:
        messages = prompts.training_messages(record, answer_format, system_prompt)
        images = load_record_images(record, data_root, image_size)
        if style == "messages":
            rows.append({"messages": messages, "images": images})
        elif style == "prompt_completion":
            rows.append({"prompt": messages[:-1], "completion": messages[-1:], "images": images})
        else:
            raise ValueError(f"unknown SFT row style {style!r}; use 'prompt_completion' or 'messages'")
    return rows


def grpo_rows(records: list[dict[str, Any]], data_root: str | Path, *, image_size: int | None,
              answer_format: str = "think_answer", system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Return TRL GRPO rows: conversational `prompt`, `images`, and the columns rewards read."""
    return [{"prompt": prompts.prompt_messages(r, answer_format, system_prompt),
             "images": load_record_images(r, data_root, image_size),
             "answer": r["answer"], "task": r["task"], "choices": r.get("choices"), "id": r["id"]}
            for r in records]


def to_dataset(rows: list[dict[str, Any]]):
    """Build a Hugging Face Dataset from rows (images are stored with the Image feature)."""
    from datasets import Dataset

    return Dataset.from_list(rows)


def check_images(records: list[dict[str, Any]], data_root: str | Path) -> dict[str, int]:
    """Open every image once; return counts per problem (`missing`, `unreadable`), empty when all open."""
    from medlib.data.processing import open_image

    problems: dict[str, int] = {}
    root = Path(data_root)
    for path in sorted({rel for r in records for rel in r["images"]}):
        full = root / path
        if not full.exists():
            problems["missing"] = problems.get("missing", 0) + 1
            continue
        try:
            open_image(full)
        except Exception:  # any decoder failure is the same problem for the user: the file is unusable
            problems["unreadable"] = problems.get("unreadable", 0) + 1
    return problems


# ---- data set building: subsets, seeded splits, curriculum, mixing, lazy images ------------------------------

# Closed-ended tasks answer from a fixed set; the MEDICO study found open-ended first, then closed, trains best.
CLOSED_TASKS = ("vqa_closed", "classification", "multi_label")
CURRICULA = ("none", "shuffle", "open_first", "closed_first")


def is_closed(record: dict[str, Any]) -> bool:
    """True for a closed-ended question (fixed answer set)."""
    return record["task"] in CLOSED_TASKS or bool(record.get("choices"))


def select_records(records: list[dict[str, Any]], *, max_samples: int = -1, datasets: list[str] | None = None,
                   tasks: list[str] | None = None, modalities: list[str] | None = None,
                   seed: int | None = None) -> list[dict[str, Any]]:
    """Records of the named data sets/tasks/modalities; at most max_samples (a seeded sample when seed is set)."""
    unknown = sorted(set(tasks or []) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; expected some of {', '.join(TASKS)}")
    chosen = [r for r in records if (not datasets or r["dataset"] in datasets) and (not tasks or r["task"] in tasks)
              and (not modalities or r.get("modality", "") in modalities)]
    if 0 <= max_samples < len(chosen):
        if seed is None:
            return chosen[:max_samples]
        import random

        keep = set(random.Random(seed).sample(range(len(chosen)), max_samples))
        chosen = [r for i, r in enumerate(chosen) if i in keep]
    return chosen


def split_records(records: list[dict[str, Any]], fractions: dict[str, float], *, seed: int
                  ) -> dict[str, list[dict[str, Any]]]:
    """Seeded split by first image, so questions about one image never straddle two splits."""
    import random

    if not fractions or any(f < 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["images"][0] if record["images"] else record["id"], []).append(record)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in fractions}
    names = list(fractions)
    bounds, total = [], 0.0
    for name in names:
        total += fractions[name]
        bounds.append(round(total * len(keys)))
    start = 0
    for name, end in zip(names, bounds, strict=True):
        splits[name] = [r for key in keys[start:end] for r in groups[key]]
        start = end
    return splits


def curriculum_order(records: list[dict[str, Any]], curriculum: str = "none", *, seed: int = 0
                     ) -> list[dict[str, Any]]:
    """Order records: as given, shuffled, open-ended first then closed (MEDICO), or closed first; seeded within groups."""
    import random

    if curriculum not in CURRICULA:
        raise ValueError(f"unknown curriculum {curriculum!r}; choose one of {CURRICULA}")
    if curriculum == "none":
        return list(records)
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    if curriculum == "shuffle":
        return shuffled
    open_ended = [r for r in shuffled if not is_closed(r)]
    closed = [r for r in shuffled if is_closed(r)]
    return open_ended + closed if curriculum == "open_first" else closed + open_ended


def mix_datasets(records: list[dict[str, Any]], ratios: dict[str, float], *, seed: int,
                 total: int | None = None) -> list[dict[str, Any]]:
    """Sample data sets in the given proportions (without replacement); total defaults to the most that fit."""
    import random

    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_dataset.setdefault(record["dataset"], []).append(record)
    missing = sorted(set(ratios) - set(by_dataset))
    if missing or not ratios or any(v <= 0 for v in ratios.values()):
        raise ValueError(f"mixing ratios need positive weights for present data sets; missing: {missing}")
    weight = sum(ratios.values())
    shares = {name: value / weight for name, value in ratios.items()}
    most = min(int(len(by_dataset[name]) / share) for name, share in shares.items())
    total = most if total is None else total
    if total > most:
        raise ValueError(f"cannot mix {total} records in ratios {ratios}: at most {most} fit without repeats")
    rng = random.Random(seed)
    mixed = []
    for name, share in shares.items():
        mixed += rng.sample(by_dataset[name], round(total * share))
    rng.shuffle(mixed)
    return mixed


def lazy_dataset(records: list[dict[str, Any]], data_root: str | Path, *, image_size: int | None = None,
                 min_pixels: int | None = None, max_pixels: int | None = None):
    """A Hugging Face Dataset of records whose `images` are opened only when a row is read (same resize policy)."""
    from datasets import Dataset

    root = str(data_root)
    columns = {"id": [r["id"] for r in records], "dataset": [r["dataset"] for r in records],
               "task": [r["task"] for r in records], "question": [r["question"] for r in records],
               "answer": [r["answer"] for r in records], "choices": [r.get("choices") for r in records],
               "image_frames": [dicom_frames(r) for r in records],
               "image_paths": [list(r["images"]) for r in records]}

    def load(batch: dict[str, list]) -> dict[str, list]:
        batch["images"] = [[load_image(Path(root) / rel, image_size, min_pixels=min_pixels, max_pixels=max_pixels,
                                       frame=frame) for rel, frame in zip(paths, frames, strict=True)]
                           for paths, frames in zip(batch["image_paths"], batch["image_frames"], strict=True)]
        return batch

    return Dataset.from_dict(columns).with_transform(load)
