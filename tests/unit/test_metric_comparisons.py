"""Each checkpoint against the one before it: keys, signs, verdicts and the figure."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

from medlib.evaluation.metrics import comparisons


def _predictions(counts_right: int, presence_right: int, n: int = 60) -> list[dict]:
    """n counting and n presence questions; the first `*_right` answered correctly, the rest wrong."""
    rows = []
    for i in range(n):
        reference = str(i % 4)
        given = reference if i < counts_right else str((i % 4 + 2) % 4)
        rows.append({"id": f"c{i}", "task": "counting", "dataset": "synthetic", "answer": reference,
                     "raw": f"<think>t</think><answer>{given}</answer>"})
        reference = "yes" if i % 2 else "no"
        given = reference if i < presence_right else ("no" if reference == "yes" else "yes")
        rows.append({"id": f"p{i}", "task": "vqa_closed", "dataset": "synthetic", "answer": reference,
                     "choices": ["yes", "no"], "raw": f"<think>t</think><answer>{given}</answer>"})
    return rows


def test_consecutive_pairs_keyed_by_task_with_the_issue_keys() -> None:
    records = {"base": _predictions(0, 30), "sft": _predictions(40, 58), "grpo": _predictions(58, 58)}
    result = comparisons.stepwise_comparisons(records, ["base", "sft", "grpo"], n_resamples=300)
    assert list(result) == ["sft_vs_base", "grpo_vs_sft"]
    counting = result["grpo_vs_sft"]["counting"]
    assert {"metric", "difference", "ci_low", "ci_high", "p_value"} <= set(counting)
    assert counting["metric"] == "mae" and counting["lower_is_better"]
    assert counting["difference"] < 0 and counting["ci_high"] < 0  # MAE falls: an improvement
    assert counting["verdict"] == "better" and counting["p_value"] < 0.05
    assert math.isclose(counting["difference"], counting["grpo"] - counting["sft"])
    presence = result["grpo_vs_sft"]["vqa_closed"]
    assert presence["difference"] == 0 and presence["verdict"] == "unclear"
    assert result["sft_vs_base"]["vqa_closed"]["verdict"] == "better"


def test_a_worse_later_checkpoint_is_called_worse() -> None:
    records = {"sft": _predictions(58, 58), "grpo": _predictions(20, 58)}
    result = comparisons.stepwise_comparisons(records, ["sft", "grpo"], n_resamples=300)
    assert result["grpo_vs_sft"]["counting"]["verdict"] == "worse"
    assert comparisons.comparison_pairs(["base", "sft", "grpo"], against_first=True) == [
        ("base", "sft"), ("sft", "grpo"), ("base", "grpo")]
    assert comparisons.verdict({"ci_low": float("nan"), "ci_high": 1.0}) == "unclear"


def test_table_and_figure() -> None:
    records = {"base": _predictions(0, 30), "sft": _predictions(40, 58), "grpo": _predictions(50, 58)}
    result = comparisons.stepwise_comparisons(records, ["base", "sft", "grpo"], n_resamples=200)
    table = comparisons.comparisons_table(result)
    assert len(table) == 4 and set(table["comparison"]) == {"sft_vs_base", "grpo_vs_sft"}
    figure = comparisons.comparisons_figure(result)
    assert len(figure.axes) == 2
