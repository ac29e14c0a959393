"""What every reader shares: problems, the read result, safe relative paths, options and splits."""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

SPLIT_ALIASES = {
    "training": "train", "train": "train", "tr": "train",
    "validation-public": "validation", "validation": "validation", "valid": "validation", "val": "validation",
    "validation-hidden": "validation_hidden", "testing": "test", "test": "test", "ts": "test",
}
YES_NO = ("yes", "no")
# An option marker: "A)", "A.", "A:", "(A)" at the start, after white space or after a separator.
_MARKER = re.compile(r"(?:^|(?<=[\s,;:]))(\()?([A-H])([).:])")
# Split names in file names (`X-Ray_test.json`, `libra_findings_section_valid.json`, `val_sft.jsonl`).
_NAME_SPLITS = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
                "validation": "validation", "dev": "validation", "test": "test", "testing": "test", "eval": "test"}


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


@dataclass(kw_only=True)
class ItemTally:
    """Records kept, one problem per skipped item, and the root image paths are relative to.

    `file_items` counts the items found in every file read (an unreadable file counts as one item), so the
    summary can reconcile them against records + skipped + `excluded` (left out on purpose, e.g. by a
    language filter); `notes` says what the reader chose or ignored and why. A reader fills one
    (ReadResult) and validation carries it on (medlib.data.validation.Report).
    """

    data_root: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    file_items: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class ReadResult(ItemTally):
    """What a reader read from a source (the tally) and the format it read it as."""

    format: str = ""

    @property
    def items(self) -> int:
        """Items seen in the source: records out plus skipped plus excluded."""
        return len(self.records) + len(self.problems) + sum(self.excluded.values())

    def skip(self, kind: str, path: str | Path, field_name: str, detail: str) -> None:
        """Count one item as skipped with the reason."""
        self.problems.append(Problem(kind, str(path), field_name, detail))

    def found(self, path: str | Path, count: int) -> None:
        """Record how many items a file holds."""
        self.file_items[str(path)] = self.file_items.get(str(path), 0) + count

    def exclude(self, reason: str) -> None:
        """Count one item left out on purpose (not a problem), by reason."""
        self.excluded[reason] = self.excluded.get(reason, 0) + 1

    def skip_non_object(self, item: Any, where: str, field_name: str = "item") -> bool:
        """Skip item as `malformed_item` unless it is a JSON object; True when skipped."""
        if isinstance(item, dict):
            return False
        self.skip("malformed_item", where, field_name, f"expected an object, got {type(item).__name__}")
        return True

    def skip_missing(self, item: dict[str, Any], names: Iterable[str], where: str) -> bool:
        """Skip item as `missing_field` (naming the first) when any of names is missing or empty; True when skipped."""
        missing = [name for name in names if item.get(name) in (None, "", [])]
        if missing:
            self.skip("missing_field", where, missing[0], "missing or empty")
        return bool(missing)


class PathEscape(ValueError):
    """An image name that leaves the data root (`../`, an absolute path)."""


def is_absolute_name(name: str) -> bool:
    """True for `/x`, `\\x` and `C:` style paths."""
    text = name.strip().replace("\\", "/")
    return text.startswith("/") or bool(re.match(r"^[A-Za-z]:", text))


def safe_join(base: str, name: str) -> str:
    """`base/name` normalised (`a/../b` → `b`) relative to the data root; raise PathEscape if it climbs out.

    Only the spelling is checked here: validation resolves symlinks and checks the real path stays inside.
    """
    if not isinstance(name, str) or not name.strip():
        raise PathEscape(f"empty image name {name!r}")
    if is_absolute_name(name):
        raise PathEscape(f"{name!r} is an absolute path")
    parts: list[str] = []
    for part in PurePosixPath(base, name.strip().replace("\\", "/")).parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathEscape(f"{name!r} escapes the data root")
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        raise PathEscape(f"{name!r} names the data root itself, not an image")
    return "/".join(parts)


