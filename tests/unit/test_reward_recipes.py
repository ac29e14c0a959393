"""Per-task reward recipes: parsing params, scoping rows, names TRL logs, totals; GRPO log helpers."""

from __future__ import annotations

import pickle

import pytest

from medlib.data.records import TASKS
from medlib.training import grpo
from medlib.training.rewards.recipes import (
    DEFAULT_SCOPE,
    STANDARD_RECIPES,
    ScopedReward,
    build_recipe,
    recipe_from_params,
    total_rewards,
)

COMPLETIONS = [
    "<think>x</think><answer>3</answer>",
    "<answer>Findings: no effusion. Heart normal size and lungs clear. Impression: no acute disease.</answer>",
    "<think>x</think><answer>yes</answer>",
]
COLUMNS = {
    "task": ["counting", "report_generation", "vqa_closed"],
    "answer": ["4", "Findings: small left effusion. Impression: effusion.", "yes"],
    "choices": [None, None, ["yes", "no"]],
    "trainer_state": object(),
}


def _names(functions: list) -> list[str]:
    """Names TRL logs the functions under."""
    from trl.trainer.utils import get_callable_name

    return [get_callable_name(function) for function in functions]


def test_names_and_weights_become_the_default_recipe() -> None:
    assert recipe_from_params(["format", "accuracy"], [0.2, 0.8]) == {DEFAULT_SCOPE: {"format": 0.2, "accuracy": 0.8}}
    assert recipe_from_params(["format"]) == {DEFAULT_SCOPE: {"format": 1.0}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((["format"], [0.2, 0.8], None), "2 values for 1 reward_functions"),
        (([], None, {"segmentation": {"format": 1.0}}), r"reward_recipes\.segmentation: unknown task"),
        (([], None, {"counting": {"length": 1.0}}), r"reward_recipes\.counting\.length: unknown reward"),
        (([], None, {"counting": {"count": "high"}}), r"reward_recipes\.counting\.count: weight"),
        (([], None, {"counting": ["count"]}), r"reward_recipes\.counting: expected a mapping"),
        (([], None, None), "no rewards"),
    ],
)
def test_bad_recipes_name_the_key(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recipe_from_params(*args)


def test_standard_recipes_cover_every_task_and_build() -> None:
    assert set(STANDARD_RECIPES) == set(TASKS)
    functions, weights = build_recipe(STANDARD_RECIPES)
    assert len(set(_names(functions))) == len(functions)
    assert len(weights) == len(functions)
    report = STANDARD_RECIPES["report_generation"]
    assert report == {"clinical_f1": 0.7, "report_format": 0.2, "rouge_l": 0.1}


def test_recipe_scopes_rows_and_splits_a_reward_only_where_weights_differ() -> None:
    recipe = recipe_from_params(["format", "accuracy"], [0.2, 0.8], {
        "report_generation": {"clinical_f1": 0.7, "report_format": 0.2, "format": 0.2},
        "counting": {"format": 0.5, "count": 0.5},
    })
    functions, weights = build_recipe(recipe)
    names = _names(functions)
    assert names == ["format@default+report_generation", "format@counting", "accuracy", "clinical_f1",
                     "report_format", "count"]
    assert weights == [0.2, 0.5, 0.8, 0.7, 0.2, 0.5]
    scores = [function(["p"] * 3, COMPLETIONS, **COLUMNS) for function in functions]
    by_name = dict(zip(names, scores))
    assert by_name["format@default+report_generation"] == [None, 0.5, 1.0]
    assert by_name["format@counting"] == [1.0, None, None]
    assert by_name["accuracy"] == [None, None, 1.0]
    assert by_name["clinical_f1"] == [None, 0.0, None]  # "no effusion" against a present effusion
    assert by_name["count"] == [0.75, None, None]  # 1 - |3 - 4| / 4
    # counting: 0.5·format + 0.5·count; report: 0.2·format + 0.7·clinical + 0.2·report_format; closed: 0.2 + 0.8
    assert total_rewards(weights, scores) == pytest.approx([0.5 + 0.375, 0.1 + 0.0 + 0.2, 1.0])


def test_default_only_recipe_needs_no_task_column_and_pickles() -> None:
    functions, _ = build_recipe({DEFAULT_SCOPE: {"format": 1.0}})
    assert functions[0](["p"], ["<think>a</think><answer>b</answer>"]) == [1.0]
    restored = pickle.loads(pickle.dumps(functions[0]))
    assert isinstance(restored, ScopedReward) and restored.__name__ == "format"


def test_scoped_reward_without_task_column_says_so() -> None:
    functions, _ = build_recipe({"counting": {"count": 1.0}})
    with pytest.raises(ValueError, match="'task' column"):
        functions[0](["p"], ["<answer>3</answer>"], answer=["3"])


def test_reward_setup_and_summary_of_trl_logs() -> None:
    functions, weights = grpo.reward_setup(["format", "accuracy"], [0.2, 0.8])
    assert _names(functions) == ["format", "accuracy"] and weights == [0.2, 0.8]
    history = [
        {"step": 1, "rewards/format/mean": 0.5, "reward": 0.1, "kl": 0.0, "completions/mean_length": 9.0},
        {"step": 2, "rewards/format/mean": 1.0, "reward": float("nan"), "loss": 0.3},
        {"step": 3, "rewards/format/mean": 0.75, "reward": 0.5},
        {"train_runtime": 3.0},
    ]
    series = grpo.reward_series(history)
    assert series["rewards/format/mean"] == ([1, 2, 3], [0.5, 1.0, 0.75])
    assert series["reward"] == ([1, 3], [0.1, 0.5])  # a NaN total (no scorable row) is skipped
    summary = grpo.reward_summary(history, window=1)
    assert summary["reward"] == {"first": 0.1, "last": 0.5}


def test_resume_checkpoint_picks_the_newest(tmp_path) -> None:
    for step in (5, 40, 10, 50):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if step != 50:  # checkpoint-50 was cut off before the Trainer wrote its state
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert grpo.resume_checkpoint(tmp_path, resume=True) == str(tmp_path / "checkpoint-40")
    assert grpo.resume_checkpoint(tmp_path, resume=False) is None
    assert grpo.resume_checkpoint(tmp_path / "missing", resume=True) is None
