"""Readers for the X-ray report layout, HF VQA sets, Med-R1, Libra and chat JSONL; detection and conversion."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from medlib import cli
from medlib.data import read_records, validate_record
from medlib.data.readers import (
    READERS,
    chat_jsonl,
    convert,
    detect_format,
    flare_xray_reports,
    hf_vqa,
    libra,
    medr1,
    read_source,
)
from medlib.data.readers.common import parse_options


def png(path: Path, value: int = 100, size=(16, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def png_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), value).save(buffer, format="PNG")
    return buffer.getvalue()


def key(record: dict) -> tuple:
    return record["task"], record["question"], record["answer"], tuple(record.get("choices") or ())


# ---- X-ray report layout ---------------------------------------------------------------------------


@pytest.fixture
def xray_tree(tmp_path: Path) -> Path:
    root = tmp_path / "xray"
    png(root / "images/s1/frontal/1.png")
    png(root / "images/s1/lateral/2.png")
    png(root / "images/s2/frontal/1.png")
    png(root / "images/s3/frontal/1.png")  # no report
    (root / "reports").mkdir(parents=True)
    (root / "reports/s1.txt").write_text("Findings: clear.\nImpression: normal.\n")
    (root / "reports/s2.txt").write_text("Findings: effusion.\nImpression: small effusion.")
    (root / "reports/s4.txt").write_text("   ")  # empty
    (root / "reports/s5.txt").write_text("Findings: x.")  # no images
    return root


def test_xray_reports(xray_tree: Path, tmp_path: Path) -> None:
    result = read_source(xray_tree)
    assert [r["id"] for r in result.records] == ["s1", "s2"]
    first = result.records[0]
    assert first["images"] == ["images/s1/frontal/1.png", "images/s1/lateral/2.png"]
    assert (first["task"], first["answer"]) == ("report_generation", "Findings: clear.\nImpression: normal.")
    assert sorted(p.kind for p in result.problems) == ["empty_report", "missing_image", "missing_report"]
    assert result.items == 5
    flare_xray_reports.write(result.records, xray_tree, tmp_path / "copy")
    again = read_source(tmp_path / "copy", "flare_xray_reports").records
    assert [(r["id"], r["images"], r["answer"]) for r in again] == [(r["id"], r["images"], r["answer"])
                                                                   for r in result.records]


# ---- Hugging Face VQA sets -------------------------------------------------------------------------

VQA_ROWS = [("is there a fracture?", "yes", None), ("what organ is shown?", "liver", None),
            ("which lobe? A) upper B) lower", "B", None), ("is it normal?", "no", "OPEN")]


def test_parquet_embedded_images_and_closed_vs_open(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "vqa-rad"
    (src / "data").mkdir(parents=True)
    for split in ("train", "test"):
        table = pa.table({"image": [{"bytes": png_bytes(i * 40), "path": f"img{i}.png"} for i in range(4)],
                          "question": [q for q, _, _ in VQA_ROWS], "answer": [a for _, a, _ in VQA_ROWS],
                          "answer_type": [t or "" for _, _, t in VQA_ROWS]})
        pq.write_table(table, src / "data" / f"{split}-00000-of-00001.parquet")
    assert detect_format(src) == "hf_vqa"
    with pytest.raises(ValueError, match="media_dir"):
        hf_vqa.read(src)
    result = hf_vqa.read(src, media_dir=tmp_path / "media")
    assert result.problems == [] and len(result.records) == 8
    assert result.data_root == tmp_path / "media"
    train = [r for r in result.records if r["meta"]["split"] == "train"]
    assert [r["task"] for r in train] == ["vqa_closed", "vqa_open", "vqa_closed", "vqa_open"]
    assert train[0]["choices"] == ["yes", "no"] and train[2]["choices"] == ["upper", "lower"]
    with Image.open(result.data_root / train[1]["images"][0]) as image:
        assert image.getpixel((0, 0)) == 40


def test_save_to_disk_and_missing_columns(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict, Features, Value
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "question": Value("string"), "answer": Value("string")})
    rows = {"image": [{"bytes": png_bytes(10), "path": None}, {"bytes": png_bytes(20), "path": None}],
            "question": ["is there a mass?", ""], "answer": ["yes", "no"]}
    DatasetDict({"validation": Dataset.from_dict(rows, features=features)}).save_to_disk(str(tmp_path / "slake"))
    result = read_source(tmp_path / "slake", media_dir=tmp_path / "media")
    assert len(result.records) == 1 and result.records[0]["meta"]["split"] == "validation"
    assert [(p.kind, p.field) for p in result.problems] == [("missing_field", "question")]
    assert (tmp_path / "media" / result.records[0]["images"][0]).is_file()


def test_imagefolder_metadata_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "pathvqa"
    for i, (_q, _a, _t) in enumerate(VQA_ROWS):
        png(src / "train" / f"{i}.png", i * 30)
    lines = [{"file_name": f"{i}.png", "question": q, "answer": a, **({"answer_type": t} if t else {})}
             for i, (q, a, t) in enumerate(VQA_ROWS)]
    lines.append({"file_name": "../../outside.png", "question": "q", "answer": "a"})
    (src / "train" / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + "{broken\n")
    result = read_source(src)
    assert result.data_root == src and len(result.records) == 4
    assert sorted(p.kind for p in result.problems) == ["malformed_json", "path_escape"]
    hf_vqa.write(result.records, src, tmp_path / "copy")
    again = read_source(tmp_path / "copy", "hf_vqa").records
    assert list(map(key, again)) == list(map(key, result.records))


# ---- Med-R1 ----------------------------------------------------------------------------------------


def test_medr1_options_answers_and_round_trip(tmp_path: Path) -> None:
    png(tmp_path / "Images" / "a.png")
    items = [
        {"image": "Images/a.png", "problem": "What modality is this? A)CT B)MRI C)X-ray D)Ultrasound",
         "solution": "<answer> C </answer>", "modality": "X-Ray"},
        {"image": "Images/a.png", "problem": "Describe the lesion.", "solution": "a round mass"},
        {"image": "../a.png", "problem": "q A) x B) y", "solution": "<answer>A</answer>"},
        {"image": "Images/a.png", "problem": "q"},
    ]
    (tmp_path / "omni_test.json").write_text(json.dumps(items))
    assert detect_format(tmp_path) == "medr1"
    result = read_source(tmp_path)
    first, second = result.records
    assert (first["task"], first["answer"], first["choices"]) == ("vqa_closed", "C", ["CT", "MRI", "X-ray", "Ultrasound"])
    assert (second["task"], second["answer"]) == ("vqa_open", "a round mass")
    assert [(p.kind, p.field) for p in result.problems] == [("path_escape", "image"), ("missing_field", "solution")]
    out = tmp_path / "written.json"
    medr1.write(result.records, tmp_path, out)
    assert list(map(key, medr1.read(out).records)) == list(map(key, result.records))


@pytest.mark.parametrize(("question", "options"), [
    ("Which? A) left B) right", ["left", "right"]),
    ("Which?\nA. CT\nB. MRI\nC. PET", ["CT", "MRI", "PET"]),
    ("Which? (A) one (B) two", ["one", "two"]),
    ("Is there a mass?", None),
    ("Which? A) only one", None),
    ("Grade B) mild C) severe", None),  # options must start at A
])
def test_parse_options(question: str, options) -> None:
    assert parse_options(question) == options


# ---- Libra -----------------------------------------------------------------------------------------


def test_libra_temporal_pairs(tmp_path: Path) -> None:
    png(tmp_path / "files/cur.jpg")
    png(tmp_path / "files/prior.jpg")
    rows = [
        {"id": "a", "image": ["files/cur.jpg", "files/prior.jpg"],
         "conversations": [{"from": "human", "value": "<image>\nDescribe the findings."},
                           {"from": "gpt", "value": "Effusion increased."}]},
        {"id": "b", "image": ["files/cur.jpg", "files/cur.jpg"],  # Libra's dummy prior
         "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "Clear."}]},
        {"question_id": "c", "image": "files/cur.jpg", "prior_image": "files/prior.jpg", "text": "Findings?",
         "reference": "New nodule."},
        {"id": "d", "image": ["files/cur.jpg"], "conversations": [{"from": "human", "value": "q"}]},
    ]
    path = tmp_path / "libra_eval.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert detect_format(path) == "libra"
    result = read_source(path)
    assert [r["images"] for r in result.records] == [["files/cur.jpg", "files/prior.jpg"], ["files/cur.jpg"],
                                                     ["files/cur.jpg", "files/prior.jpg"]]
    assert [r["question"] for r in result.records] == ["Describe the findings.", "q", "Findings?"]
    assert [r["meta"]["has_prior"] for r in result.records] == [True, False, True]
    assert [(p.kind, p.field) for p in result.problems] == [("missing_field", "conversations")]
    out = tmp_path / "again.jsonl"
    libra.write(result.records, tmp_path, out)
    again = libra.read(out).records
    assert [(r["id"], r["images"], r["answer"]) for r in again] == [(r["id"], r["images"], r["answer"])
                                                                   for r in result.records]


# ---- chat JSONL ------------------------------------------------------------------------------------


def test_chat_jsonl_reads_unsloth_rows_and_round_trips(tmp_path: Path) -> None:
    png(tmp_path / "img/a.png")
    rows = [
        {"messages": [{"role": "user", "content": [{"type": "image", "image": "img/a.png"},
                                                   {"type": "text", "text": "Is there a mass?"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "yes"}]}]},
        {"images": ["img/a.png"], "messages": [{"role": "user", "content": "Describe it."},
                                               {"role": "assistant", "content": "<think>r</think><answer>A mass.</answer>"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
    ]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert detect_format(tmp_path) == "chat_jsonl"
    result = read_source(tmp_path)
    first, second = result.records
    assert (first["task"], first["answer"], first["images"]) == ("vqa_closed", "yes", ["img/a.png"])
    assert (second["task"], second["answer"], second["meta"]["rationale"]) == ("vqa_open", "A mass.", "r")
    assert [p.kind for p in result.problems] == ["missing_field"]
    records = [{"id": "r1", "dataset": "d", "modality": "CT", "task": "counting", "images": ["img/a.png", "img/a.png"],
                "question": "How many?", "answer": "2", "meta": {"split": "test", "rationale": "I count."}}]
    for answer_format in ("plain", "think_answer"):
        out = tmp_path / f"{answer_format}.jsonl"
        chat_jsonl.write(records, tmp_path, out, answer_format=answer_format)
        line = json.loads(out.read_text())
        assert line["messages"][0]["content"][:2] == [{"type": "image", "image": "img/a.png"}] * 2
        again = chat_jsonl.read(out).records[0]
        assert {k: again[k] for k in ("id", "task", "images", "question", "answer")} == \
            {k: records[0][k] for k in ("id", "task", "images", "question", "answer")}
        assert again["meta"]["split"] == "test"


# ---- registry, detection and conversion ------------------------------------------------------------


def test_every_reader_has_the_interface() -> None:
    assert set(READERS) == {"records", "flare2025", "flare_xray_reports", "hf_vqa", "slake", "medr1", "omnimedvqa",
                            "libra", "chat_jsonl"}
    for name, module in READERS.items():
        assert module.NAME == name and callable(module.detect) and callable(module.read)
        assert isinstance(module.LAYOUT, str) and module.OPTIONS <= {"image_root", "language"}
        assert module.__doc__ and len(module.__doc__) > 80  # each reader names the layout it follows


def test_detection_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        detect_format(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="no known layout.*--format"):
        detect_format(tmp_path)
    with pytest.raises(ValueError, match="unknown format 'dicom'"):
        read_source(tmp_path, "dicom")


def test_convert_writes_records_per_split_beside_or_away_from_the_source(xray_tree: Path, tmp_path: Path) -> None:
    report, written = convert(xray_tree, xray_tree / "records.jsonl")
    assert written == [xray_tree / "records.jsonl"] and report.reconciles and report.skipped == 3
    assert read_records(written[0])[0]["images"] == ["images/s1/frontal/1.png", "images/s1/lateral/2.png"]
    with pytest.raises(ValueError, match="ambiguous layout.*records, flare_xray_reports"):
        detect_format(xray_tree)  # the records file written into the tree is a second layout
    # a folder: one file per split; the images are hard-linked into it, so it is self-contained
    report, written = convert(xray_tree, tmp_path / "elsewhere", "flare_xray_reports")
    records = read_records(written[0])
    assert written == [tmp_path / "elsewhere" / "train.jsonl"]
    assert records[0]["images"][0] == "images/xray/images/s1/frontal/1.png"
    placed = tmp_path / "elsewhere" / records[0]["images"][0]
    assert placed.is_file() and not placed.is_symlink()
    assert placed.stat().st_ino == (xray_tree / "images/s1/frontal/1.png").stat().st_ino  # a hard link, no copy
    assert json.loads((tmp_path / "elsewhere" / "convert.json").read_text())["records"] == 2
    for record in records:
        validate_record(record, "converted")


def test_cli_convert_and_validate(xray_tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out" / "records.jsonl"
    assert cli.main(["data", "convert", str(xray_tree), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5 items in, 2 records out, 3 skipped" in printed and "missing_report" in printed
    assert len(read_records(out)) == 2
    assert cli.main(["data", "convert", str(xray_tree), "--out", str(tmp_path / "strict.jsonl"), "--strict"]) == 1
    assert "missing_report" in capsys.readouterr().err and not (tmp_path / "strict.jsonl").exists()
    assert cli.main(["data", "validate", str(out)]) == 0
    assert cli.main(["data", "validate", str(xray_tree), "--strict"]) == 1
    assert cli.main(["data", "validate", str(tmp_path / "missing")]) == 1
