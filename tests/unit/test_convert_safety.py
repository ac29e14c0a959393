"""`medlib data convert` never overwrites silently, never writes onto its source, swaps the output in whole;
image paths are checked on their resolved (symlink-followed) location (issue 17, items 4 and 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from medlib import cli
from medlib.data import read_records
from medlib.data.readers import conversion, convert
from medlib.data.validation import validate_records, validate_source


def png(path: Path, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), value).save(path)
    return path


def record(rid: str, image: str, split: str) -> dict:
    return {"id": rid, "dataset": "d", "task": "vqa_open", "images": [image], "question": "q?", "answer": "a",
            "meta": {"split": split}}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A records file: 8 train + 3 test records over two images."""
    root = tmp_path / "src"
    png(root / "img/a.png")
    png(root / "img/b.png", 30)
    rows = [record(f"t{i}", "img/a.png", "train") for i in range(8)] + \
        [record(f"s{i}", "img/b.png", "test") for i in range(3)]
    (root / "all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "all.jsonl"


def test_out_equal_to_the_source_file_is_refused_and_the_source_kept(source: Path, capsys) -> None:
    before = source.read_text()
    assert cli.main(["data", "convert", str(source), "--out", str(source)]) == 1
    assert "is the source file" in capsys.readouterr().err
    assert cli.main(["data", "convert", str(source), "--out", str(source), "--overwrite"]) == 1
    assert source.read_text() == before and len(before.splitlines()) == 11


def test_a_folder_holding_data_needs_overwrite_and_then_loses_its_stale_files(source: Path, tmp_path: Path,
                                                                              capsys) -> None:
    out = tmp_path / "records"
    out.mkdir()
    (out / "train.jsonl").write_text(json.dumps(record("old", "x.png", "train")) + "\n")
    (out / "notes.txt").write_text("mine")
    assert cli.main(["data", "convert", str(source), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "already holds data" in error and "pass --overwrite" in error
    assert json.loads((out / "train.jsonl").read_text())["id"] == "old"  # untouched
    # only test records this time: with --overwrite the stale train.jsonl must not survive
    only_test = tmp_path / "test_only.jsonl"
    only_test.write_text("".join(line + "\n" for line in source.read_text().splitlines()[8:]))
    png(tmp_path / "img/b.png", 30)
    assert cli.main(["data", "convert", str(only_test), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["convert.json", "images", "notes.txt", "test.jsonl"]
    assert len(read_records(out / "test.jsonl")) == 3 and (out / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".*medlib-convert*")) and not list(out.glob(".*medlib-convert*"))


def test_a_records_file_is_not_replaced_without_overwrite(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "one.jsonl"
    convert(source, out)
    with pytest.raises(ValueError, match="already holds data.*--overwrite"):
        convert(source, out)
    convert(source, out, overwrite=True)
    assert len(read_records(out)) == 11


def test_overwrite_never_deletes_a_file_the_reader_read(source: Path) -> None:
    folder = source.parent
    with pytest.raises(ValueError, match="part of the source"):
        convert(folder, folder, "records", overwrite=True)  # would replace all.jsonl, the source itself
    assert len(source.read_text().splitlines()) == 11


def test_a_failure_while_building_leaves_the_previous_output_whole(source: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    out = tmp_path / "records"
    convert(source, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    calls = []

    def failing(rows, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(rows, path)

    real = conversion.write_jsonl
    monkeypatch.setattr(conversion, "write_jsonl", failing)
    with pytest.raises(OSError, match="disk full"):
        convert(source, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in out.iterdir() if "medlib-convert" in p.name]
    fresh = tmp_path / "never"
    with pytest.raises(OSError, match="disk full"):
        calls.clear()
        convert(source, fresh)
    assert not fresh.exists() and not list(tmp_path.glob(".never.medlib-convert*"))


# ---- symlinks and `..` (issue 17 item 8) -------------------------------------------------------------


@pytest.fixture
def linked_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    png(root / "images/x.png")
    png(tmp_path / "outside/secret.png")
    (root / "images/link.png").symlink_to(tmp_path / "outside/secret.png")
    (root / "linked_dir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "inner_link.png").symlink_to(root / "images/x.png")  # a link that stays inside is fine
    return root


def test_symlinks_leaving_the_root_are_escapes_and_dot_dot_inside_is_fine(linked_root: Path) -> None:
    records = [record("link", "images/link.png", "train"), record("dir", "linked_dir/secret.png", "train"),
               record("dotdot", "images/../images/x.png", "train"), record("inner", "inner_link.png", "train"),
               record("climb", "images/../../outside/secret.png", "train")]
    report = validate_records(records, linked_root)
    assert [r["id"] for r in report.records] == ["dotdot", "inner"]
    assert report.records[0]["images"] == ["images/x.png"]  # spelled canonically
    escapes = {p.field.split("id ")[1].rstrip(")") if "id " in p.field else p.path: p.detail
               for p in report.problems}
    assert [p.kind for p in report.problems] == ["path_escape"] * 3
    assert "symlink" in escapes["link"] and "symlink" in escapes["dir"]


def test_an_imagefolder_with_a_symlinked_image_is_caught(tmp_path: Path) -> None:
    src = tmp_path / "vqa"
    png(tmp_path / "elsewhere/e.png")
    png(src / "train/ok.png")
    (src / "train/e.png").symlink_to(tmp_path / "elsewhere/e.png")
    (src / "train/metadata.jsonl").write_text(
        json.dumps({"file_name": "ok.png", "question": "q?", "answer": "yes"}) + "\n"
        + json.dumps({"file_name": "e.png", "question": "q?", "answer": "no"}) + "\n")
    report = validate_source(src)
    assert len(report.records) == 1 and [p.kind for p in report.problems] == ["path_escape"]
