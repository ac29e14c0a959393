"""The one reader of predictions JSONL files: `medlib score`, notebook 50 and inference all read through it
(`read_jsonl` for any file of JSON objects, `read_predictions` adding the prediction contract's checks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medlib.data.records import TASKS

REQUIRED_FIELDS = ("id", "task", "raw", "answer")


def _numbered_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) of each non-blank line; ValueError naming the file and line otherwise."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            yield number, record


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, blank lines skipped; ValueError naming the file and line on bad input."""
    return [record for _, record in _numbered_objects(Path(path))]


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Prediction records of a JSONL file; ValueError naming the file, line and field on bad input."""
    path = Path(path)
    records = []
    for number, record in _numbered_objects(path):
        missing = [field for field in REQUIRED_FIELDS if field not in record]
        if missing:
            raise ValueError(f"{path}:{number}: missing field {missing[0]!r}")
        if record["task"] not in TASKS:
            raise ValueError(f"{path}:{number}: field 'task' has unknown value {record['task']!r}")
        records.append(record)
    return records
