"""A table of hostile inputs through every `medlib` command.

Each must end in one line naming the fault, a non-zero exit code, no traceback, and no file written
or lost anywhere in the test's world (a copy of the notebooks, params and inputs in a temporary folder).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from medlib import cli

ROOT = Path(__file__).resolve().parents[2]
GOOD = "params/good.yaml"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def prediction(key: str, raw: str = "<answer>2</answer>") -> dict:
    return {"id": key, "task": "counting", "dataset": "d", "raw": raw, "answer": "2", "parsed": None}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """world/repo (notebooks, params) and world/inputs (hostile files); tests run with cwd world/repo."""
    world = tmp_path_factory.mktemp("world")
    repo, inputs = world / "repo", world / "inputs"
    shutil.copytree(ROOT / "notebooks", repo / "notebooks")
    (repo / "params").mkdir()
    (repo / GOOD).write_text((ROOT / "params" / "tiny.yaml").read_text())
    profile = yaml.safe_load((ROOT / "params" / "tiny.yaml").read_text())
    profile["slurm"] = {"partition": "gpu\n#SBATCH --wrap=rm -rf ~"}
    (repo / "params" / "injected.yaml").write_text(yaml.safe_dump(profile))
    (repo / "params" / "broken.yaml").write_text("common: {experiment: x\n")
    inputs.mkdir()
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    (inputs / "notamodel").mkdir()
    (inputs / "notamodel" / "weights.bin").write_bytes(b"0")
    (inputs / "model").mkdir()
    (inputs / "model" / "config.json").write_text("{}")
    record = {"id": "r1", "dataset": "d", "modality": "x", "task": "counting", "images": ["a.png"],
              "question": "How many?", "answer": "2", "meta": {}}
    write_jsonl(inputs / "records.jsonl", [record])
    (inputs / "bad_records.jsonl").write_text(json.dumps(record) + "\n{\"id\": \"r2\", \"task\n")
    (inputs / "finished.jsonl").write_text("already here\n")
    (inputs / "empty.jsonl").write_text("")
    write_jsonl(inputs / "repeated.jsonl", [prediction("q1"), prediction("q2"), prediction("q1")])
    write_jsonl(inputs / "huge.jsonl", [prediction("q1", "<answer>1e308</answer>"),
                                        prediction("q2", "<answer>1e308</answer>")])
    write_jsonl(inputs / "others.jsonl", [prediction("z1"), prediction("z2")])
    (inputs / "settings.json").write_text("{not json")
    (inputs / "tiny-model").mkdir()
    (inputs / "tiny-model" / "config.json").write_text("{}")
    (inputs / "a-file").write_text("x")
    return world


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


INPUTS = "../inputs"  # the hostile files, seen from world/repo
CASES = [
    # medlib run: experiment names that would leave results/, broken files and options
    ("run-escape", ["run", GOOD, "--set", "common.experiment=../../escape_exp"], "common.experiment"),
    ("run-nested", ["run", GOOD, "--set", "common.experiment=a/b"], "is a path, not a name"),
    ("run-absolute", ["run", GOOD, "--set", "common.experiment=/tmp/abs"], "is a path, not a name"),
    ("run-newline", ["run", GOOD, "--set", 'common.experiment="x\\ny"'], "line break"),
    ("run-missing", ["run", "params/none.yaml"], "experiment file not found"),
    ("run-yaml", ["run", "params/broken.yaml"], "invalid YAML"),
    ("run-type", ["run", GOOD, "--set", "sft.learning_rate=fast"], "sft.learning_rate"),
    ("run-stage", ["run", GOOD, "--stages", "nosuch"], "unknown stage 'nosuch'"),
    ("run-both", ["run", GOOD, "--resume", "--fresh"], "not both"),
    # medlib train
    ("train-missing", ["train", "sft", "params/none.yaml"], "experiment file not found"),
    ("train-escape", ["train", "sft", GOOD, "--set", "common.experiment=../x"], "common.experiment"),
    ("train-settings", ["train", "sft", "--settings", f"{INPUTS}/settings.json"], "settings.json"),
    # medlib predict (all caught before a model loads)
    ("predict-no-folder", ["predict", "--model", "runs/none/sft/final", "--image", f"{INPUTS}/corrupt.png",
                           "--question", "q"], "runs/none/sft/final: folder not found"),
    ("predict-not-model", ["predict", "--model", f"{INPUTS}/notamodel", "--records", f"{INPUTS}/records.jsonl"],
     "no config.json"),
    ("predict-corrupt", ["predict", "--model", f"{INPUTS}/model", "--image", f"{INPUTS}/corrupt.png", "--question", "q"],
     "not a readable image"),
    ("predict-records", ["predict", "--model", f"{INPUTS}/model", "--records", f"{INPUTS}/bad_records.jsonl"],
     "bad_records.jsonl:2"),
    ("predict-out-exists", ["predict", "--model", f"{INPUTS}/model", "--records", f"{INPUTS}/records.jsonl",
                            "--out", f"{INPUTS}/finished.jsonl"], "pass --overwrite"),
    ("predict-out-is-input", ["predict", "--model", f"{INPUTS}/model", "--records", f"{INPUTS}/records.jsonl",
                              "--out", f"{INPUTS}/records.jsonl", "--overwrite"], "is the --records file itself"),
    # medlib score
    ("score-empty", ["score", f"{INPUTS}/empty.jsonl"], "no predictions"),
    ("score-repeated", ["score", f"{INPUTS}/repeated.jsonl"], "'q1'"),
    ("score-unpaired", ["score", f"{INPUTS}/huge.jsonl", "--against", f"{INPUTS}/others.jsonl"], "no id in common"),
    ("score-missing", ["score", f"{INPUTS}/none.jsonl"], "none.jsonl"),
    ("score-overflow", ["score", f"{INPUTS}/huge.jsonl", "--parser", "robust", "--resamples", "10"], "huge.jsonl"),
    # medlib data
    ("data-convert-missing", ["data", "convert", f"{INPUTS}/nothing", "--out", f"{INPUTS}/converted"], "nothing"),
    ("data-validate-missing", ["data", "validate", f"{INPUTS}/nothing"], "nothing"),
    # medlib submit --dry-run
    ("submit-newline", ["submit", "params/injected.yaml", "--dry-run"], "slurm.partition"),
    ("submit-name", ["submit", "params/none.yaml", "--dry-run"], "experiment file not found"),
    # medlib report
    ("report-file", ["report", f"{INPUTS}/a-file"], "a-file"),
    # medlib build-tiny
    ("build-tiny-existing", ["build-tiny", f"{INPUTS}/tiny-model"], "pass --overwrite"),
    ("build-tiny-file", ["build-tiny", f"{INPUTS}/a-file"], "is a file"),
]


@pytest.mark.parametrize(("argv", "fault"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_hostile_input_fails_cleanly(world: Path, argv: list[str], fault: str, monkeypatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(world / "repo")
    before = snapshot(world)
    try:
        status = cli.main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        status = exit_.code
    out, err = capsys.readouterr()
    assert status not in (0, None), out[-2000:]
    assert "Traceback" not in err + out
    assert fault in err, err
    # One line (a problem report lists every problem at once, one per line; YAML errors point at the spot).
    assert err.startswith("medlib ") or err.startswith("usage:"), err
    assert snapshot(world) == before, "files were written or lost"
