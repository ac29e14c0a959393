"""`medlib predict --records`: a run killed mid-way and resumed writes the same file as an unbroken run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medlib.data import synthetic
from medlib.evaluation import inference
from medlib.models.tiny import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny random model and 40 synthetic test records."""
    work = tmp_path_factory.mktemp("predict")
    model = build_tiny_model(work / "model")
    records = synthetic.make_split(work / "data", "test", 40, question_types=["presence", "count"])
    return model, records


def predict_command(model: Path, records: Path, out: Path, *extra: str) -> list[str]:
    """The CLI call under test (batch 1 and long answers: slow enough to be killed mid-way)."""
    return [sys.executable, "-m", "medlib", "predict", "--model", str(model), "--records", str(records),
            "--out", str(out), "--image-size", "112", "--batch-size", "1", "--max-new-tokens", "48", *extra]


def run(command: list[str]) -> None:
    """Run a command to completion in the repository root, single-threaded."""
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_a_killed_run_resumes_to_the_same_file(setup, tmp_path):
    model, records = setup
    unbroken = tmp_path / "unbroken.jsonl"
    run(predict_command(model, records, unbroken))

    resumed = tmp_path / "resumed.jsonl"
    partial = Path(str(resumed) + ".partial")
    process = subprocess.Popen(predict_command(model, records, resumed), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not (partial.exists() and len(partial.read_text().splitlines()) >= 3):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before_kill = len(partial.read_text().splitlines())
    assert 3 <= done_before_kill < 40 and not resumed.exists(), "the run was not interrupted mid-way"
    with open(partial, "a") as handle:  # a torn last line, as a kill during a write leaves it
        handle.write('{"id": "test-000')

    run(predict_command(model, records, resumed, "--resume"))
    assert resumed.read_bytes() == unbroken.read_bytes()
    assert not partial.exists()
    assert [p["id"] for p in inference.read_predictions(resumed)] == [
        json.loads(line)["id"] for line in records.read_text().splitlines()]


def test_single_question_prints_the_answer_as_json(setup):
    model, records = setup
    image = records.parent / json.loads(records.read_text().splitlines()[0])["images"][0]
    output = subprocess.run(
        [sys.executable, "-m", "medlib", "predict", "--model", str(model), "--image", str(image), "--question",
         "Is there a lesion in this image?", "--task", "vqa_closed", "--max-new-tokens", "8"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    assert set(result) == {"answer", "raw", "parsed", "parse_error"}
