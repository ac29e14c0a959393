"""Hand-worked cases and never-raise properties for medlib.training.rewards."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medlib.data.records import TASKS
from medlib.training.rewards import (
    OPTIONAL_REWARDS,
    REWARD_BOUNDS,
    REWARD_FUNCTIONS,
    accuracy_reward,
    build_reward_functions,
    format_reward,
)

TAGGED_PIECES = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "yes",
        "no",
        "B",
        "3",
        "4",
        "[1,2,3,4]",
        "{",
        "}",
    ]
)
MODEL_LIKE_TEXT = st.lists(st.text(max_size=12) | TAGGED_PIECES, max_size=12).map("".join)
CONTENT = (
    MODEL_LIKE_TEXT
    | st.none()
    | st.lists(
        st.fixed_dictionaries({"type": st.just("text"), "text": MODEL_LIKE_TEXT})
        | st.just({"type": "image"}),
        max_size=3,
    )
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["assistant", "user", "tool"]), "content": CONTENT}
)
COMPLETION = (
    MODEL_LIKE_TEXT
    | st.lists(MESSAGE, max_size=3)
    | st.none()
    | st.integers()
    | st.lists(st.one_of(st.none(), st.integers(), MODEL_LIKE_TEXT), max_size=3)
)
TRAINER_EXTRAS = {"completion_ids": [[1, 2]], "trainer_state": object(), "log_metric": print}


def _assistant(text: str) -> list[dict]:
    """A conversational completion as TRL hands it over."""
    return [{"role": "assistant", "content": text}]


# --- format_reward -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>a</think><answer>B</answer>", 1.0),
        (_assistant("<think>a</think>\n<answer>B</answer>"), 1.0),
        (_assistant([{"type": "text", "text": "<think>a</think>"}, {"type": "text", "text": "<answer>B</answer>"}]), 1.0),
        ("<answer>B</answer>", 0.5),
        ("<think>a</think><answer>B</answer> extra", 0.5),
        ("<think>a</think><answer></answer>", 0.5),
        ("<think>a</think>B", 0.0),
        ("<answer>B", 0.0),
        ("", 0.0),
        (None, 0.0),
    ],
)  # fmt: skip
def test_format_reward(completion: object, expected: float) -> None:
    assert format_reward(["prompt"], [completion], **TRAINER_EXTRAS) == [expected]


# --- accuracy_reward ---------------------------------------------------------------


@pytest.mark.parametrize("answer_format", ["think_answer", "answer_tags", "plain"])
def test_accuracy_reward_judges_each_answer_format(answer_format: str) -> None:
    """The target an SFT model learns in each answer format earns full accuracy; a wrong answer earns none."""
    from medlib.data.prompts import target_text

    right = target_text({"task": "vqa_closed", "answer": "yes", "question": "q"}, answer_format)
    wrong = target_text({"task": "vqa_closed", "answer": "no", "question": "q"}, answer_format)
    rewards = accuracy_reward(["p"] * 2, [_assistant(right), _assistant(wrong)], task=["vqa_closed"] * 2,
                              answer=["yes"] * 2, **TRAINER_EXTRAS)
    assert rewards == [1.0, 0.0]


@pytest.mark.parametrize(
    ("task", "completion", "answer", "expected"),
    [
        ("vqa_closed", "<think>x</think><answer>Yes.</answer>", "yes", 1.0),
        ("vqa_closed", "<think>x</think><answer>no</answer>", "yes", 0.0),
        ("vqa_closed", "yes", "yes", 1.0),  # untagged: the whole text is the answer (answer_format: plain)
        ("vqa_closed", "<think>the answer is yes</think>", "yes", 0.0),  # tagged, but no answer block
        ("vqa_closed", "<think>x</think><answer>yes", "yes", 0.0),  # an answer that never closed
        ("classification", _assistant("<answer>(B)</answer>"), "B", 1.0),
        ("counting", "<answer>3 lesions</answer>", "3", 1.0),
        ("counting", "<answer>4</answer>", "3", 0.25),
        ("counting", "<answer>2</answer>", "3", 0.25),
        ("counting", "<answer>5</answer>", "3", 0.0),
        ("counting", "<answer>many</answer>", "3", 0.0),
        ("regression", "<answer>45%</answer>", "45", 1.0),
        ("regression", "<answer>46</answer>", "45", 0.0),
        ("multi_label", "<answer>Edema, effusion</answer>", "effusion; edema", 1.0),
        ("vqa_open", "<answer>The left lung.</answer>", "left lung", 1.0),
        ("detection", "<answer>[[1,2,3,4]]</answer>", "[[1,2,3,4]]", 1.0),
        ("report_generation", "<answer>Normal.</answer>", "Heart enlarged.", 0.0),
        ("vqa_closed", "<answer>yes</answer>", None, 0.0),
    ],
)
def test_accuracy_reward(task: str, completion: object, answer: str, expected: float) -> None:
    rewards = accuracy_reward(["p"], [completion], task=[task], answer=[answer], **TRAINER_EXTRAS)
    assert rewards == [expected]


def test_accuracy_reward_uses_row_choices() -> None:
    completions = ["<answer>right</answer>", "<answer>right</answer>", "<answer>yes</answer>"]
    rewards = accuracy_reward(
        ["p"] * 3,
        completions,
        task=["classification", "classification", "vqa_closed"],
        answer=["B", "A", "yes"],
        choices=[["left", "right"], ["left", "right"], None],
    )
    assert rewards == [1.0, 0.0, 1.0]


def test_accuracy_reward_names_missing_column() -> None:
    with pytest.raises(ValueError, match="'answer'"):
        accuracy_reward(["p"], ["<answer>yes</answer>"], task=["vqa_closed"])


def test_accuracy_reward_names_unknown_task() -> None:
    with pytest.raises(ValueError, match="segmentation"):
        accuracy_reward(["p"], ["<answer>yes</answer>"], task=["segmentation"], answer=["yes"])


# --- registry ----------------------------------------------------------------------


def test_registry_builds_in_order() -> None:
    assert build_reward_functions(["accuracy", "format"]) == [accuracy_reward, format_reward]


def test_registry_names_unknown_reward_and_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'length'.*accuracy, answer_format, .*rouge_l"):
        build_reward_functions(["format", "length"])


def test_reward_functions_have_distinct_names() -> None:
    names = [function.__name__ for function in REWARD_FUNCTIONS.values()]
    assert len(set(names)) == len(names)
    assert {"format_reward", "accuracy_reward"} <= set(names)


# --- properties --------------------------------------------------------------------


@settings(deadline=None)  # the first call imports rouge-score / math-verify
@given(
    rows=st.lists(
        st.tuples(
            COMPLETION,
            st.sampled_from(TASKS),
            st.none() | MODEL_LIKE_TEXT,
            st.none() | st.lists(st.text(max_size=8), max_size=5),
        ),
        min_size=1,
        max_size=4,
    ),
    name=st.sampled_from(sorted(set(REWARD_FUNCTIONS) - set(OPTIONAL_REWARDS))),
)
def test_rewards_never_raise_and_stay_in_bounds(rows: list[tuple], name: str) -> None:
    completions, tasks, answers, choices = (list(column) for column in zip(*rows))
    rewards = REWARD_FUNCTIONS[name](
        ["prompt"] * len(rows),
        completions,
        task=tasks,
        answer=answers,
        choices=choices,
        **TRAINER_EXTRAS,
    )
    low, high = REWARD_BOUNDS[name]
    assert len(rewards) == len(rows)
    assert all(isinstance(r, float) and math.isfinite(r) and low <= r <= high for r in rewards), rewards


@settings(deadline=None)
@given(text=st.text())
def test_rewards_on_arbitrary_text(text: str) -> None:
    for completion in (text, _assistant(text)):
        for name, function in REWARD_FUNCTIONS.items():
            if name in OPTIONAL_REWARDS:
                continue
            reward = function(["p"], [completion], task=["counting"], answer=["3"])[0]
            low, high = REWARD_BOUNDS[name]
            assert isinstance(reward, float) and math.isfinite(reward) and low <= reward <= high, name
