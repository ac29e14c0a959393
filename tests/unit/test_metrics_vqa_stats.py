"""VQA metrics (SQuAD conventions, Med-R1 answer tags) and the bootstrap / paired-test statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medlib.evaluation.metrics import stats, vqa
from medlib.evaluation.metrics.core import accuracy


@pytest.mark.parametrize(
    ("prediction", "reference", "em", "f1"),
    [
        ("The left lung.", "left lung", 1.0, 1.0),
        ("left upper lung", "left lung", 0.0, 0.8),
        ("right", ["left", "Right!"], 1.0, 1.0),
        ("", "", 1.0, 1.0),
        ("", "left", 0.0, 0.0),
        (None, "left", 0.0, 0.0),
        ("a an the", "", 1.0, 1.0),
    ],
)
def test_exact_match_and_token_f1(prediction: str | None, reference: object, em: float, f1: float) -> None:
    assert vqa.exact_match(prediction, reference) == em
    assert vqa.token_f1(prediction, reference) == pytest.approx(f1)


def test_numeric_match_tolerance() -> None:
    assert vqa.numeric_match("4.5 cm", "4.6 cm") == 1.0
    assert vqa.numeric_match("4 cm", "5 cm") == 0.0
    assert vqa.numeric_match("1 or 2", "2") == 0.0  # several numbers: no numeric reading
    assert vqa.numeric_match("about 10", "10.4", rel_tol=0.05) == 1.0


def test_answer_tag_accuracy_needs_the_tag() -> None:
    raws = ["<think>x</think><answer>Yes</answer>", "yes", "<answer>no</answer>"]
    assert vqa.answer_tag_accuracy(raws, ["yes", "yes", "yes"]) == pytest.approx(1 / 3)


def test_vqa_scores_split_closed_and_open() -> None:
    scores = vqa.vqa_scores(["yes", "no", "left lung"], ["yes", "yes", "left lung"])
    assert scores["closed_accuracy"] == 0.5 and scores["n_closed"] == 2
    assert scores["open_accuracy"] == 1.0 and scores["n_open"] == 1
    assert scores["exact_match"] == pytest.approx(2 / 3)


@given(st.text(max_size=30), st.text(max_size=30))
def test_vqa_metrics_are_total(prediction: str, reference: str) -> None:
    for value in (vqa.exact_match(prediction, reference), vqa.token_f1(prediction, reference),
                  vqa.numeric_match(prediction, reference)):  # fmt: skip
        assert 0.0 <= value <= 1.0


# --- statistics -----------------------------------------------------------------------------------


def test_bootstrap_ci_brackets_the_value_and_is_reproducible() -> None:
    rng = np.random.default_rng(1)
    references = list(rng.integers(0, 2, 200))
    predictions = [r if rng.random() < 0.8 else 1 - r for r in references]
    first = stats.bootstrap_ci(accuracy, references, predictions, n_resamples=300, seed=3)
    second = stats.bootstrap_ci(accuracy, references, predictions, n_resamples=300, seed=3)
    assert first == second
    assert first["low"] < first["value"] < first["high"]
    # binomial standard error sqrt(.8*.2/200) = 0.028: the 95% interval spans about ±0.055
    assert 0.08 < first["high"] - first["low"] < 0.14


def test_bootstrap_mean_ci_agrees_with_generic() -> None:
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    fast = stats.bootstrap_mean_ci(values, n_resamples=2000, seed=0)
    assert fast["value"] == pytest.approx(0.75)
    assert fast["low"] <= 0.5 and fast["high"] == 1.0
    assert math.isnan(stats.bootstrap_mean_ci([1.0])["low"])


def test_paired_tests_detect_a_real_difference_and_not_a_null_one() -> None:
    rng = np.random.default_rng(0)
    references = list(rng.integers(0, 2, 120))
    weak = [r if rng.random() < 0.55 else 1 - r for r in references]
    strong = [r if rng.random() < 0.95 else 1 - r for r in references]
    better = stats.paired_bootstrap(accuracy, references, weak, strong, n_resamples=500)
    assert better["difference"] > 0.25 and better["low"] > 0 and better["p_value"] < 0.01
    assert stats.permutation_test(accuracy, references, weak, strong, n_permutations=300)["p_value"] < 0.01
    same = stats.permutation_test(accuracy, references, weak, list(weak), n_permutations=200)
    assert same["difference"] == 0.0 and same["p_value"] == 1.0


def test_paired_tests_need_the_same_items() -> None:
    with pytest.raises(ValueError, match="same items"):
        stats.paired_bootstrap(accuracy, [1, 0], [1], [1, 0])


@pytest.mark.parametrize(
    ("baseline", "value", "lower_is_better", "expected"),
    [(0.5, 0.75, False, 50.0), (2.0, 1.0, True, 50.0), (0.0, 1.0, False, float("nan"))],
)
def test_improvement_percent(baseline: float, value: float, lower_is_better: bool, expected: float) -> None:
    result = stats.improvement_percent(baseline, value, lower_is_better)
    assert result == pytest.approx(expected, nan_ok=True)
