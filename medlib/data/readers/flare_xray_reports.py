"""A plain report layout: images/<study>/<series>/*.png + reports/<study>.txt, one report per study.

Not a published FLARE layout (FLARE 2025's IU_XRay reports come as `IU_XRay_all_<split>.json` question
files and are read by the flare2025 reader); this is the simplest shape for report data kept as files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from medlib.data.readers.common import ReadResult, canonical_split, place_file

NAME = "flare_xray_reports"
LAYOUT = "images/<study>/<series>/*.png and reports/<study>.txt (FLARE's IU_XRay JSON is read by flare2025)"
OPTIONS: frozenset[str] = frozenset()
QUESTION = "Write the radiology report for these chest X-ray images, with Findings and Impression sections."
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def detect(src: Path) -> str | None:
    """Why src is this layout (images/ and reports/*.txt), or None."""
    src = Path(src)
    if (src / "images").is_dir() and (src / "reports").is_dir() and any((src / "reports").glob("*.txt")):
        return "has images/ and reports/*.txt"
    return None


def _study_images(study_dir: Path, root: Path) -> list[str]:
    """A study's images in series order, then file order, relative to root."""
    found = [p for p in study_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(p.relative_to(root).as_posix() for p in found)


def read(src: Path, *, media_dir: Path | None = None, **_: object) -> ReadResult:
    """One report_generation record per study; a study without report or images is skipped and counted."""
    src = Path(src)
    result = ReadResult(data_root=src)
    image_root, report_root = src / "images", src / "reports"
    studies = {p.name for p in image_root.iterdir() if p.is_dir()} if image_root.is_dir() else set()
    studies |= {p.stem for p in report_root.glob("*.txt")} if report_root.is_dir() else set()
    split = canonical_split(src.name)
    for study in sorted(studies):
        report_path = report_root / f"{study}.txt"
        result.found(f"{src} (studies)", 1)
        images = _study_images(image_root / study, src) if (image_root / study).is_dir() else []
        if not report_path.exists():
            result.skip("missing_report", report_path, "report", f"study {study!r} has images but no report")
            continue
        try:
            report = report_path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            result.skip("unreadable_file", report_path, "report", str(error))
            continue
        if not report:
            result.skip("empty_report", report_path, "report", "the report is empty")
            continue
        if not images:
            result.skip("missing_image", image_root / study, "images", f"study {study!r} has a report but no images")
            continue
        result.records.append({
            "id": study, "dataset": "flare_xray_reports", "modality": "X-ray", "task": "report_generation",
            "images": images, "question": QUESTION, "answer": report,
            "meta": {"split": split, "source_file": report_path.relative_to(src).as_posix(),
                     "series": sorted({Path(p).parent.name for p in images})},
        })
    return result


def write(records: list[dict[str, Any]], data_root: Path, out: Path) -> Path:
    """Write report records back as images/<study>/<series>/<file> + reports/<study>.txt."""
    out = Path(out)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    for record in records:
        for rel in record["images"]:
            series = Path(rel).parent.name if len(Path(rel).parts) > 2 else "series0"
            place_file(Path(data_root) / rel, out / "images" / record["id"] / series / Path(rel).name)
        (out / "reports" / f"{record['id']}.txt").write_text(record["answer"] + "\n", encoding="utf-8")
    return out
