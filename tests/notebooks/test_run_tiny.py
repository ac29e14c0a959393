"""Execute every notebook through the papermill runner on the tiny profile."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medlib.pipeline.runner import run_experiment

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "params" / "tiny.yaml"
STAGES = ["10_data_exploration", "20_sft", "30_grpo", "40_inference", "50_metric_analysis"]

# The tiny profile shrunk to seconds per stage: the chain, not the learning, is under test.
SMOKE = [
    "data_exploration.synthetic_sizes={train: 48, validation: 16, test: 16}",
    "sft.max_steps=6", "sft.eval_steps=3", "sft.max_eval_samples=8", "sft.logging_steps=2",
    "sft.per_device_train_batch_size=8",
    "grpo.max_steps=2", "grpo.max_train_samples=16", "grpo.logging_steps=1",
    "inference.ablation_max_samples=8", "inference.robustness_max_samples=4",
]


def isolated(tmp: Path) -> list[str]:
    """Overrides that keep a run's data, model, checkpoints and results inside `tmp`."""
    return [f"common.runs_dir={tmp}/runs", f"common.data_dir={tmp}/runs/data",
            f"common.model_id={tmp}/runs/base-model", f"common.results_dir={tmp}/results"]


def run_tiny(tmp: Path, extra: list[str]) -> dict:
    """Run the whole chain into tmp and return metrics.json."""
    results = run_experiment(TINY, overrides=isolated(tmp) + extra, notebooks_dir=ROOT / "notebooks",
                             log_output=False)
    return json.loads((results / "metrics.json").read_text())


def comparable(metrics: dict) -> dict:
    """Metrics without wall-clock times and paths, which legitimately differ between runs."""
    sft = {k: v for k, v in metrics["20_sft"].items() if k not in ("train_runtime_s", "checkpoint")}
    return {"sft": sft, "grpo": metrics["30_grpo"]["rewards"], "scores": metrics["50_metric_analysis"]["scores"]}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> tuple[Path, dict, dict]:
    """Two identical smoke runs of the chain in separate folders."""
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    return first, run_tiny(first, SMOKE), run_tiny(second, SMOKE)


def test_every_stage_writes_its_notebook_html_and_metrics(smoke_runs):
    folder, metrics, _ = smoke_runs
    results = folder / "results"
    for stem in STAGES:
        assert (results / f"{stem}.ipynb").stat().st_size > 0
        assert "<html" in (results / f"{stem}.html").read_text()[:2000].lower()
        assert stem in metrics
    for name in ("params.resolved.yaml", "env.json", "figures/20_sft_loss.png", "figures/30_grpo_rewards.png",
                 "figures/50_accuracy.png", "tables/50_comparison.csv"):
        assert (results / name).exists(), name
    for checkpoint in ("base", "sft", "grpo"):
        lines = (folder / "runs" / "predictions" / f"{checkpoint}.jsonl").read_text().splitlines()
        assert len(lines) == 16
    assert metrics["20_sft"]["global_step"] == 6
    assert metrics["20_sft"]["last_train_loss"] < metrics["20_sft"]["first_train_loss"]  # the loss falls
    env = json.loads((results / "env.json").read_text())
    assert env["packages"]["transformers"] and env["device"] == "cpu"


def test_the_chain_is_deterministic(smoke_runs):
    _, first, second = smoke_runs
    assert comparable(first) == comparable(second)


def test_a_failing_stage_names_notebook_and_cell(tmp_path):
    from medlib.pipeline.runner import StageFailed

    with pytest.raises(StageFailed) as failure:
        run_experiment(TINY, overrides=isolated(tmp_path) + ["common.data_dir=/nonexistent/records"],
                       stages=["20_sft"], notebooks_dir=ROOT / "notebooks", log_output=False)
    message = str(failure.value)
    assert "20_sft" in message and "cell" in message and "FileNotFoundError" in message


def test_the_tiny_profile_learns_from_the_image(tmp_path):
    """The full embedded default: SFT must beat the base model, and answer the image question."""
    analysis = run_tiny(tmp_path, [])["50_metric_analysis"]
    headline = analysis["headline"]
    base, sft = headline["base"], headline["sft"]
    assert sft["format_valid"] > base["format_valid"]
    assert sft["accuracy"] > base["accuracy"]
    assert sft["image_question_accuracy"] >= 0.8 > headline["sft"]["image_question_chance"] + 0.25
    # Without its image the presence answer falls: to about chance with another record's image, and at
    # least that far with a blank one (the tiny model's format breaks on a flat grey image), paired CIs below 0.
    chance = sft["image_question_chance"]
    beyond = analysis["beyond_anchors"]
    ablated = {row["variant"]: row for row in beyond["image_ablation"]
               if row["checkpoint"] == "sft" and row["question_type"] == "presence"}
    assert ablated["wrong"]["with_image"] >= 0.8 and abs(ablated["wrong"]["ablated"] - chance) <= 0.2
    assert ablated["blank"]["ablated"] <= chance + 0.2
    assert ablated["wrong"]["high"] < 0 and ablated["blank"]["high"] < 0
    assert beyond["calibration"]["sft"]["all"]["ece"] >= 0 and len(beyond["calibration"]["sft"]["all"]["reliability"]) == 10
    # Option probabilities by right answer: SFT tells yes from no, and no lesion from some (on every seed measured,
    # README "Across seeds"), where the random-init base model's rows are alike.
    tables = beyond["answer_probabilities"]
    assert tables["sft"]["presence"]["right_answer_probability"] >= 0.8
    count = tables["sft"]["count"]
    assert count["options"] == ["0", "1", "2", "3"] and count["matrix"][0][0] >= 0.8
    assert count["right_answer_probability"] >= tables["base"]["count"]["right_answer_probability"] + 0.1
    assert {row["perturbation"] for row in beyond["robustness"]} == {"noise", "contrast", "blur", "jpeg", "downscale"}
