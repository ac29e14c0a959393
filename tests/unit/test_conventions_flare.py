"""FLARE 2025's evaluation (medfm-flare/FLARE25-QWen2.5VL: evaluate_model.py, utils/metrics.py), worked by hand:
`--parser flare` scores the items FLARE scores (empty references included) and gives its numbers where there is
nothing to score; `--parser robust` keeps medlib's documented policy (empty references skipped, nan)."""

from __future__ import annotations

import math

import pytest

from medlib.evaluation.metrics import flare_report, scoring

NO_COCO = scoring.ScoringOptions(coco=False)


def _group(task: str, pairs: list[tuple[str, str]], parser: str = "flare") -> dict:
    """score_group over (raw output, reference) pairs of one task."""
    records = [{"id": str(i), "task": task, "dataset": "d", "raw": raw, "answer": answer}
               for i, (raw, answer) in enumerate(pairs)]
    return scoring.score_group(task, records, parser, n_resamples=20, options=NO_COCO)


# --- report generation: FLARE scores pairs whose reference is empty ------------------------------------


def test_report_score_of_empty_references_as_flare_computes_it() -> None:
    # Entity 0 (mentions, none wanted) · location 0 · negation 1 · temporal 1 · measurement 1 · significance 0
    # · structure 0.7 (no sections wanted, length ratio 0): 0.15 + 0.1 + 0.1 + 0.05 × 0.7 = 0.385.
    assert flare_report.flare_report_components("The lungs are clear.", "")["overall"] == pytest.approx(0.385)
    # Both empty: entity 1, location 1 as well: 0.3 + 0.2 + 0.385 = 0.885.
    assert flare_report.flare_report_components("", "")["overall"] == pytest.approx(0.885)


def test_empty_report_references_are_scored_under_flare_and_skipped_under_robust() -> None:
    pairs = [("the heart is normal", "the heart is normal"), ("acute fracture", "")]
    flare_group, robust_group = _group("report_generation", pairs), _group("report_generation", pairs, "robust")
    assert (flare_group["n"], flare_group["n_empty_reference"], flare_group["n_skipped_reference"]) == (2, 1, 0)
    assert (robust_group["n"], robust_group["n_empty_reference"], robust_group["n_skipped_reference"]) == (1, 1, 1)
    # FLARE's BLEU: whitespace tokens, per-report precisions averaged: (1 + 0) / 2 at every order, no brevity
    # penalty (6 output words > 4 reference words) → 0.5; without the empty pair it is 1.0.
    assert flare_group["metrics"]["flare_bleu"] == pytest.approx(0.5)
    assert robust_group["metrics"]["flare_bleu"] == pytest.approx(1.0)
    # Clinical efficacy: "acute" makes the report critical, the empty reference is normal → 1 of 2.
    assert flare_group["metrics"]["clinical_efficacy"] == pytest.approx(0.5)
    expected = (flare_report.flare_report_components("the heart is normal", "the heart is normal")["overall"]
                + flare_report.flare_report_components("acute fracture", "")["overall"]) / 2
    assert flare_group["metrics"]["flare_report_score"] == pytest.approx(expected)


# --- nothing to score ------------------------------------------------------------------------------------


def test_multi_label_with_only_empty_references_is_zero_under_flare() -> None:
    group = _group("multi_label", [("caries", ""), ("filling", " ")])
    # FLARE keeps the items (its parser reads "" as [""]) and skips them in the metric: no F1 left → 0.0.
    assert (group["n"], group["n_empty_reference"]) == (2, 2)
    assert group["metrics"]["f1"] == 0.0 and group["metrics"]["n_scored"] == 0 and group["nothing_to_score"]
    robust = _group("multi_label", [("caries", ""), ("filling", " ")], "robust")
    assert robust["n"] == 0 and robust["metrics"] == {} and robust["nothing_to_score"]


@pytest.mark.parametrize("task", ["counting", "regression"])
def test_no_parseable_answer_gives_flare_an_infinite_mae(task: str) -> None:
    group = _group(task, [("to count the cells we need to look closely", "3"), ("", "4")])
    assert group["metrics"]["mae"] == math.inf and group["n_unparsed"] == 2 and group["nothing_to_score"]
    robust = _group(task, [("no idea", "3"), ("", "4")], "robust")
    assert math.isnan(robust["metrics"]["mae"])


def test_counting_references_that_are_no_number_are_skipped_as_flare_skips_them() -> None:
    group = _group("counting", [("3", "three"), ("4", "4.7")])
    # FLARE reads references with int(float(...)): "three" is skipped, "4.7" counts as 4.
    assert (group["n"], group["n_skipped_reference"], group["metrics"]["mae"]) == (1, 1, 0.0)
    # Every reference unusable: FLARE's evaluation has no pairs and reports an infinite MAE.
    assert _group("counting", [("3", "n/a")])["metrics"]["mae"] == math.inf


def test_empty_classification_reference_is_kept_as_flare_keeps_it() -> None:
    group = _group("classification", [("A", "A"), ("B", "")])
    # FLARE compares the raw reference: "" is a class of its own that "B" misses.
    assert (group["n"], group["n_empty_reference"], group["metrics"]["accuracy"]) == (2, 1, 0.5)
    assert _group("classification", [("A", "A"), ("B", "")], "robust")["n"] == 1
