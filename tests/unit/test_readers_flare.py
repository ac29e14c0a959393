"""FLARE 2025 2D reader (medlib.data.readers.flare2025): every TaskType spelling and answer format, problems counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from medlib.data import validate_record
from medlib.data.readers import detect_format, flare2025, read_source
from medlib.data.synthetic import QUESTION_TYPES, write_flare_layout

SPELLINGS = {
    "Classification": "classification", "classification": "classification",
    "Multi-label Classification": "multi_label", "multi_label_classification": "multi_label",
    "Multi-Label classification": "multi_label", "Detection": "detection", "detection": "detection",
    "Instance Detection": "instance_detection", "instance_detection": "instance_detection",
    "Counting": "counting", "Cell Counting": "counting", "cell_counting": "counting",
    "Regression": "regression", "regression": "regression", "Report Generation": "report_generation",
    "report_generation": "report_generation", "REPORT-GENERATION": "report_generation",
}

# (TaskType, Answer as stored in the JSON file, reference text the record must carry)
ANSWERS = [
    ("Classification", "B", "B"),
    ("Multi-label Classification", "drusen; hemorrhage", "drusen; hemorrhage"),
    ("Multi-label Classification", "drusen,exudate", "drusen,exudate"),
    ("Detection", "[[10,12,30,40],[50,52,60,70]]", "[[10,12,30,40],[50,52,60,70]]"),
    ("Detection", [[10, 12, 30, 40]], "[[10, 12, 30, 40]]"),
    ("Instance Detection", {"11": [[1, 2, 3, 4]], "12": [[5, 6, 7, 8]]}, '{"11": [[1, 2, 3, 4]], "12": [[5, 6, 7, 8]]}'),
    ("Counting", 7, "7"),
    ("Cell Counting", "12", "12"),
    ("Regression", 23.5, "23.5"),
    ("Regression", "45%", "45%"),
    ("Report Generation", " Findings: clear lungs.\nImpression: normal. ", "Findings: clear lungs.\nImpression: normal."),
]


def save_png(path: Path, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (16, 12), 100).save(path)


def question(task_type: str, answer, image="imagesTr/a.png", **extra) -> dict:
    return {"TaskType": task_type, "Modality": "Retinography", "ImageName": image,
            "Question": "Which grade? A. none B. mild C. severe", "Answer": answer, "Split": "train", **extra}


def write_dataset(root: Path, split_dir: str, modality: str, dataset: str, file_split: str, items) -> Path:
    folder = root / "organized_dataset" / split_dir / modality / dataset
    save_png(folder / "imagesTr" / "a.png")
    save_png(folder / "imagesTr" / "b.png")
    path = folder / f"{dataset}_questions_{file_split}.json"
    path.write_text(items if isinstance(items, str) else json.dumps(items))
    return path


@pytest.fixture
def flare_tree(tmp_path: Path) -> Path:
    """Two modalities, three data sets, every answer format, a multi-image and a bare-name question, and bad items."""
    good = [question(task_type, answer) for task_type, answer, _ in ANSWERS]
    good.append(question("Report Generation", "Stable.", image=["imagesTr/a.png", "imagesTr/b.png"]))
    good.append(question("Classification", "A", image="b.png"))  # a bare name found in imagesTr/
    bad = [question("Segmentation", "x"), question("Counting", "3", image="../../../../../secret.png"),
           question("Counting", "3", image="/etc/passwd"), {k: v for k, v in question("Counting", "3").items()
                                                            if k != "Answer"}, "not an object"]
    write_dataset(tmp_path, "training", "Retinography", "retino", "train", good + bad)
    write_dataset(tmp_path, "validation-public", "Xray", "chestdr", "val", [question(t, "a") for t in SPELLINGS])
    write_dataset(tmp_path, "training", "Microscopy", "broken", "train", '[{"TaskType": "Counting",')
    return tmp_path


@pytest.mark.parametrize(("spelling", "task"), sorted(SPELLINGS.items()))
def test_task_type_spellings(spelling: str, task: str) -> None:
    assert flare2025.normalize_task_type(spelling) == task


def test_unknown_task_types_are_none() -> None:
    assert [flare2025.normalize_task_type(x) for x in ("Segmentation", "", None, 3)] == [None] * 4


def test_reads_every_answer_format(flare_tree: Path) -> None:
    result = read_source(flare_tree, "flare2025")
    retino = [r for r in result.records if r["dataset"] == "retino"]
    assert [(r["meta"]["task_type"], r["answer"]) for r in retino[: len(ANSWERS)]] == \
        [(task_type, reference) for task_type, _, reference in ANSWERS]
    for record in result.records:
        validate_record(record, record["id"])
        assert (flare_tree / record["images"][0]).is_file()
    first = retino[0]
    assert first["images"] == ["organized_dataset/training/Retinography/retino/imagesTr/a.png"]
    assert (first["modality"], first["meta"]["split"], first["task"]) == ("Retinography", "train", "classification")
    assert first["choices"] == ["none", "mild", "severe"]


def test_multi_image_questions_are_kept_whole_and_bare_names_resolve(flare_tree: Path) -> None:
    retino = [r for r in read_source(flare_tree, "flare2025").records if r["dataset"] == "retino"]
    multi, bare = retino[len(ANSWERS)], retino[len(ANSWERS) + 1]
    assert [Path(p).name for p in multi["images"]] == ["a.png", "b.png"]
    assert bare["images"] == ["organized_dataset/training/Retinography/retino/imagesTr/b.png"]


def test_split_folders_map_to_canonical_splits(flare_tree: Path) -> None:
    chest = [r for r in read_source(flare_tree).records if r["dataset"] == "chestdr"]
    assert {r["meta"]["split"] for r in chest} == {"validation"}
    assert [r["task"] for r in chest] == list(SPELLINGS.values())


def test_bad_items_are_named_skipped_and_counted(flare_tree: Path) -> None:
    result = read_source(flare_tree, "flare2025")
    kinds = sorted(p.kind for p in result.problems)
    assert kinds == ["malformed_item", "malformed_json", "missing_field", "path_escape", "path_escape", "unknown_task"]
    by_kind = {p.kind: p for p in result.problems}
    assert by_kind["unknown_task"].field == "TaskType" and "Segmentation" in by_kind["unknown_task"].detail
    assert by_kind["unknown_task"].path.endswith("retino_questions_train.json[13]")
    assert by_kind["missing_field"].field == "Answer"
    assert by_kind["malformed_json"].path.endswith("broken_questions_train.json")
    assert {p.field for p in result.problems if p.kind == "path_escape"} == {"ImageName"}
    # records in = records out + skipped: 13 + 5 retino items, 17 chestdr items, 1 broken file
    assert result.items == (len(ANSWERS) + 2 + 5) + len(SPELLINGS) + 1
    assert len(result.records) == len(ANSWERS) + 2 + len(SPELLINGS)


def test_detected_and_round_trips_through_the_writer(flare_tree: Path, tmp_path: Path) -> None:
    assert detect_format(flare_tree) == "flare2025"
    records = read_source(flare_tree).records
    flare2025.write(records, flare_tree, tmp_path / "copy")
    again = read_source(tmp_path / "copy").records

    def key(r: dict) -> tuple:
        return r["dataset"], r["task"], r["question"], r["answer"], r["meta"]["split"], len(r["images"])

    assert sorted(map(key, again)) == sorted(map(key, records))


def test_synthetic_set_in_the_flare_layout_reads_back_end_to_end(tmp_path: Path) -> None:
    write_flare_layout(tmp_path, sizes={"train": 20, "validation": 10}, seed=2, image_size=48)
    result = read_source(tmp_path)
    assert result.problems == [] and len(result.records) == 30
    assert {r["task"] for r in result.records} == {"classification", "multi_label", "detection", "instance_detection",
                                                   "counting", "regression", "report_generation", "vqa_open",
                                                   "vqa_closed"}
    assert {r["dataset"] for r in result.records} == {f"synthetic_{t}" for t in QUESTION_TYPES}
    temporal = [r for r in result.records if r["dataset"] == "synthetic_temporal"]
    assert temporal and all(len(r["images"]) == 2 for r in temporal)
    assert {r["meta"]["split"] for r in result.records} == {"train", "validation"}
