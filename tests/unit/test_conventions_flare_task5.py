"""The FLARE Task 5 report repository's published GRPO reward (`combined_reward` of its rl_qwen3vl.py), worked by
hand branch by branch, quirks included; `reward_recipes: flare_task5` selects it."""

from __future__ import annotations

import logging

import pytest

from medlib.training.rewards import REWARD_BOUNDS, rouge_l_reward
from medlib.training.rewards.flare_task5 import flare_task5_reward, format_score
from medlib.training.rewards.recipes import build_recipe, recipe_from_params
from medlib.training.rewards.text import radgraph_available


def _reward(completion: str, reference: str) -> float:
    return flare_task5_reward(["p"], [[{"role": "assistant", "content": completion}]], answer=[reference])[0]


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("C", "C", 1.0),
        ("The answer is C.", "C", 1.0),
        ("A mass is present; the answer is C.", "C", -0.2),  # the article "a" reads as option A
        ("<answer>C</answer>", "c", 1.0),  # any case of reference; tags around the letter do not hide it
        ("F", "F", 1.0),  # F is an option even when the question had five choices
        ("Option G", "C", -0.2),
        ("", "B", -0.2),
    ],
)
def test_multiple_choice_branch(completion: str, reference: str, expected: float) -> None:
    assert _reward(completion, reference) == expected


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        # value 1.0 (error 0); one word: length bonus -0.2; format -0.3 (under 10 words) → 0.7 - 0.15
        ("45", "45%", 0.7 * 1.0 + 0.3 * (-0.3 - 0.2)),
        (".5", "5", 0.7 * 1.0 + 0.3 * (-0.3 - 0.2)),  # ".5" reads as 5
        ("1e2", "100", 0.7 * -0.5 + 0.3 * (-0.3 - 0.2)),  # "1e2" reads as 1: error 99
        ("104", "100", 0.7 * (0.5 - 0.3) + 0.3 * (-0.3 - 0.2)),  # error 4 but outside [0, 100]: −0.3
        ("-3", "0", 0.7 * (0.5 - 0.3) + 0.3 * (-0.3 - 0.2)),
        ("none", "40", 0.7 * -0.5 + 0.3 * (-0.3 - 0.2)),  # no number
        ("it is 43 percent", "40", 0.7 * 0.5 + 0.3 * (-0.3 + 0.0)),  # four words: no length bonus
        (" ".join(["word"] * 15) + " 52", "40", 0.7 * -0.5 + 0.3 * (0.0 + 0.2)),  # 16 words: +0.2, no format term
    ],
)
def test_numeric_branch(completion: str, reference: str, expected: float) -> None:
    assert _reward(completion, reference) == pytest.approx(expected)


def test_format_score_by_hand() -> None:
    # 11 words (no length term), both headers at line starts (+0.7), sentence sets disjoint (+0.6 × (1 − 0)).
    report = "Findings:\nSmall left pleural effusion. No pneumothorax.\nImpression:\nSmall left effusion."
    assert format_score(report) == pytest.approx(1.3)
    # Headers must start a line: "Impression:" mid-line is not one, so only Findings (+0.3); 8 words (−0.3).
    assert format_score("Findings: The lungs are clear. Impression: Normal chest.") == pytest.approx(0.0)
    # Identical sections earn no difference bonus; debugging artefacts cost 1 each; clipped to [−2, 2].
    assert format_score("Findings: clear.\nImpression: clear.") == pytest.approx(-0.3 + 0.7)
    assert format_score("<REASONING> addCriterion x") == pytest.approx(-2.0)
    assert format_score("<REASONING> addCriterion <REASONING>") == -2.0


def test_report_branch_weights_clinical_format_and_stemmed_rouge() -> None:
    report = "Findings:\nSmall left pleural effusion. No pneumothorax.\nImpression:\nSmall left effusion."
    reference = "Small left pleural effusion."
    # ROUGE-L with stemming: reference [small left pleural effus], report of 11 stemmed tokens, LCS 4 → F 8/15.
    rouge = 8 / 15
    if radgraph_available():
        pytest.skip("radgraph installed: the clinical term is RadGraph-XL's, not worked by hand here")
    # Offline clinical F1: reference {effusion present}, report {effusion present, pneumothorax absent} → 2/3.
    assert _reward(report, reference) == pytest.approx(0.7 * 2 / 3 + 0.2 * 1.3 + 0.1 * rouge)


def test_its_rouge_stems_where_medlibs_does_not() -> None:
    assert rouge_l_reward(None, ["Small effusions."], answer=["Small effusion."]) == [0.5]
    if radgraph_available():
        pytest.skip("radgraph installed: the clinical term is RadGraph-XL's")
    # Stemmed ROUGE-L 1.0; offline clinical F1 1.0 (effusion present both); format −0.3 (two words).
    assert _reward("Small effusions.", "Small effusion.") == pytest.approx(0.7 * 1.0 + 0.2 * -0.3 + 0.1 * 1.0)


def test_recipe_and_log(caplog: pytest.LogCaptureFixture) -> None:
    from medlib.training.rewards.flare_task5 import clinical_scorer_name

    clinical_scorer_name.cache_clear()
    with caplog.at_level(logging.INFO, logger="medlib.training.rewards.flare_task5"):
        functions, weights = build_recipe(recipe_from_params([], None, "flare_task5"))
    assert [f.__name__ for f in functions] == ["flare_task5"] and weights == [1.0]
    expected = "RadGraph-XL partial F1" if radgraph_available() else "offline clinical F1"
    assert expected in caplog.text
    assert REWARD_BOUNDS["flare_task5"] == (-2.0, 2.0)
