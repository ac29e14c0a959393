"""`medlib train grpo` in two processes (torchrun, DDP over gloo on CPU), then resume from its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medlib.data import synthetic
from medlib.models.tiny import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _torchrun(work: Path, max_steps: int) -> dict:
    """Train GRPO from the base model in two ranks up to max_steps; return rank 0's summary."""
    grpo = {"init_checkpoint": work / "base-model", "max_steps": max_steps, "per_device_train_batch_size": 4,
            "num_generations": 4, "max_completion_length": 8, "logging_steps": 1, "save_steps": 3,
            "max_train_samples": 32, "resume": True}
    common = {"runs_dir": work / "runs", "data_dir": work / "data", "model_id": work / "base-model"}
    items = [f"common.{k}={v}" for k, v in common.items()] + [f"grpo.{k}={v}" for k, v in grpo.items()]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "medlib", "train", "grpo", "params/tiny.yaml", *[a for i in items for a in ("--set", i)]]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((work / "runs" / "grpo" / "result.json").read_text())


@pytest.mark.slow
def test_grpo_runs_in_two_processes_and_resumes(tmp_path: Path) -> None:
    build_tiny_model(tmp_path / "base-model")
    synthetic.ensure_dataset(tmp_path / "data", sizes={"train": 32, "validation": 4, "test": 4})
    result = _torchrun(tmp_path, 3)
    assert result["world_size"] == 2 and result["global_step"] == 3
    assert (tmp_path / "runs" / "grpo" / "checkpoint-3").is_dir()
    # A second launch resumes from checkpoint-3: its log history continues instead of restarting at 1.
    result = _torchrun(tmp_path, 5)
    assert result["global_step"] == 5 and result["resumed_from"].endswith("checkpoint-3")
    logged = sorted({entry["step"] for entry in result["log_history"] if "reward" in entry})
    assert logged == [1, 2, 3, 4, 5]
