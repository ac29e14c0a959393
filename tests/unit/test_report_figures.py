"""`medlib report`'s figures: per-task scores with CIs per checkpoint, training curves, experiments compared."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
from test_report import results_folder

from medlib.pipeline.leaderboard import build_report


def task_group(task: str, primary: str, value: float, low: float, high: float, lower: bool = False) -> dict:
    """One task group of a 50_metric_analysis `task_scores` block, as scoring.score_records writes it."""
    return {"dataset": "synthetic_lesions", "task": task, "primary": primary, "lower_is_better": lower,
            "metrics": {primary: value}, "ci": {primary: {"value": value, "low": low, "high": high, "n": 100}}}


def analysis(presence: dict[str, float], mae: dict[str, float]) -> dict:
    """A 50_metric_analysis block for checkpoints base/sft with presence exact match and counting MAE."""
    return {"headline": {name: {"accuracy": value} for name, value in presence.items()},
            "task_scores": {name: {"groups": [
                task_group("vqa_closed", "exact_match", presence[name], presence[name] - 0.05, presence[name] + 0.04),
                task_group("counting", "mae", mae[name], mae[name] - 0.1, mae[name] + 0.2, lower=True)]}
                for name in presence}}


def curves_png(folder: Path) -> None:
    """A saved training-curve figure, as 20_sft writes it."""
    (folder / "figures").mkdir()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [2.0, 1.0, 0.5])
    fig.savefig(folder / "figures" / "20_sft_loss.png")
    plt.close(fig)


def svgs(html: str) -> list[str]:
    """Every inline <svg>…</svg> of a page."""
    return re.findall(r"<svg.*?</svg>", html, flags=re.DOTALL)


def section(html: str, name: str) -> str:
    """The <section id=name> of the index."""
    return re.search(rf'<section id="{name}">.*?</section>', html, flags=re.DOTALL).group(0)


def test_each_experiment_shows_its_task_scores_with_intervals_and_its_curves(tmp_path: Path) -> None:
    root = tmp_path / "results"
    tiny = results_folder(root, "tiny", {"50_metric_analysis": analysis({"base": 0.0, "sft": 0.93},
                                                                        {"base": 2.4, "sft": 0.61})})
    curves_png(tiny)
    index = build_report(root, render=False)["index"].read_text()
    body = section(index, "tiny")
    (chart,) = svgs(body)
    for text in ("vqa_closed: exact_match", "counting: mae (lower is better)", "0.93", "0.61", "2.40", "sft", "base"):
        assert text in chart, text
    assert "95% bootstrap CI" in chart
    assert 'src="tiny/figures/20_sft_loss.png"' in body and "SFT training curves" in body
    assert "30_grpo_rewards.png" not in body  # only figures that exist are shown
    assert 'id="comparison"' not in index  # one experiment: nothing to compare


def test_experiments_are_compared_task_by_task(tmp_path: Path) -> None:
    root = tmp_path / "results"
    results_folder(root, "lora", {"50_metric_analysis": analysis({"sft": 0.71}, {"sft": 1.20})})
    results_folder(root, "full", {"50_metric_analysis": analysis({"sft": 0.93}, {"sft": 0.61})})
    results_folder(root, "unscored", {"10_data_exploration": {"records": {"train": 1}}})
    index = build_report(root, render=False)["index"].read_text()
    (chart,) = svgs(section(index, "comparison"))
    for text in ("lora · sft", "full · sft", "0.71", "0.93", "1.20", "0.61", "counting: mae (lower is better)"):
        assert text in chart, text
    assert "unscored" not in chart
    assert not svgs(section(index, "unscored"))  # no scores, no chart; the section and its problems remain
    assert "no 50_metric_analysis metrics yet" in section(index, "unscored")
