"""Hand-worked cases and properties for medlib.evaluation.parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medlib.data.records import TASKS
from medlib.evaluation.parsing import (
    answers_match,
    completion_text,
    extract_answer,
    finite_float,
    has_valid_format,
    normalize_option_letter,
    normalize_text,
    parse_answer,
)

TAGGED_PIECES = st.sampled_from(
    ["<think>", "</think>", "<answer>", "</answer>", "yes", "3", "[1,2,3,4]", "{", "}", "[", "]"]
)
MODEL_LIKE_TEXT = st.lists(st.text(max_size=12) | TAGGED_PIECES, max_size=12).map("".join)


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


# --- completion_text ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "hi"}], "hi"),
        (
            [
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
            "ab",
        ),
        (
            [{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}],
            "x",
        ),
        (
            [{"role": "tool", "content": "ignored"}, {"role": "assistant", "content": "kept"}],
            "kept",
        ),
        ([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "a\nb"),
        ({"role": "assistant", "content": "single"}, "single"),
        ([{"role": "assistant", "content": None}], ""),
        (None, ""),
        (42, "42"),
        ([], ""),
        (_Unprintable(), ""),
    ],
)
def test_completion_text(completion: object, expected: str) -> None:
    assert completion_text(completion) == expected


def test_completion_text_survives_self_reference() -> None:
    looped: list = []
    looped.append(looped)
    assert completion_text(looped) == ""


# --- extract_answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>x</think><answer> B </answer>", "B"),
        ("<answer>a</answer> then <answer>b</answer>", "b"),
        ("<answer>a</answer><answer>unclosed", "a"),
        ("<answer>a<answer>b</answer>", "b"),
        ("<answer>\n multi\nline </answer>", "multi\nline"),
        ("<answer></answer>", ""),
        ("<answer>open only", None),
        ("</answer><answer>", None),
        ("no tags", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


# --- has_valid_format --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "require_think", "expected"),
    [
        ("<think>why</think><answer>B</answer>", True, True),
        ("  <think>why</think>\n<answer>B</answer>\n", True, True),
        ("<think></think><answer>B</answer>", True, True),
        ("<think>why</think><answer>  </answer>", True, False),
        ("<answer>B</answer>", True, False),
        ("<answer>B</answer>", False, True),
        ("<think>why</think><answer>B</answer>", False, True),
        ("<think>why</think><answer>B</answer> trailing", True, False),
        ("lead <think>why</think><answer>B</answer>", True, False),
        ("<answer>B</answer><think>why</think>", True, False),
        ("<think>a</think><think>b</think><answer>B</answer>", True, False),
        ("<think>a</think><answer>B</answer><answer>C</answer>", True, False),
        ("<think>a<answer>B</answer></think>", True, False),
        ("<think>why</think>B", True, False),
        ("<think>why<answer>B</answer>", False, False),
    ],
)
def test_has_valid_format(text: str, require_think: bool, expected: bool) -> None:
    assert has_valid_format(text, require_think=require_think) is expected


# --- normalize_option_letter -------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["C", "c", "C.", "(C)", "(c)", "C) left", "c) left", "C. left", "Option C", "option c",
     "the answer is C", "The answer is (c).", "Answer: C", "  C  "],
)  # fmt: skip
def test_normalize_option_letter_reads_c(text: str) -> None:
    assert normalize_option_letter(text) == "C"


@pytest.mark.parametrize(
    "text", ["", "F", "A mass", "the answer is a mass", "I think so", "Answer: Yes", "cc"]
)
def test_normalize_option_letter_rejects(text: str) -> None:
    assert normalize_option_letter(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("left", "A"), ("Right.", "B"), ("RIGHT", "B"), ("B", "B"), ("C", None), ("up", None)],
)
def test_normalize_option_letter_with_choices(text: str, expected: str | None) -> None:
    assert normalize_option_letter(text, ["left", "right"]) == expected


def test_normalize_option_letter_allows_letters_past_e_with_many_choices() -> None:
    choices = [f"class {i}" for i in range(8)]
    assert normalize_option_letter("G", choices) == "G"
    assert normalize_option_letter("class 7", choices) == "H"


# --- parse_answer ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "text", "expected"),
    [
        ("vqa_closed", "Yes.", "yes"),
        ("vqa_closed", "no lesion", "no"),
        ("vqa_closed", "NO", "no"),
        ("vqa_closed", "<think>hmm</think><answer>Yes, clearly</answer>", "yes"),
        ("classification", "(B)", "B"),
        ("classification", "the answer is d", "D"),
        ("classification", "Pneumonia.", "pneumonia"),
        ("counting", "3", 3),
        ("counting", "3.0", 3),
        ("counting", "three", 3),
        ("counting", "Twenty", 20),
        ("counting", "3 lesions", 3),
        ("counting", "There are 0 nodules", 0),
        ("counting", "1,234 cells", 1234),
        ("counting", "1, 2, 3", 1),
        ("regression", "1,234.5 ml", 1234.5),
        ("regression", "5-10%", 5.0),
        ("regression", ".75", 0.75),
        ("regression", "45%", 45.0),
        ("regression", "4.5 cm", 4.5),
        ("regression", "-2.1", -2.1),
        ("regression", "T2 signal 7", 7.0),
        ("regression", "1e-3", 0.001),
        ("multi_label", "Effusion, edema, effusion", ["edema", "effusion"]),
        ("multi_label", "Pleural effusion; edema, mild", ["edema mild", "pleural effusion"]),
        ("detection", "[[1, 2, 3, 4], [5, 6.5, 7, 8]]", [[1.0, 2.0, 3.0, 4.0], [5.0, 6.5, 7.0, 8.0]]),
        ("detection", "[10, 20, 30, 40]", [[10.0, 20.0, 30.0, 40.0]]),
        ("detection", "[]", []),
        ("detection", "boxes [1,2,3,4] and [5,6,7,8]", [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]),
        ("instance_detection", '{"1": [[1,2,3,4]], "2": [5,6,7,8]}',
         {"1": [[1.0, 2.0, 3.0, 4.0]], "2": [[5.0, 6.0, 7.0, 8.0]]}),
        ("instance_detection", "{}", {}),
        ("report_generation", "  Heart size normal.\n", "Heart size normal."),
        ("vqa_open", "<answer> left lung </answer>", "left lung"),
    ],
)  # fmt: skip
def test_parse_answer(task: str, text: str, expected: object) -> None:
    assert parse_answer(task, text) == (expected, None)


@pytest.mark.parametrize(
    ("task", "text", "reason"),
    [
        ("vqa_closed", "maybe", "no yes/no"),
        ("vqa_closed", "   ", "empty answer"),
        ("vqa_closed", "<answer></answer>", "empty answer"),
        ("classification", "(F)", "no option letter"),
        ("counting", "several", "no number"),
        ("counting", "3.5", "not an integer"),
        ("counting", "-2", "negative count"),
        ("counting", "1e999", "not finite"),
        ("regression", "large", "no number"),
        ("regression", "1e400 cm", "not finite"),
        ("multi_label", " ; ; ", "no labels"),
        ("detection", "[1, 2, 3]", "not a list of boxes"),
        ("detection", "[[1, 2, 3, 4], [true, 2, 3, 4]]", "not a list of boxes"),
        ("detection", "nothing here", "no boxes"),
        ("instance_detection", '{"1": [1, 2]}', "not a list of boxes"),
        ("instance_detection", "[1, 2, 3, 4]", "no JSON object"),
        ("report_generation", "", "empty answer"),
    ],
)
def test_parse_answer_failures(task: str, text: str, reason: str) -> None:
    assert parse_answer(task, text) == (None, reason)


def test_parse_answer_prefers_answer_tag_over_think() -> None:
    text = "<think>maybe 7 lesions</think><answer>4</answer>"
    assert parse_answer("counting", text) == (4, None)


def test_parse_answer_choices() -> None:
    assert parse_answer("classification", "right", ["left", "right"]) == ("B", None)
    assert parse_answer("classification", "C", ["left", "right"]) == (None, "no option letter")
    assert parse_answer("vqa_closed", "Left side", ["left side", "right side"]) == ("A", None)
    assert parse_answer("vqa_closed", "up", ["left", "right"]) == (None, "no matching choice")
    assert parse_answer("vqa_closed", "B", ["Yes", "No"]) == ("no", None)


def test_parse_answer_rejects_unknown_task() -> None:
    with pytest.raises(ValueError, match="'segmentation'"):
        parse_answer("segmentation", "yes")


@given(
    task=st.sampled_from(TASKS),
    text=MODEL_LIKE_TEXT,
    choices=st.none() | st.lists(st.text(max_size=8), max_size=6),
)
def test_parse_answer_never_raises(task: str, text: str, choices: list[str] | None) -> None:
    parsed, error = parse_answer(task, text, choices)
    assert (parsed is None) != (error is None)


# --- answers_match -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "parsed", "reference", "expected"),
    [
        ("vqa_closed", "yes", "Yes", True),
        ("vqa_closed", "no", "yes", False),
        ("classification", "B", "(b)", True),
        ("classification", "A", "B", False),
        ("counting", 3, "three", True),
        ("counting", 4, "3", False),
        ("regression", 45.0, "45%", True),
        ("regression", 45.0 + 1e-5, "45", True),
        ("regression", 45.001, "45", False),
        ("regression", 0.0, "0", True),
        ("regression", 5e-7, "0", True),
        ("regression", 2e-6, "0", False),
        ("regression", 10**400, "1", False),
        ("regression", "45", "45", False),
        ("multi_label", ["edema", "effusion"], "Effusion, Edema", True),
        ("multi_label", ["edema"], "Effusion, Edema", False),
        ("vqa_open", "The left lung!", "left  lung", True),
        ("vqa_open", "left lung", "right lung", False),
        ("report_generation", "Heart normal.", "heart normal", True),
        ("report_generation", "Heart normal.", "Heart enlarged.", False),
        ("detection", [[1.0, 2.0, 3.0, 4.0]], "[[1, 2, 3, 4]]", True),
        ("detection", [[1.0, 2.0, 3.0, 5.0]], "[[1, 2, 3, 4]]", False),
        ("instance_detection", {"1": [[1.0, 2.0, 3.0, 4.0]]}, '{"1": [1, 2, 3, 4]}', True),
        ("counting", None, "3", False),
        ("counting", 3, "unparseable reference", False),
    ],
)
def test_answers_match(task: str, parsed: object, reference: str, expected: bool) -> None:
    assert answers_match(task, parsed, reference) is expected


def test_answers_match_uses_choices_for_reference() -> None:
    assert answers_match("classification", "B", "right", ["left", "right"])
    assert not answers_match("classification", "A", "right", ["left", "right"])


# --- small helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("The Left  Lung!", "left lung"), ("an apple, a day", "apple day"), ("", "")],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), (2.5, 2.5), (True, None), ("3", None), (float("nan"), None), (10**400, None)],
)
def test_finite_float(value: object, expected: float | None) -> None:
    assert finite_float(value) == expected
