"""Every source as it is distributed (not as medlib writes it): counts, tasks, answers, choices, splits, problems.

Each fixture is built here from the published layout: FLARE 2025 2D (question files and IU_XRay_all_*),
the FLARE Task 5 repo's train_sft.jsonl, VQA-RAD parquet (one shard and sharded), SLAKE, Med-R1's
OmniMedVQA splits, raw OmniMedVQA QA_information and Libra's train/eval files.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlib import cli
from medlib.data import read_records
from medlib.data.readers import convert, detect_format, detection, read_source
from medlib.data.readers.common import parse_options
from medlib.data.validation import validate_source


def png(path: Path, value: int = 100, size: tuple[int, int] = (16, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def kinds(report_or_result) -> list[str]:
    return sorted(p.kind for p in report_or_result.problems)


# ---- choices in every style the sources write ------------------------------------------------------


@pytest.mark.parametrize(("question", "options"), [
    ("What is the treatment? A. No Treatment, B. Treatment Required", ["No Treatment", "Treatment Required"]),  # FLARE
    ("Which modality is this? A)X-ray, B)MRI, C)CT, D)Ultrasound", ["X-ray", "MRI", "CT", "Ultrasound"]),  # Med-R1
    ("Which side? Options: A: left B: right", ["left", "right"]),
    ("Which grade?\nA. none\nB. mild\nC. severe\nAnswer with the letter.", ["none", "mild", "severe"]),
    ("Which? (A) one; (B) two", ["one", "two"]),
    ("Type A or type B? A) Type A: mild, B) Type B: severe", ["Type A: mild", "Type B: severe"]),
    ("Vitamin A. Which dose? A) low, B) high", ["low", "high"]),
    ("Is there a mass?", None),
])
def test_choices_lose_their_separators_in_every_style(question: str, options) -> None:
    assert parse_options(question) == options


# ---- FLARE 2025 2D release ---------------------------------------------------------------------------


def flare_item(task: str, image, question: str, answer, split: str = "train") -> dict:
    return {"TaskType": task, "Modality": "X-ray", "ImageName": image, "Question": question, "Answer": answer,
            "Split": split}


@pytest.fixture
def flare_release(tmp_path: Path) -> Path:
    """organized_dataset/{training,validation-public}/Xray/{IU_XRay,chestdr}, as released (IU_XRay_all_*.json)."""
    root = tmp_path / "organized_dataset"
    iu_train = root / "training/Xray/IU_XRay"
    png(iu_train / "imagesTr/CXR1_1.png")
    png(iu_train / "imagesTr/CXR1_2.png")
    reports = [flare_item("Report Generation", ["imagesTr/CXR1_1.png", "imagesTr/CXR1_2.png"],
                          "Please write a radiology report for these chest X-ray images.",
                          "Findings: clear lungs. Impression: normal."),
               flare_item("Report Generation", "imagesTr/CXR9_missing.png", "Please write a report.", "Findings: x."),
               flare_item("Report Generation", "imagesTr/CXR1_1.png", "Please write a report.", "")]
    (iu_train / "IU_XRay_all_train.json").write_text(json.dumps(reports))
    iu_val = root / "validation-public/Xray/IU_XRay"
    png(iu_val / "imagesVal/CXR2_1.png")
    (iu_val / "IU_XRay_all_val.json").write_text(json.dumps(
        [flare_item("Report Generation", "imagesVal/CXR2_1.png", "Write the report.", "Findings: effusion.", "val")]))
    chest = root / "training/Xray/chestdr"
    png(chest / "imagesTr/a.png")
    (chest / "chestdr_questions_train.json").write_text(json.dumps([
        flare_item("Classification", "a.png", "What is the treatment? A. No Treatment, B. Treatment Required", "A"),
        flare_item("Counting", "imagesTr/a.png", "How many nodules?", 3),
    ]))
    dental = root / "training/Xray/dental"
    png(dental / "imagesTr/d.png")
    (dental / "dental_questions_train.json").write_text('[{"TaskType": "Detection", ')  # cut short
    (root / "training/Xray/chestdr/dataset_info.json").write_text("{}")  # a file no FLARE reader reads
    return root


def test_flare_release_keeps_iu_xray_reports_and_names_every_dirty_item(flare_release: Path) -> None:
    report = validate_source(flare_release)
    assert detect_format(flare_release) == "flare2025"
    reports = [r for r in report.records if r["dataset"] == "IU_XRay"]
    assert [(r["task"], r["meta"]["split"], len(r["images"])) for r in reports] == \
        [("report_generation", "train", 2), ("report_generation", "validation", 1)]
    assert reports[0]["answer"] == "Findings: clear lungs. Impression: normal."
    classification, counting = [r for r in report.records if r["dataset"] == "chestdr"]
    assert classification["choices"] == ["No Treatment", "Treatment Required"] and classification["answer"] == "A"
    assert (counting["task"], counting["answer"]) == ("counting", "3")
    assert kinds(report) == ["malformed_json", "missing_field", "missing_image", "unrecognised_file"]
    named = {p.kind: p for p in report.problems}
    assert named["missing_image"].path.endswith("CXR9_missing.png")
    assert named["missing_field"].path.endswith("IU_XRay_all_train.json[2]") and named["missing_field"].field == "Answer"
    assert named["malformed_json"].path.endswith("dental_questions_train.json")
    assert named["unrecognised_file"].path.endswith("dataset_info.json")
    assert report.reconciles and report.items == 8 == sum(report.file_items.values())
    assert any("format flare2025 detected" in note for note in report.notes)


def test_flare_baseline_file_name_is_read_too_and_a_duplicate_is_counted(flare_release: Path) -> None:
    iu = flare_release / "training/Xray/IU_XRay"
    (iu / "IU_XRay_all_train.json").rename(iu / "IU_XRay_questions_train.json")  # the baseline's expected name
    result = read_source(flare_release)
    assert sum(r["dataset"] == "IU_XRay" for r in result.records) == 3
    (iu / "IU_XRay_all_train.json").write_text((iu / "IU_XRay_questions_train.json").read_text())
    again = read_source(flare_release)
    assert len(again.records) == len(result.records)
    assert [p.path for p in again.problems if p.kind == "duplicate_file"] == [str(iu / "IU_XRay_all_train.json")]


# ---- FLARE Task 5 repo: train_sft.jsonl with absolute paths ------------------------------------------


def task5_row(paths: list[str], question: str, answer: str) -> dict:
    """A row as prepare_flare_task5_jsonl.py writes it: image parts first, then the text; answer as text."""
    return {"messages": [{"role": "user", "content": [*({"type": "image", "image": p} for p in paths),
                                                      {"type": "text", "text": question}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}


def test_task5_sft_jsonl_with_absolute_paths_and_a_rebased_copy(tmp_path: Path) -> None:
    data = tmp_path / "FLARE_Task5"
    image = png(data / "train/training/Xray/IU_XRay/imagesTr/CXR1_1.png")
    lateral = png(data / "train/training/Xray/IU_XRay/imagesTr/CXR1_2.png")
    rows = [task5_row([str(image), str(lateral)], "Write the report.", "Findings: clear."),
            task5_row([str(image)], "How many teeth have bone loss?", "4"),
            task5_row([str(data / "train/training/Xray/IU_XRay/imagesTr/gone.png")], "Write the report.", "x")]
    sft = data / "train_sft.jsonl"
    sft.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (data / "val_sft.jsonl").write_text(json.dumps(task5_row([str(image)], "Write the report.", "Clear.")) + "\n")
    report = validate_source(data, "chat_jsonl")
    assert [(r["images"], r["answer"], r["meta"]["split"]) for r in report.records] == [
        (["train/training/Xray/IU_XRay/imagesTr/CXR1_1.png", "train/training/Xray/IU_XRay/imagesTr/CXR1_2.png"],
         "Findings: clear.", "train"),
        (["train/training/Xray/IU_XRay/imagesTr/CXR1_1.png"], "4", "train"),
        (["train/training/Xray/IU_XRay/imagesTr/CXR1_1.png"], "Clear.", "validation")]
    assert kinds(report) == ["missing_image"] and report.problems[0].path.endswith("gone.png")
    # the same file as written on the cluster: paths under /scratch, rebased onto the local copy
    moved = [task5_row(["/scratch/FLARE_Task5/train/training/Xray/IU_XRay/imagesTr/CXR1_1.png"], "Q?", "yes")]
    elsewhere = tmp_path / "cluster_sft.jsonl"
    elsewhere.write_text(json.dumps(moved[0]) + "\n")
    assert kinds(validate_source(elsewhere, "chat_jsonl")) == ["missing_image"]
    rebased = validate_source(elsewhere, "chat_jsonl", image_root=data)
    assert rebased.records[0]["images"] == ["train/training/Xray/IU_XRay/imagesTr/CXR1_1.png"] and not rebased.problems
    out = tmp_path / "records"
    assert cli.main(["data", "convert", str(elsewhere), "--format", "chat_jsonl", "--image-root", str(data),
                     "--out", str(out)]) == 0
    record = read_records(out / "train.jsonl")[0]
    assert (out / record["images"][0]).is_file()


def test_the_report_folder_reader_says_it_finds_nothing_in_a_task5_tree(tmp_path: Path, capsys) -> None:
    png(tmp_path / "train/training/Xray/IU_XRay/imagesTr/CXR1_1.png")
    assert cli.main(["data", "validate", str(tmp_path), "--format", "flare_xray_reports"]) == 1
    error = capsys.readouterr().err
    assert "found nothing to read" in error and "flare2025" in error


# ---- VQA-RAD on the hub: parquet, one shard and sharded ---------------------------------------------


def png_bytes(value: int, size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(size[::-1], value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array([r["image"] for r in rows], image_type),
                      "question": [r["question"] for r in rows], "answer": [r["answer"] for r in rows]})
    pq.write_table(table, path)


def vqa_rows(start: int, count: int) -> list[dict]:
    """Rows whose image value encodes the row number (each row's own picture); hub rows keep path=None."""
    return [{"image": {"bytes": png_bytes(10 + 7 * i), "path": None}, "question": f"Is there finding {i}?",
             "answer": "yes" if i % 2 else "no"} for i in range(start, start + count)]


def test_sharded_parquet_keeps_every_row_with_its_own_image(tmp_path: Path) -> None:
    src = tmp_path / "path-vqa"
    write_parquet(src / "data/train-00000-of-00002-aaaa.parquet", vqa_rows(0, 3))
    write_parquet(src / "data/train-00001-of-00002-bbbb.parquet", vqa_rows(3, 3))
    write_parquet(src / "data/test-00000-of-00001-cccc.parquet", vqa_rows(6, 2))
    report, written = convert(src, tmp_path / "records")
    assert not report.problems and report.reconciles and len(report.records) == 8
    train = read_records(tmp_path / "records" / "train.jsonl")
    assert len(train) == 6 and len({r["images"][0] for r in train}) == 6
    for record in train + read_records(tmp_path / "records" / "test.jsonl"):
        number = int(record["question"].split()[-1].rstrip("?"))
        pixels = np.asarray(Image.open(tmp_path / "records" / record["images"][0]))
        assert pixels.shape == (8, 8) and (pixels == 10 + 7 * number).all(), record["id"]
    assert {r["task"] for r in train} == {"vqa_closed"} and train[0]["choices"] == ["yes", "no"]
    (src / "data/validation-00000-of-00001-dddd.parquet").write_bytes(b"PAR1 cut short")
    broken = validate_source(src)
    assert [(p.kind, Path(p.path).name) for p in broken.problems] == \
        [("unreadable_file", "validation-00000-of-00001-dddd.parquet")] and broken.reconciles


def test_parquet_validate_and_convert_leave_no_temporary_folders(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    src = tmp_path / "vqa-rad"
    write_parquet(src / "data/train-00000-of-00001-abcd.parquet", vqa_rows(0, 2))
    assert not validate_source(src).problems
    convert(src, tmp_path / "out")
    assert cli.main(["data", "validate", str(src)]) == 0
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["convert.json", "images", "train.jsonl"]
    assert not [p for p in tmp_path.iterdir() if "medlib-convert" in p.name]


# ---- SLAKE as released -------------------------------------------------------------------------------


def slake_row(qid: int, lang: str, answer_type: str, question: str, answer: str, img: str = "xmlab0/source.jpg") -> dict:
    return {"img_id": 0, "img_name": img, "question": question, "answer": answer, "q_lang": lang,
            "location": "Lung", "modality": "CT", "answer_type": answer_type, "base_type": "vqa",
            "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": qid}


@pytest.fixture
def slake(tmp_path: Path) -> Path:
    root = tmp_path / "SLAKE"
    (root / "imgs/xmlab0").mkdir(parents=True)
    Image.new("RGB", (16, 16), (40, 40, 40)).save(root / "imgs/xmlab0/source.jpg")
    png(root / "imgs/xmlab0/mask.png")
    (root / "imgs/xmlab0/detection.json").write_text("[]")
    (root / "KG").mkdir()
    (root / "KG/en_organ.csv").write_text("a#b#c\n")
    (root / "train.json").write_text(json.dumps([
        slake_row(1, "en", "OPEN", "Which organ is shown?", "Lung"),
        slake_row(2, "en", "CLOSED", "Is the lung healthy?", "No"),
        slake_row(3, "zh", "CLOSED", "肺是否健康？", "否"),
        slake_row(4, "en", "OPEN", "What is missing?", "x", img="xmlab9/source.jpg"),
        slake_row(5, "en", "OPEN", "Empty answer?", ""),
    ], ensure_ascii=False))
    (root / "validation.json").write_text(json.dumps([slake_row(6, "en", "OPEN", "Where?", "Chest")]))
    (root / "test.json").write_text(json.dumps([slake_row(7, "zh", "OPEN", "这是什么器官？", "肺")], ensure_ascii=False))
    return root


def test_slake_as_released(slake: Path) -> None:
    assert [name for name, _ in detection(slake)] == ["slake"]
    report = validate_source(slake)
    by_qid = {r["meta"]["qid"]: r for r in report.records}
    assert sorted(by_qid) == [1, 2, 3, 6, 7]
    assert (by_qid[1]["task"], by_qid[2]["task"], by_qid[2]["choices"]) == ("vqa_open", "vqa_closed", ["yes", "no"])
    assert (by_qid[3]["meta"]["q_lang"], by_qid[3]["choices"]) == ("zh", ["是", "否"])
    assert {qid: r["meta"]["split"] for qid, r in by_qid.items()} == {1: "train", 2: "train", 3: "train",
                                                                      6: "validation", 7: "test"}
    assert by_qid[1]["images"] == ["imgs/xmlab0/source.jpg"] and by_qid[1]["modality"] == "CT"
    assert kinds(report) == ["missing_field", "missing_image"]
    assert any("masks" in note and "ignored" in note for note in report.notes)
    english = validate_source(slake, language="en")
    assert sorted(r["meta"]["qid"] for r in english.records) == [1, 2, 6]
    assert english.excluded == {"q_lang zh not en": 2} and english.reconciles
    assert "2 left out (q_lang zh not en)" in english.table()


def test_language_filter_is_refused_where_it_does_not_apply(flare_release: Path, capsys) -> None:
    assert cli.main(["data", "validate", str(flare_release), "--language", "en"]) == 1
    assert "--language does not apply to the flare2025 reader" in capsys.readouterr().err


# ---- Med-R1's OmniMedVQA splits and raw OmniMedVQA -------------------------------------------------------


@pytest.fixture
def omnimedvqa(tmp_path: Path) -> Path:
    """OmniMedVQA/{Images,QA_information/Open-access} plus Med-R1's Splits/ beside it."""
    root = tmp_path / "OmniMedVQA"
    png(root / "Images/Chest CT Scan/test/a.png")
    png(root / "Images/Chest CT Scan/test/b.png")
    raw = [{"question_id": "ct_0", "dataset": "Chest CT Scan", "question_type": "Modality Recognition",
            "question": "Which modality is this?", "gt_answer": "CT", "image_path": "Images/Chest CT Scan/test/a.png",
            "option_A": "X-ray", "option_B": "MRI", "option_C": "CT", "option_D": "Ultrasound", "modality_type": "CT"},
           {"question_id": "ct_1", "dataset": "Chest CT Scan", "question_type": "Disease Diagnosis",
            "question": "Is this normal?", "gt_answer": "No, It's normal.", "image_path": "Images/Chest CT Scan/test/b.png",
            "option_A": "Yes", "option_B": "No", "modality": "CT"},
           {"question_id": "ct_2", "dataset": "Chest CT Scan", "question_type": "Disease Diagnosis",
            "question": "Which?", "gt_answer": "Lung", "image_path": "Images/Chest CT Scan/test/gone.png",
            "option_A": "Lung", "option_B": "Liver", "modality_type": "CT"}]
    (root / "QA_information/Open-access").mkdir(parents=True)
    (root / "QA_information/Open-access/Chest CT Scan.json").write_text(json.dumps(raw))
    medr1 = [{"image": "Images/Chest CT Scan/test/a.png",
              "problem": "Which modality is this? A)X-ray, B)MRI, C)CT, D)Ultrasound",
              "solution": "<answer> C </answer>"},
             {"image": "Images/Chest CT Scan/test/gone.png", "problem": "Which? A)Lung, B)Liver",
              "solution": "<answer> A </answer>"},
             {"image": "Images/Chest CT Scan/test/a.png", "problem": "Which? A)x, B)y", "solution": "<answer></answer>"}]
    split_dir = root / "Splits/modality/test"
    split_dir.mkdir(parents=True)
    (split_dir / "CT(Computed Tomography)_test.json").write_text(json.dumps(medr1))
    return root


def test_medr1_splits_find_the_omnimedvqa_root_and_take_the_split_from_the_file_name(omnimedvqa: Path) -> None:
    split_dir = omnimedvqa / "Splits/modality/test"
    report = validate_source(split_dir)
    assert report.data_root == omnimedvqa and any("resolved against" in note for note in report.notes)
    (record,) = report.records
    assert (record["task"], record["answer"], record["choices"], record["meta"]["split"]) == \
        ("vqa_closed", "C", ["X-ray", "MRI", "CT", "Ultrasound"], "test")
    assert kinds(report) == ["missing_field", "missing_image"]
    assert [p.path for p in report.problems if p.kind == "missing_image"][0].endswith("gone.png")
    explicit = validate_source(split_dir / "CT(Computed Tomography)_test.json", image_root=omnimedvqa)
    assert [r["images"] for r in explicit.records] == [record["images"]]
    assert kinds(validate_source(split_dir, image_root=omnimedvqa / "Images")) == \
        ["missing_field", "missing_image", "missing_image"]  # the wrong root: every image reported, none dropped


def test_raw_omnimedvqa_gives_what_medr1_gives(omnimedvqa: Path) -> None:
    assert detect_format(omnimedvqa) == "omnimedvqa"
    raw = validate_source(omnimedvqa)
    medr1 = validate_source(omnimedvqa / "Splits/modality/test")
    first = raw.records[0]
    assert (first["question"], first["answer"], first["choices"]) == \
        (medr1.records[0]["question"], medr1.records[0]["answer"], medr1.records[0]["choices"])
    assert (first["modality"], first["meta"]["question_type"], first["meta"]["split"]) == \
        ("CT", "Modality Recognition", "test")
    assert [(p.kind, p.field) for p in raw.problems] == [("answer_not_in_choices", "gt_answer"),
                                                         ("missing_image", raw.problems[1].field)]
    assert raw.reconciles and raw.items == 3


# ---- Libra ---------------------------------------------------------------------------------------------


def test_libra_eval_files_with_each_reference_key_are_labelled_by_their_split(tmp_path: Path) -> None:
    mimic = tmp_path / "mimic-cxr-jpg/2.0.0"
    current = "files/p10/p1/s1/cur.jpg"
    prior = "files/p10/p1/s0/prior.jpg"
    for rel in (current, prior):
        png(mimic / rel)
    data = tmp_path / "libra"
    data.mkdir()
    rows = {"libra_findings_section_eval.jsonl": {"reference": "Effusion increased."},
            "libra_impressions_section_eval.jsonl": {"impression": "No acute process."},
            "custom_valid.jsonl": {"findings": "Stable nodule."}}
    for name, reference in rows.items():
        row = {"question_id": name.split("_")[1], "image": [current, prior], "text": "Describe the findings.",
               **reference}
        (data / name).write_text(json.dumps(row) + "\n" + json.dumps({**row, "question_id": "x", **{
            key: "" for key in reference}}) + "\n")
    (data / "libra_findings_section_train.json").write_text(json.dumps([
        {"id": "t1", "image": [current, current],
         "conversations": [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "Clear."}]}]))
    report = validate_source(data, "libra", image_root=mimic)
    found = {(r["meta"]["source_file"], r["answer"], r["meta"]["split"], len(r["images"])) for r in report.records}
    assert found == {("libra_findings_section_eval.jsonl", "Effusion increased.", "test", 2),
                     ("libra_impressions_section_eval.jsonl", "No acute process.", "test", 2),
                     ("custom_valid.jsonl", "Stable nodule.", "validation", 2),
                     ("libra_findings_section_train.json", "Clear.", "train", 1)}
    assert kinds(report) == ["missing_field"] * 3 and report.reconciles
    impression_only = tmp_path / "impressions.jsonl"
    impression_only.write_text((data / "libra_impressions_section_eval.jsonl").read_text())
    assert detect_format(impression_only) == "libra"


# ---- detection says why; two matches ask for --format --------------------------------------------------


def test_detection_reasons_and_ambiguity(tmp_path: Path, slake: Path) -> None:
    result = read_source(slake)
    assert re.match(r"format slake detected: \w+\.json: rows have answer, img_name, q_lang, question \(SLAKE\)", result.notes[0])
    png(tmp_path / "both/img/a.png")
    row = {"id": "r1", "task": "vqa_open", "images": ["img/a.png"], "question": "q?", "answer": "a",
           "messages": [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "a"}]}
    (tmp_path / "both/x.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"ambiguous layout \(matches records, chat_jsonl\); name one with --format"):
        read_source(tmp_path / "both")
    assert read_source(tmp_path / "both", "chat_jsonl").notes[0] == "format chat_jsonl chosen with --format"
