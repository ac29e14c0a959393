"""Hand-worked cases and scikit-learn comparisons for medlib.evaluation.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from medlib.evaluation.metrics import (
    accuracy,
    balanced_accuracy,
    mean_absolute_error,
    normalize_text,
    score_predictions,
)

THINK_ANSWER = "<think>looked</think><answer>{}</answer>"


def _prediction(task: str, raw: str, parsed: object, answer: str, **extra: object) -> dict:
    """A prediction record in the DESIGN contract shape."""
    return {
        "id": extra.pop("id", f"{task}-{answer}-{raw}"),
        "task": task,
        "dataset": "unit",
        "raw": raw,
        "parsed": parsed,
        "parse_error": None if parsed is not None else "unparsed",
        "answer": answer,
        **extra,
    }


def test_normalize_text_is_squad_style() -> None:
    assert normalize_text("  The  Cat, an (old) one!  ") == "cat old one"


def test_accuracy_counts_none_as_wrong() -> None:
    assert accuracy(["a", "b", "c", "d"], ["a", None, "c", "x"]) == 0.5


def test_accuracy_empty_is_nan() -> None:
    assert math.isnan(accuracy([], []))


def test_metrics_reject_unpaired_lists() -> None:
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="pair up"):
        balanced_accuracy(["a"], [])
    with pytest.raises(ValueError, match="pair up"):
        mean_absolute_error([1.0], [1.0, 2.0])


def test_balanced_accuracy_hand_worked_with_unparsed() -> None:
    # recall(a) = 1/2 (one unparsed), recall(b) = 2/2 -> mean 0.75
    assert balanced_accuracy(["a", "a", "b", "b"], ["a", None, "b", "b"]) == pytest.approx(0.75)


def test_balanced_accuracy_unparsed_never_matches_a_class() -> None:
    assert balanced_accuracy(["a", "b"], [None, None]) == 0.0


def test_balanced_accuracy_mixes_int_labels_and_unparsed() -> None:
    assert balanced_accuracy([1, 1, 2, 2], [1, 1, None, 2]) == pytest.approx(0.75)


def test_balanced_accuracy_empty_is_nan_and_none_reference_rejected() -> None:
    assert math.isnan(balanced_accuracy([], []))
    with pytest.raises(ValueError, match="None"):
        balanced_accuracy([None], ["a"])


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(5))
def test_balanced_accuracy_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    references = rng.choice(["A", "B", "C", "D"], size=200).tolist()
    predictions = rng.choice(["A", "B", "C", "D", "E"], size=200).tolist()
    assert balanced_accuracy(references, predictions) == pytest.approx(
        sk_metrics.balanced_accuracy_score(references, predictions)
    )


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(5))
def test_balanced_accuracy_with_none_matches_sklearn_on_wrong_label(seed: int) -> None:
    rng = np.random.default_rng(seed)
    references = rng.choice(["yes", "no"], size=100).tolist()
    predictions = [None if rng.random() < 0.3 else p for p in rng.choice(["yes", "no"], size=100)]
    # An unparsed answer must score exactly like a wrong label outside the reference classes.
    as_wrong = ["never-a-class" if p is None else p for p in predictions]
    assert balanced_accuracy(references, predictions) == pytest.approx(
        sk_metrics.balanced_accuracy_score(references, as_wrong)
    )


def test_mean_absolute_error_hand_worked() -> None:
    result = mean_absolute_error([1.0, 2.0, 3.0, 4.0], [2.0, None, 1.0, 4.0])
    assert result == {"mae": pytest.approx(1.0), "n_scored": 3, "n_unparsed": 1}


def test_mean_absolute_error_all_unparsed_is_nan() -> None:
    result = mean_absolute_error([1.0, 2.0], [None, None])
    assert math.isnan(result["mae"])
    assert (result["n_scored"], result["n_unparsed"]) == (0, 2)


@pytest.mark.parametrize("seed", range(5))
def test_mean_absolute_error_matches_sklearn_on_parsed(seed: int) -> None:
    rng = np.random.default_rng(seed)
    references = rng.normal(size=50).tolist()
    values = rng.normal(size=50).tolist()
    predictions = [None if rng.random() < 0.2 else v for v in values]
    scored = [(r, p) for r, p in zip(references, predictions) if p is not None]
    expected = sk_metrics.mean_absolute_error([r for r, _ in scored], [p for _, p in scored])
    result = mean_absolute_error(references, predictions)
    assert result["mae"] == pytest.approx(expected)
    assert result["n_scored"] + result["n_unparsed"] == 50
    assert result["n_unparsed"] == predictions.count(None)


def _mixed_predictions() -> list[dict]:
    """Hand-built predictions: presence questions, counts and an open question."""
    presence = {"question_type": "presence"}
    return [
        _prediction("vqa_closed", THINK_ANSWER.format("yes"), "yes", "yes", meta=presence),
        _prediction("vqa_closed", THINK_ANSWER.format("yes"), "yes", "no", meta=presence),
        _prediction("vqa_closed", "no tags at all", None, "no", meta=presence),
        _prediction("vqa_closed", THINK_ANSWER.format("no"), "no", "no", meta=presence),
        _prediction("counting", THINK_ANSWER.format("3"), 3, "3"),
        _prediction("counting", THINK_ANSWER.format("5"), 5, "3"),
        _prediction("counting", "<answer>many</answer>", None, "2"),
        _prediction("vqa_open", THINK_ANSWER.format("The left lung"), "The left lung", "left lung"),
    ]


def test_score_predictions_overall() -> None:
    overall = score_predictions(_mixed_predictions())["overall"]
    assert overall["n"] == 8
    assert overall["format_valid"] == pytest.approx(6 / 8)
    assert overall["parsed"] == pytest.approx(6 / 8)
    assert overall["accuracy"] == pytest.approx(4 / 8)


def test_score_predictions_groups_by_question_type_then_task() -> None:
    groups = score_predictions(_mixed_predictions())["by_question_type"]
    assert sorted(groups) == ["counting", "presence", "vqa_open"]

    presence = groups["presence"]
    assert presence["n"] == 4
    assert presence["accuracy"] == pytest.approx(2 / 4)
    assert presence["format_valid"] == pytest.approx(3 / 4)
    # references yes, no, no, no; recall(yes) = 1, recall(no) = 1/3
    assert presence["balanced_accuracy"] == pytest.approx((1 + 1 / 3) / 2)
    assert presence["chance"] == pytest.approx(1 / 2)
    assert "mae" not in presence

    counting = groups["counting"]
    assert counting["accuracy"] == pytest.approx(1 / 3)
    assert counting["mae"] == pytest.approx(1.0)
    assert counting["n_unparsed"] == 1
    assert "balanced_accuracy" not in counting

    assert groups["vqa_open"]["accuracy"] == 1.0
    assert "mae" not in groups["vqa_open"] and "chance" not in groups["vqa_open"]


def test_score_predictions_chance_uses_choices() -> None:
    predictions = [
        _prediction("classification", THINK_ANSWER.format("A"), "A", "A", choices=["x", "y", "z"]),
        _prediction("classification", THINK_ANSWER.format("B"), "B", "A", choices=["x", "y"]),
    ]
    scores = score_predictions(predictions)["by_question_type"]["classification"]
    assert scores["chance"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert scores["balanced_accuracy"] == pytest.approx(0.5)


def test_score_predictions_regression_tolerance() -> None:
    predictions = [
        _prediction("regression", THINK_ANSWER.format("45"), 45.0, "45%"),
        _prediction("regression", THINK_ANSWER.format("47"), 47.0, "45%"),
    ]
    scores = score_predictions(predictions)["by_question_type"]["regression"]
    assert scores["accuracy"] == 0.5
    assert scores["mae"] == pytest.approx(1.0)
    assert scores["n_unparsed"] == 0


def test_score_predictions_require_think_flag() -> None:
    predictions = [_prediction("vqa_closed", "<answer>yes</answer>", "yes", "yes")]
    assert score_predictions(predictions)["overall"]["format_valid"] == 0.0
    assert score_predictions(predictions, require_think=False)["overall"]["format_valid"] == 1.0


def test_score_predictions_rejects_unparseable_reference() -> None:
    predictions = [_prediction("counting", "<answer>3</answer>", 3, "several", id="q7")]
    with pytest.raises(ValueError, match="'q7'"):
        score_predictions(predictions)


def test_score_predictions_empty() -> None:
    scores = score_predictions([])
    assert scores["by_question_type"] == {}
    assert scores["overall"]["n"] == 0
    assert math.isnan(scores["overall"]["accuracy"])


def test_label_groups_and_confusion_matrix() -> None:
    from medlib.evaluation.metrics import confusion_matrix, label_groups

    predictions = [
        _prediction("vqa_closed", THINK_ANSWER.format("yes"), "yes", "yes", meta={"question_type": "presence"}),
        _prediction("vqa_closed", "garbage", None, "no", meta={"question_type": "presence"}),
        _prediction("counting", THINK_ANSWER.format("2"), 2, "2"),
    ]
    groups = label_groups(predictions)
    assert groups == {"presence": (["yes", "no"], ["yes", None])}
    matrix = confusion_matrix(*groups["presence"])
    assert matrix == {"labels": ["no", "yes", "<unparsed>"], "matrix": [[0, 0, 1], [0, 1, 0], [0, 0, 0]]}


def test_summary_scores_reports_with_an_empty_reference() -> None:
    from medlib.evaluation.metrics import score_predictions

    reports = [{"id": "r1", "task": "report_generation", "raw": "<think>x</think><answer>Normal.</answer>",
                "parsed": "Normal.", "answer": ""},
               {"id": "r2", "task": "report_generation", "raw": "<think>x</think><answer>Normal.</answer>",
                "parsed": "Normal.", "answer": "normal"}]
    group = score_predictions(reports)["by_question_type"]["report_generation"]
    assert (group["n"], group["accuracy"]) == (2, 0.5)
