"""Readers for the source formats users bring; each yields DESIGN.md records plus counted problems.

Every reader module has `NAME`, `detect(src) -> bool`, `read(src, *, media_dir=None) -> ReadResult`
and, where the format can be written, `write(records, data_root, out)`.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from medlib.data.readers import chat_jsonl, flare2025, flare_xray_reports, hf_vqa, libra, medr1, records
from medlib.data.readers.common import Problem, ReadResult

READERS: dict[str, ModuleType] = {module.NAME: module for module in (
    records, flare2025, flare_xray_reports, hf_vqa, medr1, libra, chat_jsonl)}
FORMATS = tuple(READERS)

__all__ = ["FORMATS", "READERS", "Problem", "ReadResult", "detect_format", "read_source", "rebase_records"]


def detect_format(src: str | Path) -> str:
    """The one format whose layout src matches; a clear error when none or several match."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: source not found")
    matches = [name for name, module in READERS.items() if module.detect(src)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"{src}: no known layout found; name one with --format ({', '.join(FORMATS)})")
    raise ValueError(f"{src}: ambiguous layout (matches {', '.join(matches)}); name one with --format")


def read_source(src: str | Path, fmt: str = "auto", *, media_dir: str | Path | None = None) -> ReadResult:
    """Read src with the named reader (or the detected one)."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: source not found")
    name = detect_format(src) if fmt in ("auto", "", None) else fmt
    if name not in READERS:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return READERS[name].read(src, media_dir=Path(media_dir) if media_dir else None)


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


def convert(src: str | Path, out: str | Path, fmt: str = "auto", *, strict: bool = False, check_images: bool = True,
            max_pixels: int | None = None) -> tuple[Any, list[Path]]:
    """Read, validate and write records: `out.jsonl` gets every record, a folder gets one <split>.jsonl per split.

    Image paths are rewritten relative to the output folder; embedded images (parquet, save_to_disk) are
    extracted to <output folder>/images/<source name>/. Returns the validation report and the files written.
    """
    from medlib.data.readers.common import write_jsonl
    from medlib.data.validation import validate_records

    src, out = Path(src), Path(out)
    out_dir = out.parent if out.suffix == ".jsonl" else out
    name = detect_format(src) if fmt in ("auto", "", None) else fmt
    result = read_source(src, name, media_dir=out_dir / "images" / src.name)
    report = validate_records(result.records, result.data_root, source=f"{src} ({name})",
                              check_images=check_images, max_pixels=max_pixels, upstream=result)
    if strict:
        report.raise_if_problems()
    rebased = rebase_records(report.records, _reachable_root(result.data_root, out_dir), out_dir)
    if out.suffix == ".jsonl":
        return report, [write_jsonl(rebased, out)]
    by_split: dict[str, list[dict[str, Any]]] = {}
    for record in rebased:
        by_split.setdefault(str(record.get("meta", {}).get("split", "train")), []).append(record)
    return report, [write_jsonl(rows, out / f"{split}.jsonl") for split, rows in sorted(by_split.items())]


def _reachable_root(data_root: Path, out_dir: Path) -> Path:
    """data_root itself when it lies under out_dir, else a symlink out_dir/<name> to it (images stay where they are)."""
    data_root, out_dir = Path(os.path.abspath(data_root)), Path(os.path.abspath(out_dir))
    if data_root == out_dir or out_dir in data_root.parents:
        return data_root
    link = out_dir / data_root.name
    data_root = data_root.resolve()
    if link.is_symlink() or link.exists():
        if link.resolve() != data_root:
            raise ValueError(f"{link} exists and is not a link to {data_root}; choose another --out")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        link.symlink_to(data_root, target_is_directory=True)
    return link
