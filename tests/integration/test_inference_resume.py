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


def few_records(records: Path, n: int = 6) -> list[dict]:
    """The first n records (image paths relative to the records file's folder)."""
    return [json.loads(line) for line in records.read_text().splitlines()[:n]]


def test_resume_refuses_a_partial_file_of_another_model(setup, tmp_path, monkeypatch, capsys):
    """Issue 17 item 5: a run killed with one model and resumed with another must not mix them."""
    from medlib import cli
    from medlib.evaluation import predict

    model, records = setup
    other = build_tiny_model(tmp_path / "other-model", seed=1)
    rows = tmp_path / "records.jsonl"
    rows.write_text("".join(json.dumps(row) + "\n" for row in few_records(records)))
    out = tmp_path / "mixed.jsonl"
    arguments = ["predict", "--records", str(rows), "--data-root", str(records.parent), "--out", str(out),
                 "--image-size", "112",
                 "--batch-size", "2", "--max-new-tokens", "4"]
    calls = {"n": 0}
    real = inference.generate_batch

    def dies_after_one_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the kill, after one batch reached the partial file
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "generate_batch", dies_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        predict.run_predict(cli.build_parser().parse_args([*arguments, "--model", str(model)]))
    partial = Path(str(out) + ".partial")
    assert len(partial.read_text().splitlines()) == 2
    monkeypatch.setattr(inference, "generate_batch", real)
    capsys.readouterr()
    assert cli.main([*arguments, "--model", str(other), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "refusing to mix two models" in err and "Traceback" not in err
    assert len(partial.read_text().splitlines()) == 2 and not out.exists()
    # The same model continues it.
    assert cli.main([*arguments, "--model", str(model), "--resume"]) == 0
    assert len(out.read_text().splitlines()) == 6 and not partial.exists()
    # A finished file is not replaced without --overwrite.
    assert cli.main([*arguments, "--model", str(model)]) == 1
    assert "pass --overwrite" in capsys.readouterr().err


def test_records_with_missing_or_corrupt_images_are_skipped_and_counted(setup, tmp_path, capsys):
    """Issue 17 item 9: one bad image must not abort the run and leave a .partial behind."""
    from medlib import cli

    model, records = setup
    rows = few_records(records)
    rows[1]["images"] = ["images/gone.png"]
    (records.parent / "corrupt-for-test.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 20)
    rows[4]["images"] = ["corrupt-for-test.png"]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "predictions.jsonl"
    status = cli.main(["predict", "--model", str(model), "--records", str(path), "--data-root", str(records.parent),
                       "--out", str(out), "--image-size", "112", "--batch-size", "4", "--max-new-tokens", "4"])
    printed, err = capsys.readouterr()
    assert status == 0, err
    assert "skipped 2 of 6 records whose images could not be loaded" in printed and "2 records skipped" in printed
    assert [p["id"] for p in inference.read_predictions(out)] == [r["id"] for i, r in enumerate(rows)
                                                                   if i not in (1, 4)]
    assert not Path(str(out) + ".partial").exists()
