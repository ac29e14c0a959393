"""Check records and their images: per-problem counts, first offending paths; records in = out + skipped."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from medlib.data import RecordError, validate_record
from medlib.data.readers.common import Problem, ReadResult

# A problem kind per failure a user can fix; 16-bit, grey, palette and CMYK images are not problems.
PROBLEM_HELP = {
    "malformed_json": "the file is not valid JSON/JSONL",
    "unreadable_file": "the file cannot be read as UTF-8 text",
    "malformed_item": "an item is not a JSON object",
    "missing_field": "a required field is missing or empty",
    "unknown_task": "a task type medlib does not know",
    "path_escape": "an image path leaves the data root (../ or absolute)",
    "schema": "a record breaks the record contract",
    "duplicate_id": "a record id repeats an earlier one",
    "missing_image": "the image file does not exist",
    "unreadable_image": "the image cannot be decoded",
    "truncated_image": "the image file is cut short",
    "oversized_image": "the image is decompression-bomb sized",
    "missing_report": "a study has images but no report",
    "empty_report": "a report file is empty",
}


class ValidationFailed(ValueError):
    """Strict validation found problems; the message is the problem table."""


@dataclass
class Report:
    """Validation outcome: items in, valid records out, one problem per skipped item."""

    source: str
    data_root: Path
    items: int
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Items dropped, each with its problem."""
        return len(self.problems)

    @property
    def reconciles(self) -> bool:
        """True when items in = records out + skipped."""
        return self.items == len(self.records) + self.skipped

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
        lines = [f"{self.source}: {self.items} items in, {len(self.records)} records out, {self.skipped} skipped"]
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
        return {"items": self.items, "records": len(self.records), "skipped": self.skipped, "problems": self.counts()}

    def raise_if_problems(self) -> None:
        """Strict mode: raise ValidationFailed with the table when anything was skipped."""
        if self.problems:
            raise ValidationFailed(self.table())


def image_problem(path: Path, max_pixels: int | None = None) -> tuple[str, str] | None:
    """(kind, detail) for a missing, unreadable, truncated or bomb-sized image, else None."""
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if not path.is_file():
        return "missing_image", "file not found"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if limit and width * height > limit:
                    return "oversized_image", f"{width}×{height} pixels exceeds the limit of {limit}"
                image.load()
    except Image.DecompressionBombError as error:
        return "oversized_image", str(error)
    except OSError as error:  # PIL signals both undecodable and cut-short files with OSError
        message = str(error)
        return ("truncated_image" if "truncat" in message.lower() else "unreadable_image"), message
    except (ValueError, SyntaxError) as error:  # some plug-ins raise these on corrupt headers
        return "unreadable_image", str(error)
    return None


def _escapes(rel: Any) -> bool:
    """True for an image path that is absolute or climbs out of the root."""
    if not isinstance(rel, str):
        return False
    path = PurePosixPath(rel.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or (len(rel) > 1 and rel[1] == ":")


def validate_records(records: list[Any], data_root: str | Path, *, source: str = "records",
                     check_images: bool = True, max_pixels: int | None = None,
                     upstream: ReadResult | None = None) -> Report:
    """Check schema, ids, paths and (optionally) every image; bad records are skipped and counted."""
    root = Path(data_root)
    report = Report(source=source, data_root=root, items=len(records) + (len(upstream.problems) if upstream else 0))
    if upstream:
        report.problems.extend(upstream.problems)
    seen: set[str] = set()
    image_cache: dict[str, tuple[str, str] | None] = {}
    for index, record in enumerate(records):
        meta = record.get("meta") if isinstance(record, dict) else None
        where = str(meta.get("source_file")) if isinstance(meta, dict) and meta.get("source_file") else f"{source}[{index}]"
        if isinstance(record, dict) and isinstance(record.get("images"), list):
            escaping = next((rel for rel in record["images"] if _escapes(rel)), None)
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
        bad = None
        if check_images:
            for rel in record["images"]:
                if rel not in image_cache:
                    image_cache[rel] = image_problem(root / rel, max_pixels)
                if image_cache[rel]:
                    bad = (rel, *image_cache[rel])
                    break
        if bad:
            rel, kind, detail = bad
            report.problems.append(Problem(kind, str(root / rel), f"images ({where} id {record['id']})", detail))
            continue
        report.records.append(record)
    return report


def validate_source(src: str | Path, fmt: str = "auto", *, check_images: bool = True, max_pixels: int | None = None,
                    media_dir: str | Path | None = None) -> Report:
    """Read a source with its reader, then validate the records; reader and record problems in one report."""
    import tempfile

    from medlib.data.readers import detect_format, read_source

    name = detect_format(src) if fmt in ("auto", "", None) else fmt
    if media_dir is None and name == "hf_vqa":
        media_dir = tempfile.mkdtemp(prefix="medlib-media-")  # embedded images need a place to be checked
    result = read_source(src, name, media_dir=media_dir)
    return validate_records(result.records, result.data_root, source=f"{src} ({name})", check_images=check_images,
                            max_pixels=max_pixels, upstream=result)
