"""Run a tiny twin (params/tiny/<name>.yaml) through every notebook it has, inside a temporary folder."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from medlib.pipeline.runner import run_experiment

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "params"
TINY = ROOT / "params" / "tiny"
ALL_STAGES = ("10_data_exploration", "20_sft", "30_grpo", "40_inference", "50_metric_analysis")


def profile(path: Path) -> dict[str, Any]:
    """A params file as a mapping of blocks."""
    return yaml.safe_load(path.read_text())


def run_twin(name: str, tmp: Path) -> tuple[Path, dict[str, Any]]:
    """`medlib run params/tiny/<name>.yaml` with runs and results under tmp; (results folder, metrics.json)."""
    common = profile(TINY / f"{name}.yaml")["common"]
    runs = tmp / "runs"
    overrides = [f"common.runs_dir={runs}", f"common.data_dir={runs}/data", f"common.model_id={runs}/base-model",
                 f"common.results_dir={tmp}/results"]
    questions = profile(TINY / f"{name}.yaml").get("inference", {}).get("flare_questions")
    if questions:  # the FLARE layout is written beside data_dir: follow it into tmp
        default_data = Path(common["data_dir"])
        layout = Path(questions).relative_to(default_data.with_name(default_data.name + "_flare2025"))
        overrides.append(f"inference.flare_questions={runs}/data_flare2025/{layout}")
    results = run_experiment(TINY / f"{name}.yaml", overrides=overrides, notebooks_dir=ROOT / "notebooks",
                             log_output=False)
    return results, json.loads((results / "metrics.json").read_text())


def task_groups(metrics: dict[str, Any], checkpoint: str) -> dict[str, dict[str, Any]]:
    """50_metric_analysis's scored groups of one checkpoint, by task."""
    groups = metrics["50_metric_analysis"]["task_scores"][checkpoint]["groups"]
    return {group["task"]: group for group in groups}


def expected_stages(name: str) -> list[str]:
    """The notebooks a twin runs: all five but those its `common.skip_stages` leaves out."""
    skipped = profile(TINY / f"{name}.yaml")["common"].get("skip_stages", [])
    return [stem for stem in ALL_STAGES if stem.split("_", 1)[1] not in skipped and stem not in skipped]


def check_chain(name: str, results: Path, metrics: dict[str, Any], runs: Path) -> None:
    """What every twin must leave: each stage's notebook and metrics, none for a left-out stage, the predictions."""
    stages = expected_stages(name)
    for stem in ALL_STAGES:
        assert (stem in metrics) == (stem in stages), f"{name}: {stem} ran: {stem in metrics}"
        assert (results / f"{stem}.html").exists() == (stem in stages), stem
    checkpoints = profile(TINY / f"{name}.yaml")["inference"]["checkpoints"]
    questions = metrics["40_inference"]["questions"]
    assert questions > 0
    for checkpoint in checkpoints:
        lines = (runs / "predictions" / f"{checkpoint}.jsonl").read_text().splitlines()
        assert len(lines) == questions, checkpoint
    assert list(metrics["50_metric_analysis"]["task_scores"]) == checkpoints


def check_ci(group: dict[str, Any]) -> None:
    """A headline metric with its 95% bootstrap interval around it."""
    primary = group["primary"]
    value, interval = group["metrics"][primary], group["ci"][primary]
    assert interval["confidence"] == 0.95 and interval["n_resamples"] > 0
    if value is None:  # FLARE's "nothing to score" (e.g. MAE ∞ when no answer parses) is written as null
        assert interval["low"] is None and interval["high"] is None, (primary, interval)
        return
    # the resampled means are summed in another order than the value: allow floating-point error at the edges
    assert interval["low"] - 1e-9 <= value <= interval["high"] + 1e-9, (primary, value, interval)


def check_rewards(name: str, results: Path, metrics: dict[str, Any], rewards: set[str]) -> None:
    """30_grpo trained with exactly the recipe's rewards and plotted a curve per reward logged, each by its name.

    A reward scoped to some tasks is logged only on steps that drew a question of those tasks, so a few-step
    twin logs a subset; every curve must still belong to the recipe, beside the weighted total.
    """
    grpo = metrics["30_grpo"]
    assert set(grpo["reward_weights"]) == rewards, f"{name}: {grpo['reward_weights']}"
    curves = {key.split("/")[1] for key in grpo["rewards"] if key.startswith("rewards/")}
    assert curves and curves <= rewards, f"{name}: curves {curves}"
    assert "reward" in grpo["rewards"]
    assert (results / "figures" / "30_grpo_rewards.png").stat().st_size > 0
