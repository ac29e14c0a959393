"""A real single-node Slurm (scripts/start_slurm.sh) runs a two-experiment sweep of the tiny profile.

Both experiments complete and appear in the report; a third copy of the first experiment is requeued
in the middle of its SFT stage and must finish with the same metrics as the uninterrupted run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from medlib import cli

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
TIMEOUT_S = 1500

# The tiny profile shrunk to seconds per stage (as tests/notebooks/test_run_tiny.py's SMOKE list).
SMOKE = {
    "data_exploration": {"synthetic_sizes": {"train": 48, "validation": 16, "test": 16}, "n_examples_shown": 2},
    "sft": {"max_steps": 6, "eval_steps": 3, "max_eval_samples": 8, "logging_steps": 2,
            "per_device_train_batch_size": 8},
    "grpo": {"max_steps": 2, "max_train_samples": 16, "logging_steps": 1},
    "metric_analysis": {"n_resamples": 100},
}


def _slurm_problem() -> str | None:
    """Why Slurm cannot be used here, or None when `sinfo` answers with a usable node."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "Slurm is not installed (run scripts/start_slurm.sh as root first)"
    try:
        states = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True,
                                timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s (is slurmctld running? see scripts/start_slurm.sh)"
    if states.returncode != 0:
        return f"sinfo failed: {states.stderr.strip()} (start Slurm with scripts/start_slurm.sh)"
    if not re.search(r"^(idle|mixed|allocated)", states.stdout, re.MULTILINE):
        return f"no usable Slurm node (sinfo states: {states.stdout.split()})"
    return None


pytestmark = pytest.mark.skipif(_slurm_problem() is not None, reason=str(_slurm_problem()))


def _base_experiment(tmp: Path) -> Path:
    """params/tiny.yaml shrunk to seconds, everything inside tmp, one CPU per job."""
    experiment = yaml.safe_load((ROOT / "params" / "tiny.yaml").read_text())
    for block, values in SMOKE.items():
        experiment[block].update(values)
    experiment["common"].update(runs_dir=f"{tmp}/runs/tiny", data_dir=f"{tmp}/runs/tiny/data",
                                model_id=f"{tmp}/runs/tiny/base-model", results_dir=f"{tmp}/results/tiny")
    experiment["slurm"] = {"cpus": 1, "time": "00:30:00",
                           "setup": ["export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1"]}
    path = tmp / "params" / "tiny_smoke.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


def _jobs(runs_dir: Path) -> dict[str, str]:
    """Stage stem → job id, from the jobs.json `medlib submit` wrote."""
    jobs = json.loads((runs_dir / "slurm" / "jobs.json").read_text())["jobs"]
    return {job["stage"]: job["job_id"] for job in jobs}


def _state(job_id: str) -> str:
    """JobState from scontrol (finished jobs stay visible for MinJobAge seconds)."""
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=False)
    match = re.search(r"JobState=(\w+)", shown.stdout)
    return match.group(1) if match else "UNKNOWN"


def _requeue_mid_stage(log: Path, job_id: str, deadline: float) -> None:
    """Wait until the stage's notebook is executing cells, then requeue the job and let it start again now."""
    while "Executing Cell 8" not in (log.read_text(errors="replace") if log.exists() else ""):
        assert time.monotonic() < deadline, f"job {job_id} never reached the middle of its stage ({log})"
        assert _state(job_id) in ("PENDING", "RUNNING", "CONFIGURING"), f"job {job_id}: {_state(job_id)}"
        time.sleep(0.5)
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    # A requeued job waits ~2 min (BeginTime) before it may start again; the test need not.
    # It first passes through REQUEUED/COMPLETING, where the start time cannot be changed yet.
    for _ in range(120):
        state = _state(job_id)
        if state in ("RUNNING", "COMPLETED", "FAILED"):
            break
        if state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True,
                           check=False)
        time.sleep(1)


