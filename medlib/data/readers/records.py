"""medlib's own records JSONL (the record of docs/architecture.md), read leniently: bad lines are skipped and counted."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from medlib.data.readers.common import (
    ReadResult,
    first_item,
    json_items,
    output_in_root,
    source_files,
    write_jsonl,
)

NAME = "records"
LAYOUT = "records JSONL (docs/architecture.md): one object per line with id, task, images, question, answer"
OPTIONS: frozenset[str] = frozenset()
KEYS = {"id", "task", "images", "question", "answer"}


def detect(src: Path) -> str | None:
    """Why src is records JSONL (its first line has the record's keys), or None."""
    files = [p for p in source_files(Path(src)) if p.suffix == ".jsonl"]
    first = first_item(files[0]) if files else None
    if isinstance(first, dict) and KEYS <= set(first):
        return f"{files[0].name}: first line has {', '.join(sorted(KEYS))}"
    return None


def read(src: Path, *, media_dir: Path | None = None, **_: object) -> ReadResult:
    """Read records JSONL files (a file, or every *.jsonl in a folder); checking is left to validation."""
    src = Path(src)
    result = ReadResult(data_root=src if src.is_dir() else src.parent)
    for path in source_files(src, (".jsonl",)):
        for where, item in json_items(path, result):
            if isinstance(item, dict):
                item.setdefault("meta", {})
                if isinstance(item["meta"], dict):
                    item["meta"].setdefault("source_file", f"{where}")
            result.records.append(item)
    return result


def write(records: list[dict[str, Any]], data_root: Path, out: Path) -> Path:
    """Write records JSONL at out (image paths stay relative to data_root, which must be out's folder)."""
    return write_jsonl(records, output_in_root(out, data_root, "records"))