def relative_dir(path: Path, root: Path) -> str:
    """A folder below root as a POSIX relative path ('' for root itself)."""
    return Path(os.path.relpath(path, root)).as_posix().removeprefix(".")


def canonical_split(name: str, default: str = "train") -> str:
    """Map a split folder or field (`training`, `validation-public`, `Ts`) to train/validation/test."""
    return SPLIT_ALIASES.get(str(name).strip().lower(), default)


def split_from_name(stem: str, default: str = "train") -> str:
    """The split a file name states (`X-Ray_test` → test, `libra_findings_section_valid` → validation)."""
    for token in reversed(re.split(r"[^A-Za-z]+", stem.lower())):
        if token in _NAME_SPLITS:
            return _NAME_SPLITS[token]
    return default


def _option_chain(markers: list[re.Match], start: int) -> list[re.Match]:
    """Markers A, B, C… in order from markers[start], all written in the same style as A's."""
    first = markers[start]
    style = (first.group(1), first.group(3))
    chain = [first]
    for marker in markers[start + 1:]:
        expected = chr(ord(chain[-1].group(2)) + 1)
        if marker.group(2) == expected and (marker.group(1), marker.group(3)) == style:
            chain.append(marker)
    return chain


def parse_options(question: str) -> list[str] | None:
    """The option texts of a multiple-choice question in letter order, without their separators, or None.

    Reads every style the sources use: `A. x, B. y` (FLARE), `A)x, B)y` (Med-R1), `Options: A: x B: y`,
    `(A) x (B) y` and one option per line; options must start at A and share one marker style.
    """
    markers = list(_MARKER.finditer(question))
    best: list[re.Match] = []
    for index, marker in enumerate(markers):
        if marker.group(2) == "A":
            chain = _option_chain(markers, index)
            if len(chain) > len(best):
                best = chain
    if len(best) < 2:
        return None
    ends = [marker.start() for marker in best[1:]] + [len(question)]
    options = []
    for marker, end in zip(best, ends, strict=True):
        text = question[marker.end():end].strip().split("\n")[0]
        options.append(text.strip().rstrip(",;").strip())
    return options if all(options) else None


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


def place_file(source: Path, target: Path) -> bool:
    """Put a copy of source at target: a hard link when the file system allows it (True), else a copy (False)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.link(source, target)  # follows a symlinked source: the link is to the file itself
        return True
    except OSError:  # across devices or on file systems without hard links
        shutil.copyfile(source, target)
        return False


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


def output_in_root(out: str | Path, data_root: Path, kind: str) -> Path:
    """out as a Path; ValueError unless it sits directly in data_root, the folder its image paths are relative to."""
    out = Path(out)
    if out.parent.resolve() != Path(data_root).resolve():
        raise ValueError(f"{out}: a {kind} file must sit in the data root {data_root} (image paths are relative to it)")
    return out


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows as JSON lines atomically."""
    from medlib.pipeline.results import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def json_items(path: Path, result: ReadResult) -> list[tuple[str, Any]]:
    """(`file[index]` or `file:line`, object) for a JSON list or a JSONL file; bad files/lines are counted."""
    before = len(result.problems)
    if path.suffix == ".jsonl":
        rows = read_jsonl_lines(path, result)
    else:
        loaded = read_json_file(path, result)
        rows = []
        if isinstance(loaded, list):
            rows = [(f"{path}[{index}]", item) for index, item in enumerate(loaded)]
        elif loaded is not None:
            result.skip("malformed_json", path, "top level", f"expected a list, got {type(loaded).__name__}")
    result.found(path, len(rows) + len(result.problems) - before)
    return rows


def json_objects(src: Path, result: ReadResult) -> Iterator[tuple[Path, str, int, str, dict]]:
    """(file, its folder relative to the data root, index, where, object) for every JSON object in the
    JSON/JSONL files of src; anything but an object is skipped and counted as a malformed item."""
    for path in source_files(src):
        base = relative_dir(path.parent, result.data_root)
        for index, (where, item) in enumerate(json_items(path, result)):
            if not result.skip_non_object(item, where):
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
