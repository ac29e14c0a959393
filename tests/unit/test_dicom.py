"""DICOM input on the real files pydicom's wheel ships: each converted or skipped with a named reason; display
pipeline (window, VOI LUT, MONOCHROME1, frames) checked against pydicom; one answers through `medlib predict`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

from medlib import cli  # noqa: E402
from medlib.data import read_records  # noqa: E402
from medlib.data.dicom import DicomError, read_dicom  # noqa: E402
from medlib.data.processing import load_image  # noqa: E402
from medlib.data.readers import convert  # noqa: E402

TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent
NAMED_REASONS = {"dicom_no_image", "dicom_codec_missing", "dicom_frame", "truncated_image", "unreadable_image",
                 "oversized_image"}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple:
    """Every shipped .dcm as one records line (copied into a data root), converted once."""
    root = tmp_path_factory.mktemp("dicom")
    names = sorted(p.name for p in TEST_FILES.glob("*.dcm"))
    rows = []
    for name in names:
        shutil.copyfile(TEST_FILES / name, root / name)
        rows.append({"id": name, "dataset": "pydicom", "task": "vqa_open", "images": [name],
                     "question": "What is shown?", "answer": "an image", "meta": {"split": "test"}})
    (root / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report, written = convert(root / "records.jsonl", root.parent / f"{root.name}-out")
    return names, report, written


def test_every_shipped_dicom_is_converted_or_skipped_with_a_named_reason(converted) -> None:
    names, report, written = converted
    assert len(names) >= 70 and report.items == len(names) and report.reconciles
    kept = {r["id"] for r in report.records}
    skipped = {Path(p.path).name: p.kind for p in report.problems}
    assert kept | set(skipped) == set(names) and not kept & set(skipped)
    assert set(skipped.values()) <= NAMED_REASONS
    # what each kind of file gives, as the file names say
    assert {"CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm",
            "SC_rgb_rle_2frame.dcm", "examples_palette.dcm", "examples_ybr_color.dcm", "rtdose.dcm"} <= kept
    assert skipped["rtplan.dcm"] == skipped["test-SR.dcm"] == skipped["rtstruct.dcm"] == "dicom_no_image"
    assert skipped["MR_truncated.dcm"] == "truncated_image"
    assert skipped["MR_small_jpeg_ls_lossless.dcm"] == "dicom_codec_missing"
    assert len(kept) >= 40
    ct = next(r for r in read_records(written[0]) if r["id"] == "CT_small.dcm")
    assert ct["meta"]["dicom"][0]["pixel_spacing"] == pytest.approx([0.661468, 0.661468])
    assert ct["meta"]["dicom"][0]["modality"] == "CT"


def test_window_follows_the_dicom_formula_and_pydicom(tmp_path: Path) -> None:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    path = get_testdata_file("MR_small.dcm")
    image, facts = read_dicom(path)
    ds = pydicom.dcmread(path)
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    reference = apply_voi_lut(values, ds).astype(np.float64)
    center, width = facts["window"]
    # pydicom's windowed output spans its own output range: find it from values far below and above the window
    low, high = apply_voi_lut(np.array([center - 100 * width, center + 100 * width]), ds).astype(np.float64)
    inside = (values > center - width / 2 + 1) & (values < center + width / 2 - 1)
    ours = np.asarray(image, dtype=np.float64)
    theirs = (reference - low) / (high - low) * 255
    assert inside.any() and np.abs(ours[inside] - theirs[inside]).max() <= 1.5
    assert facts["pixel_spacing"] == pytest.approx([0.3125, 0.3125]) and image.mode == "L"


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = tmp_path / "inverted.dcm"
    ds.save_as(inverted)
    normal = np.asarray(read_dicom(get_testdata_file("CT_small.dcm"))[0], dtype=int)
    assert np.array_equal(np.asarray(read_dicom(inverted)[0], dtype=int), 255 - normal)


def test_multi_frame_files_give_the_chosen_frame(tmp_path: Path) -> None:
    path = get_testdata_file("examples_ybr_color.dcm")
    first, facts = read_dicom(path, 0)
    last, last_facts = read_dicom(path, 29)
    assert facts["frames"] == 30 and last_facts["frame"] == 29 and first.mode == "RGB"
    assert not np.array_equal(np.asarray(first), np.asarray(last))
    with pytest.raises(DicomError, match="frame 30 requested; the file has 30") as error:
        read_dicom(path, 30)
    assert error.value.kind == "dicom_frame"
    # the frame chosen at conversion is the frame training and inference load
    root = tmp_path / "data"
    root.mkdir()
    shutil.copyfile(path, root / "cine.dcm")
    row = {"id": "c", "dataset": "d", "task": "vqa_open", "images": ["cine.dcm"], "question": "q", "answer": "a"}
    (root / "r.jsonl").write_text(json.dumps(row) + "\n")
    assert cli.main(["data", "convert", str(root / "r.jsonl"), "--out", str(tmp_path / "out"),
                     "--dicom-frame", "29"]) == 0
    from medlib.data import load_record_images

    record = read_records(tmp_path / "out" / "train.jsonl")[0]
    assert record["meta"]["dicom"][0]["frame"] == 29
    loaded = load_record_images(record, tmp_path / "out", None)[0]
    assert np.array_equal(np.asarray(loaded), np.asarray(last.convert("RGB")))


def test_load_image_reads_dicom_as_rgb_for_training_and_inference() -> None:
    image = load_image(get_testdata_file("CT_small.dcm"), 32)
    assert (image.mode, image.size) == ("RGB", (32, 32))


def test_a_dicom_answers_through_medlib_predict(tmp_path: Path, capsys) -> None:
    from medlib.models.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    dicom = tmp_path / "ct.dcm"
    shutil.copyfile(get_testdata_file("CT_small.dcm"), dicom)
    capsys.readouterr()
    assert cli.main(["predict", "--model", str(model), "--image", str(dicom), "--question", "Is there a lesion?",
                     "--device", "cpu", "--max-new-tokens", "4"]) == 0
    printed = capsys.readouterr().out
    answer = json.loads(printed[printed.index("{"):])
    assert {"answer", "raw"} <= set(answer)
