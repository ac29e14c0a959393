"""`medlib demo` without a browser: the record it builds, what the model sees, the reasoning shown, the CLI."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from medlib import cli
from medlib.data import validate_record
from medlib.evaluation import demo

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_record_follows_the_record_contract(tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    Image.new("L", (40, 30), 200).save(image)
    record, root = demo.demo_record(image, "  Is there a lesion?  ", "vqa_closed", "yes, no,")
    assert root == tmp_path and record["images"] == ["scan.png"] and record["choices"] == ["yes", "no"]
    assert record["question"] == "Is there a lesion?"
    assert validate_record(record, "demo") == record
    shown = demo.model_view(image, demo.DemoSettings(image_size=56))
    assert shown.size == (56, 56) and shown.mode == "RGB"


@pytest.mark.parametrize(("args", "message"), [
    (("scan.png", "", "vqa_open"), "ask a question"),
    (("scan.png", "What?", "segmentation"), "unknown task"),
    (("scan.txt", "What?", "vqa_open"), "not an image"),
])
def test_bad_input_is_a_one_line_message(args: tuple[str, str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        demo.demo_record(*args)


def test_a_dicom_upload_is_read_by_medlibs_loader() -> None:
    pydicom_data = pytest.importorskip("pydicom.data")
    shown = demo.model_view(pydicom_data.get_testdata_file("CT_small.dcm"), demo.DemoSettings(image_size=64))
    assert shown.size == (64, 64) and len(set(shown.getdata())) > 10  # a rendered slice, not a blank


def test_reasoning_is_the_think_block() -> None:
    assert demo.reasoning_text("<think> two spots </think><answer>2</answer>") == "two spots"
    assert demo.reasoning_text("<answer>2</answer>") == ""


def test_settings_come_from_the_experiments_inference_parameters() -> None:
    settings, resolved = demo.settings_from_params(str(ROOT / "params" / "tiny.yaml"), ["inference.num_beams=2"],
                                                   notebooks_dir=str(ROOT / "notebooks"))
    assert (settings.image_size, settings.answer_format, settings.num_beams) == (112, "think_answer", 2)
    assert settings.max_new_tokens == resolved["max_new_tokens"] == 24
    assert demo._checkpoint("sft", resolved) == str(Path(resolved["runs_dir"]) / "sft" / "final")


def test_cli_registers_demo_and_lab() -> None:
    args = cli.build_parser().parse_args(["demo", "--model", "m", "--port", "7999"])
    assert args.handler is demo.run_demo and args.port == 7999 and args.host == "127.0.0.1"
    lab = cli.build_parser().parse_args(["lab", "p.yaml", "--set", "a.b=1", "--jupyter", "--port", "9", "--set", "x"])
    assert lab.overrides == ["a.b=1"] and lab.jupyter_args == ["--port", "9", "--set", "x"]
