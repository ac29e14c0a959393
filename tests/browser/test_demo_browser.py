"""`medlib demo` in Chromium: upload an image, ask, and see the answer `medlib predict` gives for the same input."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from browser_support import ROOT, TINY, free_port, isolated, medlib_command, save_small_png, serving, with_set

# A few SFT steps teach the tiny model the answer format (not yet the image): enough for an answer to show.
# $MEDLIB_DEMO_MODEL swaps in a trained checkpoint (the README's screenshot uses the tiny profile's SFT).
TRAINING = ["data_exploration.synthetic_sizes={train: 96, validation: 8, test: 16}", "sft.max_steps=60",
            "sft.per_device_train_batch_size=8", "sft.eval_steps=0", "sft.logging_steps=20"]


@pytest.fixture(scope="module")
def demo_setup(tmp_path_factory) -> tuple[Path, list[str], Path]:
    """(checkpoint, overrides of the tiny profile, folder): synthetic data, and a shortly trained SFT checkpoint."""
    pytest.importorskip("gradio", reason="gradio is not installed (pip install -e '.[demo]')")
    from medlib.training.command import prepare_inputs

    folder = tmp_path_factory.mktemp("demo")
    overrides = isolated(folder) + TRAINING
    given = os.environ.get("MEDLIB_DEMO_MODEL")
    if given:
        prepare_inputs(str(TINY), overrides)
        return (ROOT / given).resolve(), overrides, folder
    trained = subprocess.run(medlib_command("train", "sft", str(TINY), *with_set(overrides)), cwd=ROOT,
                             capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return folder / "runs" / "sft" / "final", overrides, folder


def lesion_image(folder: Path) -> tuple[Path, dict]:
    """A held-out synthetic image with a lesion and its presence question."""
    for line in (folder / "runs" / "data" / "test.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["task"] == "vqa_closed" and record["answer"] == "yes":
            return folder / "runs" / "data" / record["images"][0], record
    raise AssertionError("no presence question with a lesion in the synthetic test split")


def field(page, elem_id: str) -> str:
    """The text a Gradio textbox shows."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first.input_value()


def test_demo_answers_an_uploaded_image_like_medlib_predict(page, demo_setup, tmp_path: Path,
                                                            screenshots: Path) -> None:
    from medlib.training.command import stage_settings

    checkpoint, overrides, folder = demo_setup
    image, record = lesion_image(folder)
    inference = stage_settings("sft", str(TINY), overrides, block="inference")
    # The reference: `medlib predict` on the same image and question with the profile's inference options.
    reference = subprocess.Popen(medlib_command(
        "predict", "--model", str(checkpoint), "--image", str(image), "--question", record["question"],
        "--task", "vqa_closed", "--choices", "yes,no", "--image-size", str(inference["image_size"]),
        "--max-new-tokens", str(inference["max_new_tokens"]), "--answer-format", inference["answer_format"]),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = free_port()
    command = medlib_command("demo", "--model", str(checkpoint), "--params", str(TINY), *with_set(overrides),
                             "--port", str(port))
    with serving(command, f"http://127.0.0.1:{port}/", tmp_path / "demo.log", env={"GRADIO_ANALYTICS_ENABLED": "False"}):
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#upload input[type=file]").set_input_files(str(image))
        page.wait_for_selector("#preview img", timeout=60_000)
        assert field(page, "question") == record["question"]  # the presence task's question, preset
        page.click("#ask")
        page.wait_for_function("() => document.querySelector('#answer textarea, #answer input')?.value", timeout=120_000)
        page.get_by_text("Raw output").click()
        shown = {name: field(page, name) for name in ("answer", "parsed", "reasoning", "raw")}
        save_small_png(page.screenshot(full_page=True), screenshots / "demo.png")
    stdout, stderr = reference.communicate(timeout=300)
    assert reference.returncode == 0, stderr[-3000:]
    expected = json.loads(stdout.strip().splitlines()[-1])
    assert expected["raw"], "the trained checkpoint should answer something"
    assert shown["raw"] == expected["raw"] and shown["answer"] == expected["answer"]
    assert shown["parsed"] == (json.dumps(expected["parsed"]) if expected["parsed"] is not None
                               else f"(not parsed: {expected['parse_error']})")
    assert shown["answer"] in ("yes", "no")  # answered in the taught format, and parsed as a closed answer
    assert shown["reasoning"] and shown["reasoning"] in expected["raw"]
