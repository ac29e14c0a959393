"""What every reader shares: problems, the read result, safe relative paths, options and splits."""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

SPLIT_ALIASES = {
    "training": "train", "train": "train", "tr": "train",
    "validation-public": "validation", "validation": "validation", "valid": "validation", "val": "validation",
    "validation-hidden": "validation_hidden", "testing": "test", "test": "test", "ts": "test",
}
YES_NO = ("yes", "no")
# "A) CT B) MRI", "A. CT\nB. MRI", "(A) CT (B) MRI": a letter, a closing mark, then the option text.
_OPTION = re.compile(r"(?:^|(?<=\s))\(?([A-H])[).:]\s*(.+?)(?=\s+\(?[A-H][).:]|\s*$)", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    """One skipped item: its kind (`unknown_task`, `path_escape`, ...), the file, the field and what is wrong."""

    kind: str
    path: str
    field: str
    detail: str

    def message(self) -> str:
        """`file: field: detail`, the line a user reads."""
        return f"{self.path}: {self.field}: {self.detail}"


@dataclass
class ReadResult:
    """Records read from a source, one problem per skipped item, and the root image paths are relative to."""

    data_root: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def items(self) -> int:
        """Items seen in the source: records out plus skipped (an unreadable file counts as one item)."""
        return len(self.records) + len(self.problems)

    def skip(self, kind: str, path: str | Path, field_name: str, detail: str) -> None:
        """Count one item as skipped with the reason."""
        self.problems.append(Problem(kind, str(path), field_name, detail))


class PathEscape(ValueError):
    """An image name that leaves the data root (`../`, an absolute path)."""


def safe_join(base: str, name: str) -> str:
    """`base/name` as a POSIX path relative to the data root; raise PathEscape if it leaves the root."""
    if not isinstance(name, str) or not name.strip():
        raise PathEscape(f"empty image name {name!r}")
    text = name.strip().replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise PathEscape(f"{name!r} is an absolute path")
    parts = [p for p in PurePosixPath(base, text).parts if p not in ("", ".")]
    if ".." in parts:
        raise PathEscape(f"{name!r} escapes the data root")
    return "/".join(parts)


def relative_dir(path: Path, root: Path) -> str:
    """A folder below root as a POSIX relative path ('' for root itself)."""
    return Path(os.path.relpath(path, root)).as_posix().removeprefix(".")


def canonical_split(name: str, default: str = "train") -> str:
    """Map a split folder or field (`training`, `validation-public`, `Ts`) to train/validation/test."""
    return SPLIT_ALIASES.get(str(name).strip().lower(), default)


def parse_options(question: str) -> list[str] | None:
    """The option texts of a multiple-choice question in letter order, or None if it has no A/B options."""
    found = {letter: text.strip() for letter, text in _OPTION.findall(question)}
    letters = "ABCDEFGH"[: len(found)]
    if len(found) < 2 or "".join(sorted(found)) != letters:
        return None
    return [found[letter] for letter in letters]


def answer_text(value: Any) -> str:
    """The canonical reference text: strings stripped, numbers as written, lists/objects as compact JSON."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(", ", ": "))


def is_yes_no(answer: str) -> bool:
    """True for a yes/no answer (any case, trailing full stop allowed)."""
    return answer.strip().lower().rstrip(".") in YES_NO


def place_file(source: Path, target: Path) -> None:
    """Put a copy of source at target (a hard link when the file system allows it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:  # across devices or on file systems without hard links
        shutil.copyfile(source, target)


def read_json_file(path: Path, result: ReadResult) -> Any | None:
    """Parse a JSON file; a malformed one is skipped as one item with the parser's position."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        result.skip("malformed_json", path, f"line {error.lineno} column {error.colno}", error.msg)
    except (OSError, UnicodeDecodeError) as error:
        result.skip("unreadable_file", path, "file", str(error))
    return None


def read_jsonl_lines(path: Path, result: ReadResult) -> list[tuple[str, Any]]:
    """(`file:line`, object) for every non-blank line; malformed lines are skipped and counted."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        result.skip("unreadable_file", path, "file", str(error))
        return []
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{number}", json.loads(line)))
        except json.JSONDecodeError as error:
            result.skip("malformed_json", f"{path}:{number}", f"column {error.colno}", error.msg)
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows as JSON lines atomically."""
    from medlib.pipeline.results import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def json_items(path: Path, result: ReadResult) -> list[tuple[str, Any]]:
    """(`file[index]` or `file:line`, object) for a JSON list or a JSONL file; bad files/lines are counted."""
    if path.suffix == ".jsonl":
        return read_jsonl_lines(path, result)
    loaded = read_json_file(path, result)
    if loaded is None:
        return []
    if not isinstance(loaded, list):
        result.skip("malformed_json", path, "top level", f"expected a list, got {type(loaded).__name__}")
        return []
    return [(f"{path}[{index}]", item) for index, item in enumerate(loaded)]


def json_objects(src: Path, result: ReadResult) -> Iterator[tuple[Path, str, int, str, dict]]:
    """(file, its folder relative to the data root, index, where, object) for every JSON object in the
    JSON/JSONL files of src; anything but an object is skipped and counted as a malformed item."""
    for path in source_files(src):
        base = relative_dir(path.parent, result.data_root)
        for index, (where, item) in enumerate(json_items(path, result)):
            if not isinstance(item, dict):
                result.skip("malformed_item", where, "item", f"expected an object, got {type(item).__name__}")
                continue
            yield path, base, index, where, item


def source_files(src: Path, suffixes: tuple[str, ...] = (".json", ".jsonl")) -> list[Path]:
    """src itself if it is a file, else the JSON/JSONL files directly inside it, sorted."""
    src = Path(src)
    if src.is_file():
        return [src]
    return sorted(p for p in src.glob("*") if p.suffix in suffixes and p.is_file())


def first_item(path: Path) -> Any | None:
    """The first object of a JSON list or JSONL file without reading a big file whole, or None."""
    try:
        with path.open(encoding="utf-8") as handle:
            if path.suffix == ".jsonl":
                line = next((line for line in handle if line.strip()), "")
                return json.loads(line) if line else None
            head = handle.read(1 << 16)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    try:
        loaded = json.loads(head)
        return loaded[0] if isinstance(loaded, list) and loaded else None
    except json.JSONDecodeError:
        pass
    # A big list is cut mid-way: decode the first element after the opening bracket.
    start = head.find("{")
    if not head.lstrip().startswith("[") or start < 0:
        return None
    try:
        return json.JSONDecoder().raw_decode(head, start)[0]
    except json.JSONDecodeError:
        return None
