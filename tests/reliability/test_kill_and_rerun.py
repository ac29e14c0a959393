"""A `medlib run` killed mid-training (SIGKILL to the runner and its kernel) resumes on a plain rerun.

The rerun continues from the newest complete checkpoint and ends with the same losses and step count
as an uninterrupted run; until then the stage is recorded as interrupted, not `running`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from medlib.data import synthetic
from medlib.models.tiny import ensure_tiny_model
from medlib.pipeline.runner import read_stage_states

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
# 20_sft shrunk: 12 steps of 4 questions, a checkpoint every 4 steps.
SFT = {"max_steps": 12, "per_device_train_batch_size": 4, "save_steps": 4, "save_total_limit": 3, "eval_steps": 0,
       "logging_steps": 1, "max_train_samples": 48, "warmup_steps": 0}


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A tiny base model and a small synthetic data set for both runs."""
    work = tmp_path_factory.mktemp("kill")
    ensure_tiny_model(work / "base-model", "qwen2_5_vl", image_size=112, seed=0)
    synthetic.ensure_dataset(work / "data", sizes={"train": 48, "validation": 4, "test": 4},
                             question_types=["presence", "count"])
    return work


def experiment(shared: Path, name: str) -> tuple[list[str], Path, Path]:
    """The command running 20_sft of a copy of the tiny profile named `name`; (command, runs, results)."""
    profile = yaml.safe_load((ROOT / "params" / "tiny.yaml").read_text())
    runs, results = shared / name / "runs", shared / name / "results"
    profile["common"].update(experiment=name, runs_dir=str(runs), results_dir=str(results),
                             data_dir=str(shared / "data"), model_id=str(shared / "base-model"))
    params = shared / f"{name}.yaml"
    params.write_text(yaml.safe_dump(profile))
    command = [sys.executable, "-m", "medlib", "run", str(params), "--stages", "20_sft",
               "--notebooks-dir", str(ROOT / "notebooks"),
               *[arg for key, value in SFT.items() for arg in ("--set", f"sft.{key}={value}")]]
    return command, runs, results


def losses(runs: Path) -> dict[int, float]:
    """step → training loss from the finished run's summary (runs/<exp>/sft/result.json)."""
    summary = json.loads((runs / "sft" / "result.json").read_text())
    return {entry["step"]: entry["loss"] for entry in summary["log_history"] if "loss" in entry}


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the runner and everything it started (its kernel), as a node failure or the OOM killer would."""
    family = [process.pid, *(child.pid for child in psutil.Process(process.pid).children(recursive=True))]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def test_a_killed_stage_resumes_and_ends_like_an_uninterrupted_run(shared: Path) -> None:
    command, uninterrupted, _ = experiment(shared, "whole")
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    command, runs, results = experiment(shared, "killed")
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = runs / "sft.incomplete"
    deadline = time.time() + 600
    while time.time() < deadline and not (staging / "checkpoint-4" / "trainer_state.json").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    kill_tree(process)
    assert not (runs / "sft" / "final").exists(), "the run finished before it could be killed"
    complete = sorted(int(p.name.split("-")[1]) for p in staging.glob("checkpoint-*")
                      if (p / "trainer_state.json").exists())
    assert complete and complete[-1] < SFT["max_steps"]
    # The runner died without a word: the record must not claim the stage is still running.
    assert read_stage_states(results)["20_sft"]["status"] == "interrupted"

    rerun = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"continuing the interrupted run in {staging} from checkpoint-{complete[-1]}" in rerun.stdout
    summary = json.loads((results / "metrics.json").read_text())["20_sft"]
    assert summary["resumed_from"] == str(runs / "sft" / f"checkpoint-{complete[-1]}")
    assert summary["global_step"] == SFT["max_steps"] and summary["checkpoint"] == str(runs / "sft" / "final")
    assert (runs / "sft" / "final").is_dir() and not staging.exists()
    assert read_stage_states(results)["20_sft"]["status"] == "completed"
    whole, resumed = losses(uninterrupted), losses(runs)
    assert sorted(resumed) == sorted(whole) == list(range(1, SFT["max_steps"] + 1))
    assert resumed == pytest.approx(whole, rel=1e-5)
