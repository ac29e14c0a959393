"""Worst-error selection and the analysis figures of notebook 50."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from medlib import plots  # noqa: E402
from medlib.evaluation import metrics


def prediction(i: str, task: str, answer: str, parsed: object, images: list[str] | None = None) -> dict:
    """A prediction in the prediction contract of docs/architecture.md (only the fields the analysis reads)."""
    return {"id": i, "task": task, "dataset": "d", "checkpoint": "sft", "raw": "", "parsed": parsed,
            "answer": answer, "choices": None, "images": images or [], "meta": {}}


def test_worst_errors_rank_unparsed_then_numeric_distance():
    predictions = [prediction("right", "counting", "2", 2), prediction("off-by-1", "counting", "2", 3),
                   prediction("off-by-5", "counting", "2", 7), prediction("unparsed", "counting", "2", None),
                   prediction("wrong-label", "vqa_closed", "yes", "no")]
    assert [p["id"] for p in metrics.worst_errors(predictions, n=10)] == [
        "unparsed", "off-by-5", "off-by-1", "wrong-label"]
    assert [p["id"] for p in metrics.worst_errors(predictions, n=2)] == ["unparsed", "off-by-5"]
    assert metrics.core.error_size(predictions[0]) == 0.0


def test_figures_have_one_panel_per_item(tmp_path):
    Image.new("L", (64, 64)).save(tmp_path / "a.png")
    detection = prediction("box", "detection", "[[1, 1, 20, 20]]", [[5.0, 5.0, 30.0, 30.0]], ["a.png"])
    gallery = plots.error_gallery([detection, prediction("x", "vqa_closed", "yes", None, ["a.png"])], tmp_path)
    assert sum(ax.axison for ax in gallery.axes) == 0 and len(gallery.axes[0].patches) == 2  # both boxes drawn
    confusion = plots.confusion_figures({"sft/presence": metrics.confusion_matrix(["yes", "no"], ["yes", None])})
    assert confusion.axes[0].get_title() == "sft/presence"
    heat = plots.metric_heatmap(pd.DataFrame({"base": {"d · t": 0.1}, "sft": {"d · t": 0.9}}), "t")
    assert [t.get_text() for t in heat.axes[0].texts] == ["0.10", "0.90"]
