"""Read and validate records (DESIGN.md contract) and turn them into training data sets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medlib import prompts
from medlib.processing import load_image

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


def load_record_images(record: dict[str, Any], data_root: str | Path, image_size: int | None) -> list:
    """Load a record's images (current first) as RGB PIL images, the same way for training and inference."""
    root = Path(data_root)
    return [load_image(root / rel, image_size) for rel in record["images"]]


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
    from PIL import Image

    problems: dict[str, int] = {}
    root = Path(data_root)
    for path in sorted({rel for r in records for rel in r["images"]}):
        full = root / path
        if not full.exists():
            problems["missing"] = problems.get("missing", 0) + 1
            continue
        try:
            with Image.open(full) as image:
                image.load()
        except Exception:  # any decoder failure is the same problem for the user: the file is unusable
            problems["unreadable"] = problems.get("unreadable", 0) + 1
    return problems
