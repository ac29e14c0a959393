"""SFT outside the notebook: resume after a real kill, and a 2-process (gloo) run under torchrun."""
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
from medlib.models.tiny import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A tiny model and a small synthetic data set shared by the runs below."""
    work = tmp_path_factory.mktemp("sft")
    build_tiny_model(work / "base-model")
    synthetic.ensure_dataset(work / "data", sizes={"train": 64, "validation": 8, "test": 8})
    return work


def overrides(work: Path, runs: str, **sft: object) -> list[str]:
    """--set arguments pointing the tiny profile at `work` with a short SFT."""
    settings = {"max_steps": 24, "per_device_train_batch_size": 4, "logging_steps": 1, "eval_steps": 0,
                "save_steps": 0, "resume": True, **sft}
    common = [f"common.runs_dir={work / runs}", f"common.data_dir={work / 'data'}",
              f"common.model_id={work / 'base-model'}"]
    return [arg for item in common + [f"sft.{k}={v}" for k, v in settings.items()] for arg in ("--set", item)]


def result(work: Path, runs: str) -> dict:
    """Rank 0's training summary."""
    return json.loads((work / runs / "sft" / "result.json").read_text())


def test_a_killed_run_resumes_from_its_last_checkpoint(workdir):
    command = [sys.executable, "-m", "medlib", "train", "sft", "params/tiny.yaml",
               *overrides(workdir, "killed", save_steps=4, max_steps=40)]
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = workdir / "killed" / "sft.incomplete"  # a run writes here until it completes
    deadline = time.time() + 300
    while time.time() < deadline and not (checkpoints / "checkpoint-8" / "trainer_state.json").exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (checkpoints / "result.json").exists(), "the run finished before it could be killed"
    saved = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*")
                   if (p / "trainer_state.json").exists())  # a folder being written at the kill is incomplete
    assert saved and saved[-1] < 40

    subprocess.run(command, cwd=ROOT, env=ENV, check=True, capture_output=True)
    summary = result(workdir, "killed")
    assert summary["resumed_from"] is not None and summary["resumed_from"].endswith(f"checkpoint-{saved[-1]}")
    assert summary["global_step"] == 40
    logged_steps = [entry["step"] for entry in summary["log_history"] if "loss" in entry]
    assert logged_steps[-1] == 40 and logged_steps[0] <= saved[-1]


def test_two_processes_train_with_gloo(workdir):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "medlib",
               "train", "sft", "params/tiny.yaml", *overrides(workdir, "ddp", max_steps=6)]
    completed = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = result(workdir, "ddp")
    assert summary["world_size"] == 2 and summary["global_step"] == 6
    assert (workdir / "ddp" / "sft" / "final" / "model.safetensors").exists()
