"""`medlib data convert`: read, validate and write a records set, never over the source, swapped in at the end.

The output set is the records file (or every top-level `*.jsonl` of the output folder), the images placed
under `images/<source name>/` and `convert.json`. It is built in a temporary folder beside the output and
moved into place only when complete; an existing set is replaced only with `overwrite=True`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from medlib.data.readers import read_source, rebase_records
from medlib.data.readers.common import place_file, write_jsonl


def _label(src: Path) -> str:
    """The folder name a source's images get under images/."""
    return src.name if src.is_dir() else src.stem


def _replaced(out: Path, out_dir: Path, label: str) -> list[Path]:
    """The existing paths the new output set replaces."""
    if out.suffix == ".jsonl":
        candidates = [out, out_dir / "images" / label]
    else:
        candidates = sorted(out_dir.glob("*.jsonl")) + [out_dir / "images" / label, out_dir / "convert.json"]
    return [path for path in candidates if path.exists() or path.is_symlink()]


def _check_not_source(paths: list[Path], src: Path, read_files: list[str], images: set[Path]) -> None:
    """Refuse to replace the source, anything holding it, a file the reader read or an image records use."""
    src_real = src.resolve()
    read_real = {Path(name.split("[")[0]).resolve() for name in read_files}
    for path in paths:
        real = path.resolve()
        if real == src_real or src_real.is_relative_to(real) or real in read_real or real in images:
            raise ValueError(f"{path} is part of the source {src}; choose an --out that does not overwrite it")


def _place_images(records: list[dict[str, Any]], data_root: Path, target: Path) -> tuple[int, int]:
    """Hard-link (or copy, across file systems) every image records use into target; (linked, copied)."""
    linked = copied = 0
    for rel in sorted({rel for record in records for rel in record["images"]}):
        if place_file(data_root / rel, target / rel):
            linked += 1
        else:
            copied += 1
    return linked, copied


def _swap(build: Path, out_dir: Path, names: list[str], replaced: list[Path]) -> None:
    """Move the old set aside, the new set (names inside build) into out_dir, then drop the old set."""
    old = build / ".replaced"
    old.mkdir()
    moved: list[tuple[Path, Path]] = []
    try:
        for index, path in enumerate(replaced):
            aside = old / f"{index}_{path.name}"
            os.replace(path, aside)
            moved.append((aside, path))
        for name in names:
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(build / name, target)
    except OSError:
        for aside, path in moved:  # put the old set back: the user keeps what they had
            if not path.exists():
                os.replace(aside, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def convert(src: str | Path, out: str | Path, fmt: str = "auto", *, strict: bool = False, check_images: bool = True,
            max_pixels: int | None = None, overwrite: bool = False, image_root: str | Path | None = None,
            language: str | None = None, dicom_frame: int = 0) -> tuple[Any, list[Path]]:
    """Read, validate and write records: `out.jsonl` gets every record, a folder gets one <split>.jsonl per split.

    Image paths are rewritten relative to the output folder. Images outside it are hard-linked (copied
    across file systems) to <out>/images/<source name>/, and embedded images (parquet, save_to_disk) are
    extracted there, so the output is self-contained. Returns the validation report and the files written.
    """
    from medlib.data.validation import validate_records

    src, out = Path(src), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"{src}: source not found")
    if src.is_file() and out.resolve() == src.resolve():
        raise ValueError(f"--out {out} is the source file; write the records somewhere else")
    out_dir = out.parent if out.suffix == ".jsonl" else out
    label = _label(src)
    replaced = _replaced(out, out_dir, label) if out_dir.exists() else []
    if replaced and not overwrite:
        names = ", ".join(str(path) for path in replaced)
        raise ValueError(f"{out} already holds data ({names}); pass --overwrite to replace it")
    fresh = not out_dir.exists()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build_parent = out_dir.parent if fresh else out_dir
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.medlib-convert-", dir=build_parent))
    try:
        media = build / "images" / label
        result = read_source(src, fmt, media_dir=media, image_root=image_root, language=language)
        name = result.format
        report = validate_records(result.records, result.data_root, source=f"{src} ({name})",
                                  check_images=check_images, max_pixels=max_pixels, upstream=result,
                                  dicom_frame=dicom_frame)
        report.notes = list(result.notes)
        if strict:
            report.raise_if_problems()
        root = Path(os.path.abspath(result.data_root))
        if replaced:
            used = {(root / rel).resolve() for record in report.records for rel in record["images"]}
            _check_not_source(replaced, src, list(result.file_items), used)
        if root == Path(os.path.abspath(media)):
            records = rebase_records(report.records, root, build)
        elif root == Path(os.path.abspath(out_dir)) or Path(os.path.abspath(out_dir)) in root.parents:
            records = rebase_records(report.records, root, out_dir)
        else:
            linked, copied = _place_images(report.records, root, media)
            report.notes.append(f"{linked + copied} images placed under {out_dir / 'images' / label} "
                                f"({linked} hard-linked, {copied} copied across file systems)")
            records = rebase_records(report.records, media, build)
        names = _write_set(records, out, build, report, src, name)
        if (build / "images" / label).exists():
            names.append(f"images/{label}")
        elif (build / "images").exists():
            shutil.rmtree(build / "images")
        if fresh:
            os.replace(build, out_dir)  # one rename: the folder appears complete or not at all
        else:
            _swap(build, out_dir, names, replaced)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    written = [out] if out.suffix == ".jsonl" else [out_dir / n for n in names if n.endswith(".jsonl")]
    return report, written


def _write_set(records: list[dict[str, Any]], out: Path, build: Path, report: Any, src: Path, fmt: str) -> list[str]:
    """Write the records (one file, or one per split) and convert.json into build; the names written."""
    if out.suffix == ".jsonl":
        write_jsonl(records, build / out.name)
        return [out.name]
    by_split: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_split.setdefault(str(record.get("meta", {}).get("split", "train")), []).append(record)
    names = []
    for split, rows in sorted(by_split.items()):
        write_jsonl(rows, build / f"{split}.jsonl")
        names.append(f"{split}.jsonl")
    manifest = {"source": str(src), "format": fmt, **report.summary(), "notes": report.notes,
                "files": names}
    (build / "convert.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return names + ["convert.json"]
