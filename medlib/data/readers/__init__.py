"""Readers for the source formats users bring; each yields records (docs/architecture.md) plus counted problems.

Every reader module has `NAME`, `LAYOUT` (what it expects, for messages), `OPTIONS` (the read options it
takes: `image_root`, `language`), `detect(src) -> reason | None` and
`read(src, *, media_dir=None, image_root=None, language=None) -> ReadResult`; where the format can be
written, also `write(records, data_root, out)`.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from medlib.data.readers import (
    chat_jsonl,
    flare2025,
    flare_xray_reports,
    hf_vqa,
    libra,
    medr1,
    omnimedvqa,
    records,
    slake,
)
from medlib.data.readers.common import Problem, ReadResult

READERS: dict[str, ModuleType] = {module.NAME: module for module in (
    records, flare2025, flare_xray_reports, hf_vqa, slake, medr1, omnimedvqa, libra, chat_jsonl)}
FORMATS = tuple(READERS)
OPTION_FLAGS = {"image_root": "--image-root", "language": "--language"}

__all__ = ["FORMATS", "READERS", "Problem", "ReadResult", "convert", "detect_format", "detection", "read_source",
           "rebase_records"]


def detection(src: str | Path) -> list[tuple[str, str]]:
    """(format, why it matches) for every reader whose layout src matches."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: source not found")
    found = []
    for name, module in READERS.items():
        reason = module.detect(src)
        if reason:
            found.append((name, reason if isinstance(reason, str) else "layout matches"))
    return found


def detect_format(src: str | Path) -> str:
    """The one format whose layout src matches; a clear error when none or several match."""
    return _choose(Path(src))[0]


def _choose(src: Path) -> tuple[str, str]:
    """(format, reason) of the one matching reader; errors list what matched and ask for --format."""
    matches = detection(src)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"{src}: no known layout found; name one with --format ({', '.join(FORMATS)})")
    reasons = "; ".join(f"{name}: {reason}" for name, reason in matches)
    raise ValueError(f"{src}: ambiguous layout (matches {', '.join(name for name, _ in matches)}); "
                     f"name one with --format ({reasons})")


def read_source(src: str | Path, fmt: str = "auto", *, media_dir: str | Path | None = None,
                image_root: str | Path | None = None, language: str | None = None) -> ReadResult:
    """Read src with the named reader (or the detected one, saying why in the notes)."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: source not found")
    if fmt in ("auto", "", None):
        name, reason = _choose(src)
        note = f"format {name} detected: {reason}"
    else:
        name, note = fmt, f"format {fmt} chosen with --format"
    if name not in READERS:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    module = READERS[name]
    options = {"image_root": image_root, "language": language}
    for option, value in options.items():
        if value not in (None, "") and option not in module.OPTIONS:
            users = [n for n, m in READERS.items() if option in m.OPTIONS]
            raise ValueError(f"{OPTION_FLAGS[option]} does not apply to the {name} reader (only to {', '.join(users)})")
    if image_root not in (None, "") and not Path(image_root).is_dir():
        raise FileNotFoundError(f"{image_root}: --image-root folder not found")
    result = module.read(src, media_dir=Path(media_dir) if media_dir else None,
                         **{k: (Path(v) if k == "image_root" else v) for k, v in options.items()
                            if v not in (None, "")})
    result.notes.insert(0, note)
    result.format = name
    if result.items == 0:
        raise ValueError(f"{src}: the {name} reader found nothing to read here; it expects {module.LAYOUT}")
    return result


def rebase_records(records: list[dict[str, Any]], data_root: str | Path, new_root: str | Path) -> list[dict[str, Any]]:
    """Records with image paths made relative to new_root, which must contain data_root's images."""
    # abspath, not resolve: a symlinked data root must stay a path below new_root.
    data_root, new_root = Path(os.path.abspath(data_root)), Path(os.path.abspath(new_root))
    if data_root == new_root:
        return records
    prefix = os.path.relpath(data_root, new_root)
    if prefix.split(os.sep)[0] == "..":
        raise ValueError(f"records for {data_root} cannot live in {new_root}: image paths are relative to the "
                         f"records file's folder, so write them into {data_root} or one of its parent folders")
    prefix = Path(prefix).as_posix()
    return [{**record, "images": [f"{prefix}/{rel}" for rel in record["images"]]} for record in records]


from medlib.data.readers.conversion import convert  # noqa: E402  (uses the names above)
