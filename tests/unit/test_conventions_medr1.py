"""Med-R1's rewards (Yuxiang-Lai117/Med-R1: src/r1-v/src/open_r1/grpo_vqa.py, grpo_vqa_nothink.py), worked by hand,
beside medlib's own `format`/`exact`, which differ on purpose (README, reward table)."""

from __future__ import annotations

import pytest

from medlib.training.rewards import exact_reward, format_reward
from medlib.training.rewards.medr1 import (
    medr1_accuracy_reward,
    medr1_format_nothink_reward,
    medr1_format_reward,
)
from medlib.training.rewards.recipes import build_recipe, recipe_from_params, total_rewards


def _assistant(text: str) -> list[dict]:
    """A conversational completion as TRL passes it (Med-R1 reads completion[0]["content"])."""
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    ("completion", "medr1", "medlib"),
    [
        ("<think>a</think><answer>C</answer>", 1.0, 1.0),
        ("<think>a</think>\n\n<answer>C</answer>", 1.0, 1.0),
        ("<answer>C</answer>", 0.0, 0.5),  # Med-R1's format is a full match of think then answer
        ("<think>a</think><answer>C</answer><answer>B</answer>", 1.0, 0.5),  # lazy .*? still spans to the end
        ("<think>a</think><answer>C</answer>\n", 0.0, 1.0),  # no trailing whitespace in a full match
        (" <think>a</think><answer>C</answer>", 0.0, 1.0),  # nor leading whitespace with thinking
        ("<think>a</think><answer></answer>", 1.0, 0.5),  # an empty answer still has the format
    ],
)
def test_think_format(completion: str, medr1: float, medlib: float) -> None:
    assert medr1_format_reward(None, [_assistant(completion)]) == [medr1]
    assert format_reward(None, [_assistant(completion)]) == [medlib]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [("<answer>C</answer>", 1.0), ("  \n<answer>C</answer>", 1.0), ("<answer>C</answer>\n", 0.0),
     ("<think>a</think><answer>C</answer>", 0.0), ("<answer>C</answer><answer>B</answer>", 1.0), ("C", 0.0)],
)
def test_no_think_format(completion: str, expected: float) -> None:
    assert medr1_format_nothink_reward(None, [completion]) == [expected]


@pytest.mark.parametrize(
    ("completion", "solution", "medr1", "medlib"),
    [
        ("<think>a</think><answer>C</answer>", "C", 1.0, 1.0),
        ("<answer>c</answer>", "C", 0.0, 1.0),  # no case folding in Med-R1
        ("<answer>(C)</answer>", "C", 0.0, 1.0),  # nor punctuation removal
        ("<answer>C.</answer>", "C", 0.0, 1.0),
        ("<answer> C </answer>", "C", 1.0, 1.0),  # but the block is stripped
        ("<answer>C</answer><answer>B</answer>", "C", 1.0, 0.0),  # Med-R1 takes the first block, medlib the last
        ("<answer>B</answer><answer>C</answer>", "C", 0.0, 1.0),
        ("<answer>C\n</answer>", "C", 0.0, 1.0),  # no DOTALL: the whole text is compared and fails
        ("C", "<answer>C</answer>", 1.0, 0.0),  # a tagged solution is unwrapped too
        ("  C  ", "C", 1.0, 1.0),  # untagged: the stripped text
    ],
)
def test_accuracy(completion: str, solution: str, medr1: float, medlib: float) -> None:
    assert medr1_accuracy_reward(None, [_assistant(completion)], answer=[solution]) == [medr1]
    assert exact_reward(None, [_assistant(completion)], answer=[solution]) == [medlib]


def test_accuracy_tries_math_verify_first_on_the_whole_completion() -> None:
    pytest.importorskip("math_verify")
    # math-verify parses the whole completion (reasoning included) and finds 4 there: Med-R1 pays 1.0 for a
    # wrong final answer; the string step alone would give 0.
    assert medr1_accuracy_reward(None, ["<think>the answer is 4</think><answer>5</answer>"], answer=["4"]) == [1.0]
    assert medr1_accuracy_reward(None, ["<answer>1/2</answer>"], answer=["0.5"]) == [0.0]  # tags hide the maths
    assert medr1_accuracy_reward(None, ["$\\frac{1}{2}$"], answer=["0.5"]) == [1.0]


@pytest.mark.parametrize(("recipe", "format_name"), [("medr1", "medr1_format"),
                                                      ("medr1_nothink", "medr1_format_nothink")])
def test_recipe_sums_format_and_accuracy_unweighted(recipe: str, format_name: str) -> None:
    functions, weights = build_recipe(recipe_from_params(["format", "accuracy"], [0.2, 0.8], recipe))
    assert [f.__name__ for f in functions] == [format_name, "medr1_accuracy"] and weights == [1.0, 1.0]
    completions = ["<think>a</think><answer>C</answer>", "<answer>C</answer>", "<answer>B</answer>\n"]
    columns = {"answer": ["C"] * 3, "task": ["classification"] * 3}
    scores = [function(["p"] * 3, completions, **columns) for function in functions]
    expected = {"medr1": [2.0, 1.0, 0.0], "medr1_nothink": [1.0, 2.0, 0.0]}[recipe]
    assert total_rewards(weights, scores) == expected


def test_unknown_recipe_name_is_an_error_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="medr1, medr1_nothink, flare_task5"):
        recipe_from_params([], None, "medr2")
