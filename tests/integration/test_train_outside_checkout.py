"""`medlib train` needs only the package: no notebooks folder beside it, any working directory."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_train_sft_from_another_folder_without_notebooks(tmp_path: Path) -> None:
    params = tmp_path / "tiny.yaml"
    shutil.copy(ROOT / "params" / "tiny.yaml", params)
    medlib = Path(sys.executable).with_name("medlib")
    command = [str(medlib), "train", "sft", str(params), "--set", "sft.max_steps=2",
               "--set", "data_exploration.synthetic_sizes={train: 32, validation: 8, test: 8}",
               "--set", "sft.per_device_train_batch_size=4", "--set", "sft.eval_steps=0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "notebooks").exists()
    summary = json.loads((tmp_path / "runs" / "tiny" / "sft" / "result.json").read_text())
    assert summary["global_step"] == 2
    assert (tmp_path / "runs" / "tiny" / "sft" / "final").is_dir()
