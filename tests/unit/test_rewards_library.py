"""Hand-worked cases and reference-library checks for every reward of medlib.training.rewards beyond format/accuracy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medlib.evaluation.boxes import box_iou, matched_ious
from medlib.training import rewards
from medlib.training.rewards import (
    OPTIONAL_REWARDS,
    REWARD_BOUNDS,
    REWARD_FUNCTIONS,
    answer_format_reward,
    choice_reward,
    clinical_f1_reward,
    count_reward,
    detection_f1_reward,
    detection_iou_reward,
    exact_reward,
    multilabel_f1_reward,
    numeric_reward,
    radgraph_available,
    radgraph_f1_reward,
    report_format_reward,
    rouge_l_reward,
)
from medlib.training.rewards.clinical import clinical_f1, clinical_mentions
from medlib.training.rewards.parsing import answer_content, report_sections

EXTRAS = {"completion_ids": [[1]], "trainer_state": object(), "log_metric": print, "log_extra": print}


def _assistant(text: str) -> list[dict]:
    """A conversational completion as TRL hands it over."""
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def _one(function, completion: object, answer: object, **columns: object) -> float:
    """The reward of a single completion."""
    columns = {key: [value] for key, value in columns.items()}
    return function(["p"], [completion], answer=[answer], **columns, **EXTRAS)[0]


# --- parsing helpers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>x</think><answer> B </answer>", "B"),
        ("  B  ", "B"),
        ("<think>x</think> B", None),
        ("<answer>B", None),
    ],
)
def test_answer_content(text: str, expected: str | None) -> None:
    assert answer_content(text) == expected


def test_report_sections_split_on_headers_anywhere() -> None:
    text = "FINDINGS: heart normal.\nImpression:  no acute disease. findings: again"
    assert report_sections(text) == {"findings": "heart normal.", "impression": "no acute disease."}


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [0, 0, 10, 5], 0.5),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([10, 10, 0, 0], [0, 0, 10, 10], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),
    ],
)
def test_box_iou(first: list, second: list, expected: float) -> None:
    assert box_iou(first, second) == pytest.approx(expected)


def test_matched_ious_pairs_one_to_one_for_the_best_total() -> None:
    # Greedy would give box A to the first prediction (IoU 0.5) and leave 0.0 for the second.
    predicted = [[0, 0, 10, 10], [0, 0, 10, 5]]
    reference = [[0, 0, 10, 5], [0, 0, 10, 10]]
    assert sorted(matched_ious(predicted, reference)) == [1.0, 1.0]


# --- answer format -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<answer>B</answer>", 1.0),
        ("<think>a</think><answer>B</answer>", 1.0),
        (_assistant("<answer>B</answer>"), 1.0),
        ("so <answer>B</answer>", 0.5),
        ("<think>a</think>", 0.0),
        ("B", 0.0),
    ],
)
def test_answer_format_reward_with_and_without_think(completion: object, expected: float) -> None:
    assert answer_format_reward(["p"], [completion], **EXTRAS) == [expected]


# --- report format -----------------------------------------------------------------

GOOD_REPORT = ("Findings: The heart is normal in size. The lungs are clear without effusion.\n"
               "Impression: No acute cardiopulmonary disease.")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (GOOD_REPORT, 1.0),
        (_assistant(GOOD_REPORT), 1.0),  # the header is seen inside TRL's message list
        (f"<think>plan</think><answer>{GOOD_REPORT}</answer>", 1.0),
        ("Findings: lungs clear, no effusion seen today.\nImpression: Lungs clear; no effusion seen today.", 0.75),
        ("Findings: The heart is normal in size. The lungs are clear without effusion.", 0.5),
        ("Findings: clear.\nImpression: normal.", 0.75),  # 2 words: outside the length window
        ("Impression: " + "word " * 400, 0.25),
        ("The heart is normal in size and the lungs are clear of any effusion.", 0.0),  # no sections
        ("Findings:\nImpression:", 0.0),
        ("", 0.0),
    ],
)
def test_report_format_reward(completion: object, expected: float) -> None:
    assert report_format_reward(["p"], [completion], **EXTRAS) == [expected]


# --- multiple choice ---------------------------------------------------------------

FOUR = ["left lung", "right lung", "heart", "liver"]


@pytest.mark.parametrize(
    ("completion", "reference", "choices", "expected"),
    [
        ("<answer>C</answer>", "C", FOUR, 1.0),
        ("<answer>c</answer>", "C", FOUR, 1.0),  # Med-R1's exact match scored these three 0
        ("<answer>C.</answer>", "C", FOUR, 1.0),
        ("<answer>(C)</answer>", "C", FOUR, 1.0),
        (_assistant("<think>x</think><answer>The answer is C</answer>"), "(c)", FOUR, 1.0),
        ("<answer>Heart</answer>", "C", FOUR, 1.0),
        ("C", "C", FOUR, 1.0),
        ("<answer>B</answer>", "C", FOUR, -0.2),
        ("<answer>E</answer>", "C", FOUR, -0.2),
        ("<think>C</think>", "C", FOUR, -0.2),
        ("", "C", FOUR, -0.2),
        ("<answer>yes</answer>", "yes", ["yes", "no"], 1.0),
        ("<answer>no</answer>", "yes", ["yes", "no"], -0.2),
        ("<answer>C</answer>", "maybe", None, 0.0),
    ],
)
def test_choice_reward(completion: object, reference: str, choices: list | None, expected: float) -> None:
    assert _one(choice_reward, completion, reference, choices=choices) == expected


# --- numeric -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("46", "45%", 1.0),  # "45%" takes the numeric path
        ("47%", "45%", 1.0),
        ("50", "45%", 0.5),
        ("53", "45%", 0.0),
        ("60", "45%", -0.5),
        ("120%", "45%", -1.0),  # a percentage outside [0, 100]
        ("-3", "45%", -1.0),
        ("about forty", "45%", -1.0),
        ("4.5 cm", "4.4 cm", 1.0),
        ("-100", "45", -0.5),  # no range for a plain number
        ("7", "n/a", 0.0),
    ],
)
def test_numeric_reward(prediction: str, reference: str, expected: float) -> None:
    assert _one(numeric_reward, f"<answer>{prediction}</answer>", reference) == expected


def test_numeric_reward_missing_answer_and_row_range() -> None:
    assert _one(numeric_reward, "<think>45</think>", "45") == -1.0
    assert _one(numeric_reward, "<answer>60</answer>", "45", value_range=[0, 50]) == -1.0
    assert _one(numeric_reward, "<answer>48</answer>", "45", value_range=["0", "50"]) == 0.5


# --- exact / symbolic --------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("The left lung.", "left lung", 1.0),
        ("C", "c", 1.0),
        ("right lung", "left lung", 0.0),
        ("2", "3", 0.0),
        ("", "3", 0.0),
    ],
)
def test_exact_reward_normalised_match(prediction: str, reference: str, expected: float) -> None:
    assert _one(exact_reward, f"<answer>{prediction}</answer>", reference) == expected


def test_exact_reward_uses_math_verify_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("math_verify")
    completion = "<answer>$\\frac{1}{2}$</answer>"
    assert _one(exact_reward, completion, "0.5") == 1.0
    monkeypatch.setattr(rewards.answers, "math_verify_available", lambda: False)
    assert _one(exact_reward, completion, "0.5") == 0.0


# --- multi-label -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("edema, effusion, mass", "effusion; edema"),
        ("Effusion", "effusion; edema"),
        ("nodule", "effusion"),
        ("edema; effusion", "Effusion, Edema"),
    ],
)
def test_multilabel_f1_matches_sklearn(prediction: str, reference: str) -> None:
    from sklearn.metrics import f1_score

    found = {label.strip().lower() for label in prediction.replace(";", ",").split(",")}
    expected = {label.strip().lower() for label in reference.replace(";", ",").split(",")}
    labels = sorted(found | expected)
    truth = [int(label in expected) for label in labels]
    predicted = [int(label in found) for label in labels]
    reward = _one(multilabel_f1_reward, f"<answer>{prediction}</answer>", reference)
    assert reward == pytest.approx(f1_score(truth, predicted))


def test_multilabel_f1_missing_answer_scores_zero() -> None:
    assert _one(multilabel_f1_reward, "<think>edema</think>", "edema") == 0.0


# --- detection ---------------------------------------------------------------------

TWO_BOXES = "[[0,0,10,10],[20,20,30,30]]"


@pytest.mark.parametrize(
    ("prediction", "f1", "iou"),
    [
        (TWO_BOXES, 1.0, 1.0),
        ("[[20,20,30,30],[0,0,10,10]]", 1.0, 1.0),
        ("[[0,0,10,10]]", 2 / 3, 0.5),
        ("[0,0,10,5]", 2 / 3, 0.25),
        ("[[5,0,15,10]]", 0.0, (50 / 150) / 2),
        ("[[0,0,10,10],[20,20,30,30],[50,50,60,60]]", 0.8, 2 / 3),
        ("[]", 0.0, 0.0),
        ("no boxes", 0.0, 0.0),
    ],
)
def test_detection_rewards(prediction: str, f1: float, iou: float) -> None:
    completion = f"<answer>{prediction}</answer>"
    assert _one(detection_f1_reward, completion, TWO_BOXES, task="detection") == pytest.approx(f1)
    assert _one(detection_iou_reward, completion, TWO_BOXES, task="detection") == pytest.approx(iou)


def test_detection_rewards_empty_reference_and_instances() -> None:
    assert _one(detection_f1_reward, "<answer>[]</answer>", "[]") == 1.0
    reference = '{"1": [[0,0,10,10]], "2": [[20,20,30,30]]}'
    same = '{"2": [[20,20,30,30]], "1": [[0,0,10,10]]}'
    swapped = '{"1": [[20,20,30,30]], "2": [[0,0,10,10]]}'
    for function in (detection_f1_reward, detection_iou_reward):
        assert _one(function, f"<answer>{same}</answer>", reference, task="instance_detection") == 1.0
        assert _one(function, f"<answer>{swapped}</answer>", reference, task="instance_detection") == 0.0


# --- counting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("3", "3", 1.0),
        ("4 lesions", "3", 2 / 3),
        ("two", "3", 2 / 3),
        ("0", "3", 0.0),
        ("9", "3", 0.0),
        ("1", "0", 0.0),
        ("0", "0", 1.0),
        ("many", "3", 0.0),
        ("10", "12", 1 - 2 / 12),
    ],
)
def test_count_reward(prediction: str, reference: str, expected: float) -> None:
    assert _one(count_reward, f"<answer>{prediction}</answer>", reference) == pytest.approx(expected)


# --- ROUGE-L -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("a b c d", "a c d e"),
        ("No pleural effusion.", "There is no pleural effusion or pneumothorax."),
        ("Heart size normal", "heart size is normal"),
        ("", "heart"),
    ],
)
def test_rouge_l_matches_rouge_score(prediction: str, reference: str) -> None:
    from rouge_score import rouge_scorer

    expected = rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure
    assert _one(rouge_l_reward, _assistant(prediction), reference) == pytest.approx(expected)


def test_rouge_l_hand_worked() -> None:
    # LCS of "a b c d" and "a c d e" is "a c d": precision = recall = 3/4.
    assert _one(rouge_l_reward, "a b c d", "a c d e") == pytest.approx(0.75)


# --- clinical entity-and-negation F1 -----------------------------------------------


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("No pleural effusion or pneumothorax.", {("pleural_effusion", "absent"), ("pneumothorax", "absent")}),
        ("Small left effusion.", {("pleural_effusion", "present")}),
        ("Cannot exclude pneumonia.", {("pneumonia", "uncertain")}),
        ("The effusion has resolved.", {("pleural_effusion", "absent")}),
        ("No effusion, but consolidation at the left base.",
         {("pleural_effusion", "absent"), ("consolidation", "present")}),
        ("The heart is enlarged. Possible atelectasis.", {("cardiomegaly", "present"), ("atelectasis", "uncertain")}),
        ("Enlarged cardiac silhouette.", {("cardiomegaly", "present")}),
        ("Heart size normal, lungs clear.", set()),
    ],
)  # fmt: skip
def test_clinical_mentions(report: str, expected: set) -> None:
    assert clinical_mentions(report) == expected


@pytest.mark.parametrize(
    ("reference", "prediction", "expected"),
    [
        # Different words, same findings: lexical overlap is low, the clinical F1 is full.
        ("No pleural effusion. Mild cardiomegaly.", "Cardiomegaly is present without effusion.", 1.0),
        ("Pleural effusion.", "No pleural effusion.", 0.0),  # negation flips the finding
        ("Effusion and consolidation.", "Effusion.", 2 / 3),
        ("Lungs clear.", "Normal study.", 1.0),
        ("Lungs clear.", "Nodule in the right apex.", 0.0),
    ],
)
def test_clinical_f1(reference: str, prediction: str, expected: float) -> None:
    assert clinical_f1(reference, prediction) == pytest.approx(expected)
    assert _one(clinical_f1_reward, f"<answer>{prediction}</answer>", reference) == pytest.approx(expected)


def test_clinical_f1_reward_is_not_lexical() -> None:
    reference = "No pleural effusion. Mild cardiomegaly."
    prediction = "<answer>Cardiomegaly is present without effusion.</answer>"
    assert _one(clinical_f1_reward, prediction, reference) > _one(rouge_l_reward, prediction, reference) + 0.5


# --- RadGraph (optional) -----------------------------------------------------------


@pytest.mark.skipif(radgraph_available(), reason="radgraph is installed here")
def test_radgraph_reward_explains_the_missing_package() -> None:
    with pytest.raises(ImportError, match="pip install radgraph"):
        radgraph_f1_reward(["p"], ["Findings: no effusion."], answer=["no effusion"])
    with pytest.raises(ValueError, match="radgraph_f1"):
        rewards.build_reward_functions(["radgraph_f1"])


@pytest.mark.skipif(not radgraph_available(), reason="optional radgraph package (and its weights) not installed")
def test_radgraph_reward_identical_reports_score_one() -> None:
    report = "There is a small left pleural effusion."
    assert _one(radgraph_f1_reward, report, report) == pytest.approx(1.0)


# --- properties over every reward --------------------------------------------------

PIECES = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "Findings:", "Impression:", "no",
                          "effusion", "C", "(c)", "45%", "3", "[1,2,3,4]", "[[0,0,5,5]]", '{"a": [[1,2,3,4]]}',
                          "1e999", "-0", "; ", ", ", "\\frac{1}{2}", "nan"])
TEXT = st.lists(st.text(max_size=10) | PIECES, max_size=10).map("".join)
COMPLETIONS = TEXT | st.lists(st.fixed_dictionaries({"role": st.just("assistant"), "content": TEXT}), max_size=2)
SCORED = sorted(set(REWARD_FUNCTIONS) - set(OPTIONAL_REWARDS))


@settings(deadline=None, max_examples=60)
@given(
    completion=COMPLETIONS,
    reference=TEXT | st.none(),
    task=st.sampled_from(["detection", "instance_detection", "regression", "report_generation"]),
    choices=st.none() | st.lists(TEXT, max_size=4),
    value_range=st.none() | st.lists(TEXT | st.floats() | st.integers(), max_size=3),
)
def test_every_reward_is_total_finite_and_bounded(completion: object, reference: object, task: str,
                                                  choices: object, value_range: object) -> None:
    for name in SCORED:
        score = _one(REWARD_FUNCTIONS[name], completion, reference, task=task, choices=choices,
                     value_range=value_range)
        low, high = REWARD_BOUNDS[name]
        assert isinstance(score, float) and math.isfinite(score) and low <= score <= high, (name, score)


def test_rewards_name_the_missing_answer_column() -> None:
    for name in SCORED:
        if name in ("format", "answer_format", "report_format", "medr1_format", "medr1_format_nothink"):
            continue
        with pytest.raises(ValueError, match="'answer'"):
            REWARD_FUNCTIONS[name](["p"], ["<answer>1</answer>"], task=["counting"])
