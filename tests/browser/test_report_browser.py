"""`medlib report`'s results/index.html rendered in Chromium: its charts and training curves show, nothing is broken."""
from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
from browser_support import save_small_png

from medlib.pipeline.leaderboard import build_report

# $MEDLIB_REPORT_RESULTS points the test at real results (the README's screenshot is of the tiny profile's runs).


def group(task: str, primary: str, value: float, half_width: float, lower: bool = False) -> dict:
    """One task group of 50_metric_analysis's task_scores, as scoring.score_records writes it."""
    return {"dataset": "synthetic_lesions", "task": task, "primary": primary, "lower_is_better": lower,
            "metrics": {primary: value},
            "ci": {primary: {"value": value, "low": value - half_width, "high": value + half_width, "n": 200}}}


def experiment(root: Path, name: str, presence: float, mae: float) -> None:
    """A results folder with the files a finished run leaves: metrics, provenance, a notebook, curves."""
    folder = root / name
    (folder / "figures").mkdir(parents=True)
    scores = {checkpoint: {"groups": [group("vqa_closed", "exact_match", p, 0.05),
                                      group("counting", "mae", m, 0.2, lower=True)]}
              for checkpoint, p, m in (("base", 0.0, 2.5), ("sft", presence, mae))}
    metrics = {"50_metric_analysis": {"headline": {"base": {"accuracy": 0.0}, "sft": {"accuracy": presence}},
                                      "task_scores": scores}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "env.json").write_text(json.dumps({"git_commit": "0123456789abcdef", "device": "cpu"}))
    (folder / "params.resolved.yaml").write_text(f"10_data_exploration:\n  experiment: {name}\n")
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(10), [2.0 / (step + 1) for step in range(10)])
    ax.set_title("loss")
    fig.savefig(folder / "figures" / "20_sft_loss.png")
    plt.close(fig)


def test_results_index_renders_with_its_figures(page, tmp_path: Path, screenshots: Path) -> None:
    root = Path(os.environ.get("MEDLIB_REPORT_RESULTS") or tmp_path / "results")
    if "MEDLIB_REPORT_RESULTS" not in os.environ:
        experiment(root, "tiny_full", 0.93, 0.6)
        experiment(root, "tiny_lora", 0.55, 1.4)
    index = build_report(root, render=False)["index"]
    page.goto(index.resolve().as_uri())
    charts = page.locator("figure.chart svg")
    assert charts.count() >= 2  # the experiments compared, then each one's task scores
    for chart in charts.all():
        box = chart.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 150
    images = page.locator("section img")
    assert images.count() >= 1
    for image in images.all():  # every training-curve image found and decoded
        assert image.evaluate("img => img.complete && img.naturalWidth > 0"), image.get_attribute("src")
    assert page.locator("#comparison").is_visible()
    assert page.locator("table").first.locator("tr").count() >= 3  # header + one row per experiment checkpoint
    save_small_png(page.screenshot(full_page=False), screenshots / "results_index.png")
