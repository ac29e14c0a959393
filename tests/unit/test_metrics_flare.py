"""FLARE 2025 conventions: each quirk reproduced by the `flare` parser and fixed by `robust`, each bug fixed in both."""

from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, f1_score

from medlib.evaluation.boxes import box_iou, match_boxes
from medlib.evaluation.metrics import flare
from medlib.evaluation.metrics.flare import (
    classification_scores,
    detection_scores,
    flare_label,
    instance_detection_scores,
    multi_label_scores,
    numeric_scores,
    parse_flare,
    parse_item,
    parse_reference,
    task_metric,
)

# --- quirks: reproduced by `flare`, fixed by `robust` --------------------------------------------------


@pytest.mark.parametrize(
    ("task", "text", "flare_value", "robust_value"),
    [
        ("classification", "a mass in the left lung", "A", "a mass in the left lung"),
        ("detection", "[[10.5, 20.5, 30.5, 40.5]]", [], [[10.5, 20.5, 30.5, 40.5]]),
        ("detection", "[-5, 10, 20, 30]", [[5, 10, 20, 30]], [[-5.0, 10.0, 20.0, 30.0]]),
        ("instance_detection", ' {"1": [[1, 2, 3, 4]]}', {}, {"1": [[1.0, 2.0, 3.0, 4.0]]}),
        ("instance_detection", '{"1": [[1, 2, 3, 4]]}\n', {}, {"1": [[1.0, 2.0, 3.0, 4.0]]}),
        ("counting", "1,234", 234, 1234),
        ("regression", "5-10%", -10.0, 5.0),
        ("regression", ".75", 75.0, 0.75),
    ],
)
def test_flare_quirks_and_robust_fixes(task: str, text: str, flare_value: object, robust_value: object) -> None:
    assert parse_item(task, text, "flare") == flare_value
    assert parse_item(task, text, "robust") == robust_value


def test_iou_at_threshold_is_not_a_match_in_flare_but_is_in_robust() -> None:
    # IoU([0,0,2,2], [0,0,2,1]) = 2 / 4 = 0.5 exactly.
    assert box_iou([0, 0, 2, 2], [0, 0, 2, 1]) == 0.5
    assert match_boxes([[0, 0, 2, 2]], [[0, 0, 2, 1]], 0.5, strict=True) == (0, 1, 1)
    assert match_boxes([[0, 0, 2, 2]], [[0, 0, 2, 1]], 0.5, strict=False) == (1, 0, 0)
    assert task_metric("detection", "flare")([[[0, 0, 2, 1]]], [[[0, 0, 2, 2]]])["f1"] == 0.0
    assert task_metric("detection", "robust")([[[0, 0, 2, 1]]], [[[0, 0, 2, 2]]])["f1"] == 1.0


# --- bugs of the original, fixed in both -------------------------------------------------------------


@pytest.mark.parametrize("parser", ["flare", "robust"])
def test_binary_classification_reports_real_balanced_accuracy(parser: str) -> None:
    references = ["benign", "benign", "malignant", "malignant"]
    predictions = ["benign", "malignant", "malignant", "malignant"]
    refs = [parse_reference("classification", r, parser) for r in references]
    preds = [parse_item("classification", p, parser) for p in predictions]
    scores = task_metric("classification", parser)(refs, preds)
    assert scores["balanced_accuracy"] == pytest.approx(0.75)
    assert scores["accuracy"] == pytest.approx(0.75)


@pytest.mark.parametrize("parser", ["flare", "robust"])
@pytest.mark.parametrize("text", ["NaN", "inf", "-inf", "Infinity"])
def test_non_finite_regression_is_unparseable_not_infinite(parser: str, text: str) -> None:
    prediction = parse_item("regression", text, parser)
    scores = numeric_scores([3.0, 5.0], [prediction, 6.0])
    assert scores == {"mae": 1.0, "rmse": 1.0, "n_scored": 1, "n_unparsed": 1}


def test_malformed_instance_box_is_skipped_and_counted() -> None:
    # The original keeps a 3-coordinate box after a good first box and then crashes in its threshold sweep.
    prediction = parse_flare("instance_detection", '{"1": [[0, 0, 10, 10], [1, 2, 3]]}')
    assert prediction == {"1": [[0, 0, 10, 10], [1, 2, 3]]}
    scores = instance_detection_scores([{"1": [[0, 0, 10, 10]]}], [prediction])
    assert scores["n_malformed_boxes"] == 1
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 0, 0)
    assert set(scores["f1_at"]) == {"0.30", "0.40", "0.50", "0.60", "0.70"}


# --- hand-worked parsing rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("The answer is C.", "C"),
        ("(d) pneumonia", "D"),
        ("Answer: E", "E"),
        ("pneumonia", "pneumonia"),
        ("it looks like Pneumonia.", "Pneumonia"),
        ("F", "F"),
        ("", ""),
        ("<think>maybe B</think><answer>C</answer>", "C"),
        ("system\nyou are\nuser\nq\nassistant\nB", "B"),
    ],
)
def test_flare_classification_parse(text: str, expected: str) -> None:
    assert parse_flare("classification", text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("effusion; edema", ["effusion", "edema"]),
        ("Effusion, Edema", ["Effusion", "Edema"]),
        ("['a', 'b']", ["a", "b"]),
        ("[a; b, c]", ["a", "b, c"]),
        ("single", ["single"]),
        ("", [""]),
    ],
)
def test_flare_multi_label_parse(text: str, expected: list[str]) -> None:
    assert parse_flare("multi_label", text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[1, 2, 3, 4]]", [[1, 2, 3, 4]]),
        ("[[1,2,3,4],[5,6,7,8]]", [[1, 2, 3, 4], [5, 6, 7, 8]]),
        ('{"a": [[1, 2, 3, 4]], "b": [[5, 6, 7, 8], [1, 2]]}', [[1, 2, 3, 4], [5, 6, 7, 8]]),
        ('{"a": [[1.9, 2, 3, 4]]}', [[1, 2, 3, 4]]),
        ("no boxes", []),
    ],
)
def test_flare_detection_parse(text: str, expected: list) -> None:
    assert parse_flare("detection", text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("There are 3 cells", 3),
        ("The total count is 42.", 42),
        ("1. look 2. count 17 cells", 17),
        ("To accurately count the cells we need to zoom", None),
        ("approximately 12 or 15", 12),
        ("none", None),
        ("7", 7),
    ],
)
def test_flare_count_parse(text: str, expected: int | None) -> None:
    assert parse_flare("counting", text) == expected