def _comparable(metrics: dict) -> dict:
    """Metrics without wall-clock times and paths, which legitimately differ between runs."""
    sft = {k: v for k, v in metrics["20_sft"].items() if k not in ("train_runtime_s", "checkpoint")}
    return {"sft": sft, "grpo": metrics["30_grpo"]["rewards"], "scores": metrics["50_metric_analysis"]["scores"]}


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory) -> dict:
    """Submit the sweep and a requeued copy of its first member; wait for every job to end."""
    tmp = tmp_path_factory.mktemp("slurm")
    base = _base_experiment(tmp)
    sweep = tmp / "params" / "lr.yaml"
    sweep.write_text(yaml.safe_dump({"base": base.name, "grid": {"sft.learning_rate": [0.002, 0.001]}}))
    assert cli.main(["submit", "--sweep", str(sweep), "--notebooks-dir", str(NOTEBOOKS)]) == 0
    first, second = sorted((tmp / "params" / "lr").glob("*.yaml"))
    # The same experiment as `first` under another name and folders, interrupted mid-SFT below.
    copy = yaml.safe_load(first.read_text())
    copy["common"] = {key: value.replace(first.stem, "requeued") if isinstance(value, str) else value
                      for key, value in copy["common"].items()}
    requeued = tmp / "params" / "requeued.yaml"
    requeued.write_text(yaml.safe_dump(copy, sort_keys=False))
    assert cli.main(["submit", str(requeued), "--notebooks-dir", str(NOTEBOOKS)]) == 0

    deadline = time.monotonic() + TIMEOUT_S
    runs = {name: tmp / "runs" / name for name in (first.stem, second.stem, "requeued")}
    requeued_jobs = _jobs(runs["requeued"])
    sft_job = requeued_jobs["20_sft"]
    sft_log = runs["requeued"] / "slurm" / f"20_sft-{sft_job}.log"
    _requeue_mid_stage(sft_log, sft_job, deadline)
    all_jobs = [job for run in runs.values() for job in _jobs(run).values()]
    while subprocess.run(["squeue", "--noheader", "--jobs", ",".join(all_jobs)], capture_output=True,
                         text=True, check=False).stdout.strip():
        assert time.monotonic() < deadline, "Slurm jobs did not finish in time"
        time.sleep(3)
    return {"tmp": tmp, "names": [first.stem, second.stem], "runs": runs, "jobs": all_jobs, "sft_log": sft_log}


def test_both_sweep_experiments_complete_and_appear_in_the_report(cluster_runs) -> None:
    tmp = cluster_runs["tmp"]
    states = {job: _state(job) for job in cluster_runs["jobs"]}
    assert set(states.values()) == {"COMPLETED"}, states
    assert cli.main(["report", str(tmp / "results")]) == 0
    index = (tmp / "results" / "index.html").read_text()
    leaderboard = (tmp / "results" / "leaderboard.csv").read_text()
    for name in cluster_runs["names"]:
        metrics = json.loads((tmp / "results" / name / "metrics.json").read_text())
        assert "50_metric_analysis" in metrics
        assert f'href="{name}/20_sft.html"' in index and f'href="{name}/20_sft.noinput.html"' in index
        assert f"{name},sft," in leaderboard and f"{name},grpo," in leaderboard
    # Per-task logs hold papermill's live output of the stage.
    first_runs = cluster_runs["runs"][cluster_runs["names"][0]]
    log = next((first_runs / "slurm").glob("20_sft-*.log")).read_text()
    assert "Executing Cell" in log and "[medlib] 20_sft: finished" in log


def test_a_job_requeued_mid_stage_finishes_with_the_uninterrupted_metrics(cluster_runs) -> None:
    tmp = cluster_runs["tmp"]
    log = cluster_runs["sft_log"].read_text()
    assert "attempt 1 " in log and "attempt 2 " in log, "the SFT job was not restarted"
    assert "DUE TO JOB REQUEUE" in log
    reference = json.loads((tmp / "results" / cluster_runs["names"][0] / "metrics.json").read_text())
    requeued = json.loads((tmp / "results" / "requeued" / "metrics.json").read_text())
    assert _comparable(requeued) == _comparable(reference)
    states = json.loads((tmp / "results" / "requeued" / "stages.json").read_text())
    assert {state["status"] for state in states.values()} == {"completed"} and len(states) == 5
