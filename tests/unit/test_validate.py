"""Validation (medlib.data.validation): image problems, valid exotic modes, counts that reconcile, strict mode."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlib.data.validation import ValidationFailed, image_problem, validate_records, validate_source


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width × height pixels (never decoded)."""
    Image.new("L", (4, 4)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "ok.png")
    good = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "corrupt.png").write_bytes(b"not an image at all" * 10)
    bomb_png(tmp_path / "bomb.png", 20_000, 20_000)
    Image.fromarray(np.full((8, 8), 4000, dtype=np.uint16)).save(tmp_path / "sixteen.png")
    Image.new("P", (8, 8)).save(tmp_path / "palette.png")
    Image.new("CMYK", (8, 8)).save(tmp_path / "cmyk.tif")
    Image.new("LA", (8, 8)).save(tmp_path / "grey_alpha.png")
    return tmp_path


@pytest.mark.parametrize(("name", "kind"), [
    ("ok.png", None), ("sixteen.png", None), ("palette.png", None), ("cmyk.tif", None), ("grey_alpha.png", None),
    ("missing.png", "missing_image"), ("truncated.png", "truncated_image"), ("corrupt.png", "unreadable_image"),
    ("bomb.png", "oversized_image"),
])
def test_image_problem_kinds(image_root: Path, name: str, kind: str | None) -> None:
    found = image_problem(image_root / name)
    assert (found[0] if found else None) == kind, found


def test_pixel_limit_is_a_parameter(image_root: Path) -> None:
    assert image_problem(image_root / "ok.png", max_pixels=100)[0] == "oversized_image"
    assert image_problem(image_root / "ok.png", max_pixels=64 * 64) is None


def record(record_id: str, *images: str, **changes) -> dict:
    return {"id": record_id, "dataset": "d", "task": "vqa_closed", "images": list(images), "question": "q?",
            "answer": "yes", "meta": {"source_file": f"src.json[{record_id}]"}, **changes}


def test_counts_reconcile_and_name_file_and_field(image_root: Path) -> None:
    records = [record("a", "ok.png"), record("b", "sixteen.png", "palette.png"), record("c", "truncated.png"),
               record("d", "ok.png", "missing.png"), record("e", "corrupt.png"), record("f", "bomb.png"),
               record("g", "../etc/passwd"), record("h", "/abs.png"), record("a", "ok.png"),
               record("i", "ok.png", task="segmentation"), "not a record", record("j", "cmyk.tif")]
    report = validate_records(records, image_root, source="fixture")
    assert [r["id"] for r in report.records] == ["a", "b", "j"]
    assert report.items == 12 and report.skipped == 9 and report.reconciles
    assert report.counts() == {"path_escape": 2, "schema": 2, "duplicate_id": 1, "missing_image": 1,
                               "oversized_image": 1, "truncated_image": 1, "unreadable_image": 1}
    missing = report.first_messages("missing_image")[0]
    assert str(image_root / "missing.png") in missing and "src.json[d]" in missing
    assert "'../etc/passwd'" in report.first_messages("path_escape")[0]
    assert "segmentation" in " ".join(report.first_messages("schema"))
    table = report.table()
    assert table.splitlines()[0] == "fixture: 12 items in, 3 records out, 9 skipped"
    assert "truncated_image" in table and "truncated.png" in table
    with pytest.raises(ValidationFailed, match="oversized_image"):
        report.raise_if_problems()
    validate_records(report.records, image_root).raise_if_problems()  # the survivors pass strict mode


def test_image_check_can_be_skipped(image_root: Path) -> None:
    report = validate_records([record("a", "missing.png")], image_root, check_images=False)
    assert report.problems == [] and len(report.records) == 1


def test_validate_source_merges_reader_problems(tmp_path: Path) -> None:
    import json

    (tmp_path / "img").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "img" / "a.png")
    lines = [record("a", "img/a.png"), record("b", "img/gone.png")]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + "{oops\n")
    report = validate_source(tmp_path)
    assert report.items == 3 and len(report.records) == 1 and report.reconciles
    assert report.counts() == {"malformed_json": 1, "missing_image": 1}
    assert "train.jsonl:3" in report.first_messages("malformed_json")[0]