def test_flare_references() -> None:
    assert parse_reference("counting", "3.7", "flare") == 3
    assert parse_reference("regression", "45%", "flare") is None
    assert parse_reference("regression", "nan", "flare") is None
    assert parse_reference("classification", " Pneumonia ", "flare") == " Pneumonia "
    assert parse_reference("regression", "45%", "robust") == 45.0


def test_flare_label_normalisation() -> None:
    assert [flare_label(x) for x in ["b", " Pneumonia  X ", None, "AB"]] == ["B", "pneumonia x", "", "ab"]


def test_unknown_parser_and_task_are_errors() -> None:
    with pytest.raises(ValueError, match="'loose'"):
        parse_item("counting", "3", "loose")
    with pytest.raises(ValueError, match="'vqa_open'"):
        parse_flare("vqa_open", "yes")


# --- metrics against scikit-learn and by hand ------------------------------------------------------------


@given(
    st.lists(st.tuples(st.sampled_from("ABC"), st.sampled_from("ABCD") | st.none()), min_size=1, max_size=30)
)
def test_classification_matches_sklearn(pairs: list[tuple[str, str | None]]) -> None:
    references = [r for r, _ in pairs]
    predictions = [p for _, p in pairs]
    scores = classification_scores(references, predictions)
    filled = [p or flare.UNPARSED for p in predictions]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about predicted classes absent from the references
        expected = balanced_accuracy_score(references, filled)
    assert scores["balanced_accuracy"] == pytest.approx(expected)
    assert scores["f1_weighted"] == pytest.approx(f1_score(references, filled, average="weighted", zero_division=0))


def test_multi_label_hand_worked() -> None:
    references = [["a", "b"], ["c"], []]
    predictions = [["a"], ["c", "d"], ["x"]]
    scores = multi_label_scores(references, predictions)
    # sample 1: p=1, r=.5, f1=2/3; sample 2: p=.5, r=1, f1=2/3; sample 3 skipped (no reference labels)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["precision"] == pytest.approx(0.75)
    assert scores["recall"] == pytest.approx(0.75)
    assert scores["n_scored"] == 2
    # micro: tp=2, fp=1, fn=1 -> 2/3; macro over a, b, c, d: 1, 0, 1, 0 -> 0.5
    assert scores["f1_micro"] == pytest.approx(2 / 3)
    assert scores["f1_macro"] == pytest.approx(0.5)


def test_detection_pools_counts_and_sweeps_thresholds() -> None:
    references = [[[0, 0, 10, 10], [20, 20, 30, 30]], [[0, 0, 10, 10]]]
    # IoU 0.64 with the first box; an extra box; nothing for the second image.
    predictions = [[[1, 1, 9, 9], [50, 50, 60, 60]], None]
    scores = detection_scores(references, predictions)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 1, 2)
    assert scores["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert scores["f1_at"]["0.70"] == 0.0
    assert scores["f1_at"]["0.60"] == pytest.approx(scores["f1"])


def test_detection_greedy_order_and_ties() -> None:
    # Two identical predictions, one reference: the first takes it, the second is a false positive.
    assert match_boxes([[0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0, 1, 1]], 0.5) == (1, 1, 0)
    assert box_iou([0, 0, 1, 1], [1, 1, 2, 2]) == 0.0
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_instance_detection_matches_within_keys() -> None:
    references = [{"1": [[0, 0, 10, 10]], "2": [[20, 20, 30, 30]]}]
    predictions = [{"1": [[20, 20, 30, 30]], "2": [[20, 20, 30, 30]]}]
    scores = instance_detection_scores(references, predictions)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 1, 1)


def test_empty_inputs_are_nan_or_zero_not_errors() -> None:
    assert math.isnan(classification_scores([], [])["balanced_accuracy"])
    assert math.isnan(multi_label_scores([], [])["f1"])
    assert detection_scores([], [])["f1"] == 0.0
    assert math.isnan(numeric_scores([], [])["mae"])


@given(task=st.sampled_from(flare.FLARE_TASKS), text=st.text(max_size=40), parser=st.sampled_from(flare.PARSERS))
def test_parsers_and_metrics_never_raise(task: str, text: str, parser: str) -> None:
    prediction = parse_item(task, text, parser)
    reference = parse_reference(task, text, parser)
    if reference is None:
        return
    scores = task_metric(task, parser)([reference], [prediction])
    primary = {"classification": "balanced_accuracy", "counting": "mae", "regression": "mae"}.get(task, "f1")
    value = scores[primary]
    assert isinstance(value, float)
    assert math.isfinite(value) or scores.get("n_scored") == 0
