"""GRPO in two processes (torchrun, DDP over gloo on CPU), then resume from its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medlib import synthetic, workspace

WORKER = Path(__file__).with_name("grpo_two_process.py")


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """Run the worker in two processes; fail with its output on a non-zero exit."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_grpo_runs_in_two_processes_and_resumes(tmp_path: Path) -> None:
    checkpoint = workspace.ensure_base_model(str(tmp_path / "base"), "qwen2_5_vl", image_size=112, seed=0)
    synthetic.make_split(tmp_path / "data", "train", 32, seed=0)
    out_dir = tmp_path / "grpo"
    _torchrun(checkpoint, str(tmp_path / "data"), str(out_dir), "3")
    result = json.loads((out_dir / "result.json").read_text())
    assert result["world_size"] == 2 and result["global_step"] == 3
    assert (out_dir / "checkpoint-3").is_dir()
    # A second launch resumes from checkpoint-3: its log history continues instead of restarting at 1.
    _torchrun(checkpoint, str(tmp_path / "data"), str(out_dir), "5")
    result = json.loads((out_dir / "result.json").read_text())
    assert result["global_step"] == 5
    assert sorted(set(result["logged_steps"])) == [1, 2, 3, 4, 5]
