"""GRPO reward functions with TRL's signature `f(prompts, completions, **columns) -> list[float]`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from medlib.parsing import (
    TASK_TYPES,
    answers_match,
    completion_text,
    extract_answer,
    has_valid_format,
    parse_answer,
)

RewardFunction = Callable[..., list[float]]

OFF_BY_ONE_COUNT_REWARD = 0.25


def format_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """1.0 for `<think>…</think><answer>…</answer>`, 0.5 if only a closed answer tag is present, else 0.0."""
    rewards = []
    for completion in completions:
        text = completion_text(completion)
        if has_valid_format(text):
            rewards.append(1.0)
        else:
            rewards.append(0.5 if extract_answer(text) is not None else 0.0)
    return rewards


def _column(kwargs: dict, name: str, n_rows: int) -> list:
    """A dataset column TRL passed as a keyword argument; ValueError naming it when it is missing."""
    if name not in kwargs:
        raise ValueError(f"reward needs the dataset column {name!r}; got columns {sorted(kwargs)}")
    column = list(kwargs[name])
    if len(column) != n_rows:
        raise ValueError(f"column {name!r} has {len(column)} rows for {n_rows} completions")
    return column


def _answer_reward(task: str, completion: object, reference: object, choices: object) -> float:
    """Reward of one completion: only the `<answer>` content is judged."""
    answer = extract_answer(completion_text(completion))
    if answer is None:
        return 0.0
    valid_choices = list(choices) if isinstance(choices, (list, tuple)) else None
    parsed, _ = parse_answer(task, answer, valid_choices)
    reference_text = "" if reference is None else str(reference)
    if answers_match(task, parsed, reference_text, valid_choices):
        return 1.0
    if task == "counting" and parsed is not None:
        reference_count, _ = parse_answer(task, reference_text)
        if reference_count is not None and abs(parsed - reference_count) == 1:
            return OFF_BY_ONE_COUNT_REWARD
    return 0.0


def accuracy_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """1.0 if the `<answer>` content matches the reference, 0.25 for a count off by one, else 0.0."""
    n_rows = len(completions)
    tasks = _column(kwargs, "task", n_rows)
    answers = _column(kwargs, "answer", n_rows)
    choices = list(kwargs["choices"]) if kwargs.get("choices") is not None else [None] * n_rows
    unknown = sorted({str(task) for task in tasks} - set(TASK_TYPES))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; expected one of {', '.join(TASK_TYPES)}")
    return [
        _answer_reward(task, completion, reference, row_choices)
        for task, completion, reference, row_choices in zip(
            tasks, completions, answers, choices, strict=True
        )
    ]


REWARD_FUNCTIONS: dict[str, RewardFunction] = {
    "format": format_reward,
    "accuracy": accuracy_reward,
}


def build_reward_functions(names: list[str]) -> list[RewardFunction]:
    """Reward functions for the given registry names, in order; ValueError naming an unknown one."""
    unknown = [name for name in names if name not in REWARD_FUNCTIONS]
    if unknown:
        raise ValueError(
            f"unknown reward(s) {unknown}; known rewards: {', '.join(sorted(REWARD_FUNCTIONS))}"
        )
    return [REWARD_FUNCTIONS[name] for name in names]
