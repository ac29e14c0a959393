"""Check records and their images: per-problem counts, first offending paths; records in = out + skipped."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from medlib.data import RecordError, validate_record
from medlib.data.readers.common import ItemTally, PathEscape, Problem, ReadResult, safe_join
from medlib.data.readers.paths import RealPaths

# A problem kind per failure a user can fix; 16-bit, grey, palette and CMYK images are not problems.
PROBLEM_HELP = {
    "malformed_json": "the file is not valid JSON/JSONL",
    "unreadable_file": "the file cannot be read as UTF-8 text",
    "malformed_item": "an item is not a JSON object",
    "missing_field": "a required field is missing or empty",
    "unknown_task": "a task type medlib does not know",
    "path_escape": "an image path leaves the data root (../, absolute, or a symlink pointing outside)",
    "unrecognised_file": "a file in the source that the chosen reader does not read",
    "schema": "a record breaks the record contract",
    "duplicate_id": "a record id repeats an earlier one",
    "missing_image": "the image file does not exist",
    "unreadable_image": "the image cannot be decoded",
    "truncated_image": "the image file is cut short",
    "oversized_image": "the image is decompression-bomb sized",
    "missing_report": "a study has images but no report",
    "empty_report": "a report file is empty",
    "dicom_no_image": "a DICOM object without pixel data (RT plan, structured report, ...)",
    "dicom_codec_missing": "a compressed DICOM whose decoder is not installed (pylibjpeg / gdcm)",
    "dicom_frame": "the chosen frame does not exist in a multi-frame DICOM",
}


class ValidationFailed(ValueError):
    """Strict validation found problems; the message is the problem table."""


@dataclass(kw_only=True)
class Report(ItemTally):
    """Validation outcome: items in, valid records out, one problem per skipped item."""

    source: str
    items: int

    @property
    def skipped(self) -> int:
        """Items dropped, each with its problem."""
        return len(self.problems)

    @property
    def reconciles(self) -> bool:
        """True when items in = records out + skipped + excluded, and (when known) = the items found per file."""
        balanced = self.items == len(self.records) + self.skipped + sum(self.excluded.values())
        return balanced and (not self.file_items or sum(self.file_items.values()) == self.items)

    def counts(self) -> dict[str, int]:
        """Skipped items per problem kind, most frequent first."""
        counts: dict[str, int] = {}
        for problem in self.problems:
            counts[problem.kind] = counts.get(problem.kind, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def first_messages(self, kind: str, limit: int = 3) -> list[str]:
        """The first `limit` messages of a problem kind, each naming file and field."""
        return [p.message() for p in self.problems if p.kind == kind][:limit]

    def table(self, limit: int = 3) -> str:
        """A plain-text table: problem, count, first offending items; then the reconciliation line."""
        lines = [f"note: {note}" for note in self.notes]
        line = f"{self.source}: {self.items} items in, {len(self.records)} records out, {self.skipped} skipped"
        if self.excluded:
            line += ", " + ", ".join(f"{n} left out ({reason})" for reason, n in sorted(self.excluded.items()))
        lines.append(line)
        if len(self.file_items) > 1:
            found = sum(self.file_items.values())
            lines.append(f"items found per file ({len(self.file_items)} files, {found} items"
                         f"{'' if found == self.items else ' — DOES NOT MATCH the items in'}):")
            lines.extend(f"  {count:>7}  {name}" for name, count in self.file_items.items())
        if self.problems:
            width = max(len(kind) for kind in self.counts())
            lines.append(f"{'problem':<{width}}  {'count':>7}  first offending items")
            for kind, count in self.counts().items():
                first = self.first_messages(kind, limit)
                lines.append(f"{kind:<{width}}  {count:>7}  {first[0]}")
                lines.extend(f"{'':<{width}}  {'':>7}  {message}" for message in first[1:])
        else:
            lines.append("no problems")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """Counts as a JSON-ready dict (for metrics.json)."""
        return {"items": self.items, "records": len(self.records), "skipped": self.skipped, "problems": self.counts(),
                "excluded": dict(self.excluded), "items_per_file": dict(self.file_items)}

    def raise_if_problems(self) -> None:
        """Strict mode: raise ValidationFailed with the table when anything was skipped."""
        if self.problems:
            raise ValidationFailed(self.table())


def image_problem(path: Path, max_pixels: int | None = None, *, frame: int = 0) -> tuple[str, str] | None:
    """(kind, detail) for a missing, unreadable, truncated or bomb-sized image (or a DICOM without one), else None."""
    return _image_check(path, max_pixels, frame)[0]


def _image_check(path: Path, max_pixels: int | None, frame: int) -> tuple[tuple[str, str] | None, dict | None]:
    """(problem or None, DICOM facts or None) for one image file."""
    from medlib.data.dicom import DicomError, is_dicom, read_dicom

    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if not path.is_file():
        return ("missing_image", "file not found"), None
    if is_dicom(path):
        try:
            image, facts = read_dicom(path, frame)
        except DicomError as error:
            return (error.kind, str(error)), None
        if limit and image.width * image.height > limit:
            return ("oversized_image", f"{image.width}×{image.height} pixels exceeds the limit of {limit}"), None
        return None, facts
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if limit and width * height > limit:
                    return ("oversized_image", f"{width}×{height} pixels exceeds the limit of {limit}"), None
                image.load()
    except Image.DecompressionBombError as error:
        return ("oversized_image", str(error)), None
    except OSError as error:  # PIL signals both undecodable and cut-short files with OSError
        message = str(error)
        return (("truncated_image" if "truncat" in message.lower() else "unreadable_image"), message), None
    except (ValueError, SyntaxError) as error:  # some plug-ins raise these on corrupt headers
        return ("unreadable_image", str(error)), None
    return None, None


def _normalised_images(record: Any) -> tuple[Any, str | None]:
    """The record with image paths spelled canonically (`a/../b` → `b`), or the first path that climbs out."""
    if not isinstance(record, dict) or not isinstance(record.get("images"), list):
        return record, None
    paths = []
    for rel in record["images"]:
        if not isinstance(rel, str) or not rel.strip():
            return record, None  # the schema check names it
        try:
            paths.append(safe_join("", rel))
        except PathEscape:
            return record, rel
    return {**record, "images": paths}, None


def validate_records(records: list[Any], data_root: str | Path, *, source: str = "records",
                     check_images: bool = True, max_pixels: int | None = None,
                     upstream: ReadResult | None = None, dicom_frame: int = 0) -> Report:
    """Check schema, ids, paths (symlinks followed) and (optionally) every image; bad records are skipped and counted.

    DICOM images are read at `dicom_frame`; their facts (frame, pixel spacing, window) go into
    `meta["dicom"]`, one entry per image, so training and inference read the same frame.
    """
    root = Path(data_root)
    excluded = dict(upstream.excluded) if upstream else {}
    report = Report(source=source, data_root=root, excluded=excluded,
                    items=len(records) + (len(upstream.problems) if upstream else 0) + sum(excluded.values()),
                    file_items=dict(upstream.file_items) if upstream else {},
                    notes=list(upstream.notes) if upstream else [])
    if upstream:
        report.problems.extend(upstream.problems)
    seen: set[str] = set()
    image_cache: dict[str, tuple[tuple[str, str] | None, dict | None]] = {}
    inside_cache: dict[str, bool] = {}
    real_paths = RealPaths(root)
    for index, record in enumerate(records):
        meta = record.get("meta") if isinstance(record, dict) else None
        where = str(meta.get("source_file")) if isinstance(meta, dict) and meta.get("source_file") else f"{source}[{index}]"
        record, escaping = _normalised_images(record)
        if escaping is not None:
            report.problems.append(Problem("path_escape", where, "images", f"{escaping!r} escapes the data root"))
            continue
        try:
            validate_record(record, where)
        except RecordError as error:
            report.problems.append(Problem("schema", where, "record", str(error).removeprefix(f"{where}: ")))
            continue
        if record["id"] in seen:
            report.problems.append(Problem("duplicate_id", where, "id", f"{record['id']!r} repeats an earlier record"))
            continue
        seen.add(record["id"])
        for rel in record["images"]:
            if rel not in inside_cache:
                inside_cache[rel] = real_paths.inside(root / rel)
        outside = next((rel for rel in record["images"] if not inside_cache[rel]), None)
        if outside is not None:
            target = real_paths.real(root / outside)
            report.problems.append(Problem("path_escape", str(root / outside), f"images ({where} id {record['id']})",
                                           f"a symlink leads outside the data root (to {target})"))
            continue
        bad, facts = None, []
        if check_images:
            for rel in record["images"]:
                if rel not in image_cache:
                    image_cache[rel] = _image_check(root / rel, max_pixels, dicom_frame)
                problem, fact = image_cache[rel]
                if problem:
                    bad = (rel, *problem)
                    break
                facts.append(fact)
        if bad:
            rel, kind, detail = bad
            report.problems.append(Problem(kind, str(root / rel), f"images ({where} id {record['id']})", detail))
            continue
        if any(facts):
            record = {**record, "meta": {**record.get("meta", {}), "dicom": facts}}
        report.records.append(record)
    return report


def validate_source(src: str | Path, fmt: str = "auto", *, check_images: bool = True, max_pixels: int | None = None,
                    media_dir: str | Path | None = None, image_root: str | Path | None = None,
                    language: str | None = None, dicom_frame: int = 0) -> Report:
    """Read a source with its reader, then validate the records; reader and record problems in one report.

    Embedded images (parquet, save_to_disk) are extracted to media_dir, or to a temporary folder that is
    removed before returning.
    """
    import tempfile

    from medlib.data.readers import read_source

    with tempfile.TemporaryDirectory(prefix="medlib-media-") as scratch:
        result = read_source(src, fmt, media_dir=media_dir or scratch, image_root=image_root, language=language)
        return validate_records(result.records, result.data_root, source=f"{src} ({result.format})",
                                check_images=check_images, max_pixels=max_pixels, upstream=result,
                                dicom_frame=dicom_frame)
