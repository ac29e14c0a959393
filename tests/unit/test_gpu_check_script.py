"""bench/gpu_check.sh end to end on CPU with the tiny model: the GPU check's own smoke test, shrunk.

Without CUDA the Unsloth rows are skipped with the reason; the hf rows run every phase for real.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SHRUNK = ["--image-size", "56", "--batch-size", "2", "--sft-steps", "2", "--sft-epochs", "2", "--grpo-steps", "2",
          "--grpo-batch", "2", "--num-generations", "2", "--max-completion-length", "4", "--gen-n", "2",
          "--gen-batch", "2", "--new-tokens", "3"]
ENV = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_SHAPE": "tiny", "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, str]:
    """Run the script once, building the tiny model itself: (gpu_check.json, printed output)."""
    work = tmp_path_factory.mktemp("gpu-check")
    run = subprocess.run(["bash", "bench/gpu_check.sh", str(work / "model"), str(work / "out"), *SHRUNK],
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((work / "out" / "gpu_check.json").read_text()), run.stdout


def test_every_hf_phase_runs_and_reports(report) -> None:
    data, _ = report
    hf = data["backends"]["hf"]
    assert hf["imported_before_backend"] == []
    phases = hf["phases"]
    assert {name: row["status"] for name, row in phases.items()} == {"generate": "ok", "sft": "ok", "grpo": "ok"}
    assert phases["generate"]["tokens_per_s"] > 0 and len(phases["generate"]["texts"]) == 2
    sft = phases["sft"]
    assert sft["steps"] == 4 and sft["finite"] and sft["falling"] and len(sft["losses"]) == 4
    assert sft["tokens_per_s"] > 0 and sft["vision_cache"]["hit_rate"] > 0  # the second epoch revisits the images
    grpo = phases["grpo"]
    assert grpo["steps"] == 2 and grpo["finite"] and all(math.isfinite(x) for x in grpo["reward"])
    assert set(grpo["rewards"]) == {"rewards/format/mean", "rewards/accuracy/mean"}  # medlib's default recipe
    effective = grpo["trainer_config"]["effective"]
    assert (effective["optim"], effective["weight_decay"], effective["loss_type"]) == ("adamw_torch_fused", 0.0, "dapo")
    assert (effective["epsilon_high"], effective["mask_truncated_completions"]) == (0.2, False)
    assert grpo["trainer_config"]["changed"] == {} and sft["trainer_config"]["changed"] == {}


def test_unsloth_rows_say_why_they_did_not_run(report) -> None:
    data, printed = report
    if torch.cuda.is_available():
        pytest.skip("CUDA here: the Unsloth rows run")
    for row in data["backends"]["unsloth"]["phases"].values():
        assert row["status"].startswith("skipped: no CUDA here")
    assert "greedy outputs equal, unsloth vs hf: — (needs both)" in printed
    assert data["device"].startswith("CPU") and data["versions"]["trl"]


def test_one_table_with_every_phase_and_the_configs(report) -> None:
    _, printed = report
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("phase"))
    rows = [line.split()[:3] for line in lines[header + 1:header + 7]]
    assert [r[:2] for r in rows] == [[p, b] for p in ("generate", "sft", "grpo") for b in ("unsloth", "hf")]
    assert "grpo trainer config (hf): optim=adamw_torch_fused" in printed


def test_a_backend_stopped_by_the_budget_reports_what_did_not_run(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "bench"))
    knobs = {"out": str(tmp_path), "phases": ["generate", "sft"]}
    result = gpu_check.run_backend("hf", knobs, timeout=0.5)
    assert result["phases"]["generate"]["status"] == "not run: stopped by the time budget after 0 s"
    assert set(result["phases"]) == {"generate", "sft"}
