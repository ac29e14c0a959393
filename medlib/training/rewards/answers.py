"""Answer rewards: task-aware accuracy, option letters, numeric error steps and (symbolic) exact match.

Each judges the `<answer>` content, or the whole text when the completion has no tags at all (the
`plain` answer format); a tagged completion whose answer never closed has no answer.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Callable, Sequence

from medlib.data.records import TASKS
from medlib.evaluation.parsing import (
    answers_match,
    completion_text,
    normalize_option_letter,
    normalize_text,
    parse_answer,
)
from medlib.training.rewards.columns import choices_of, column, judged_answers, optional_column, text_of
from medlib.training.rewards.parsing import answer_content

OFF_BY_ONE_COUNT_REWARD = 0.25
# Multiple choice (FLARE Task 5 design): a wrong or missing letter costs a little.
CHOICE_RIGHT, CHOICE_WRONG = 1.0, -0.2
# Numeric answers: (largest absolute error, reward) steps, then the far-off and invalid rewards.
NUMERIC_STEPS = ((2.0, 1.0), (5.0, 0.5), (10.0, 0.0))
NUMERIC_FAR, NUMERIC_INVALID = -0.5, -1.0
PERCENT_RANGE = (0.0, 100.0)


def _answer_reward(task: str, completion: object, reference: object, choices: object) -> float:
    """Reward of one completion under its task's parsing rules."""
    answer = answer_content(completion_text(completion))
    if answer is None:
        return 0.0
    valid_choices = list(choices) if isinstance(choices, (list, tuple)) else None
    parsed, _ = parse_answer(task, answer, valid_choices)
    reference_text = text_of(reference)
    if answers_match(task, parsed, reference_text, valid_choices):
        return 1.0
    if task == "counting" and parsed is not None:
        reference_count, _ = parse_answer(task, reference_text)
        if reference_count is not None and abs(parsed - reference_count) == 1:
            return OFF_BY_ONE_COUNT_REWARD
    return 0.0


def accuracy_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """1.0 if the answer matches the reference under its task's rules, 0.25 for a count off by one, else 0.0.

    >>> accuracy_reward(None, ["yes", "<answer>yes</answer>", "<answer>no</answer>"], task=["vqa_closed"] * 3,
    ...                 answer=["yes"] * 3)
    [1.0, 1.0, 0.0]
    >>> accuracy_reward(None, ["<answer>4</answer>"], task=["counting"], answer=["3"])
    [0.25]
    """
    n_rows = len(completions)
    tasks = column(kwargs, "task", n_rows)
    answers = column(kwargs, "answer", n_rows)
    choices = optional_column(kwargs, "choices", n_rows)
    unknown = sorted({str(task) for task in tasks} - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; expected one of {', '.join(TASKS)}")
    return [
        _answer_reward(task, completion, reference, row_choices)
        for task, completion, reference, row_choices in zip(tasks, completions, answers, choices, strict=True)
    ]


def _judged_scores(
    score: Callable[[str | None, object, object], float], completions: Sequence, kwargs: dict, extra: str
) -> list[float]:
    """score(judged answer, reference, the row's optional `extra` column) for every completion."""
    n_rows = len(completions)
    answers = column(kwargs, "answer", n_rows)
    extras = optional_column(kwargs, extra, n_rows)
    return [score(given, reference, value)
            for given, reference, value in zip(judged_answers(completions), answers, extras, strict=True)]


def _choice_score(answer: str | None, reference: object, choices: object) -> float:
    """CHOICE_RIGHT when the answer names the reference's option letter; 0.0 if the reference names none."""
    valid = choices_of(choices)
    expected = normalize_option_letter(text_of(reference), valid)
    if expected is None:
        return 0.0
    given = normalize_option_letter(answer, valid) if answer is not None else None
    return CHOICE_RIGHT if given == expected else CHOICE_WRONG


def choice_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In {-0.2, 0, 1}: 1.0 for the right option letter ("c", "(C)", "C." or the choice text), -0.2 wrong or missing.

    >>> choice_reward(None, ["<answer>(c)</answer>", "<answer>B</answer>", "<answer>left</answer>"], answer=["C"] * 3,
    ...               choices=[["up", "down", "left"]] * 3)
    [1.0, -0.2, 1.0]
    """
    return _judged_scores(_choice_score, completions, kwargs, "choices")


def _value_range(reference_text: str, row_range: object) -> tuple[float, float]:
    """Valid prediction range: the row's `value_range`, [0, 100] for a percentage, else unbounded."""
    if isinstance(row_range, (list, tuple)) and len(row_range) == 2:
        low, high = (parse_answer("regression", text_of(bound))[0] for bound in row_range)
        if low is not None and high is not None:
            return float(low), float(high)
    if reference_text.strip().endswith("%"):
        return PERCENT_RANGE
    return -math.inf, math.inf


def _numeric_score(answer: str | None, reference: object, row_range: object) -> float:
    """Error-shaped reward of one numeric answer; 0.0 when the reference holds no number."""
    reference_text = text_of(reference)
    expected, _ = parse_answer("regression", reference_text)
    if expected is None:
        return 0.0
    value, _ = parse_answer("regression", answer) if answer else (None, "missing")
    low, high = _value_range(reference_text, row_range)
    if value is None or not low <= value <= high:
        return NUMERIC_INVALID
    error = abs(value - expected)
    for largest_error, reward in NUMERIC_STEPS:
        if error <= largest_error:
            return reward
    return NUMERIC_FAR


def numeric_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [-1, 1]: 1.0 within 2 of the reference, 0.5 within 5, 0.0 within 10, -0.5 beyond, -1.0 missing or out of range.

    >>> numeric_reward(None, ["<answer>46%</answer>", "<answer>49</answer>", "<answer>120%</answer>", "none"],
    ...                answer=["45%"] * 4)
    [1.0, 0.5, -1.0, -1.0]
    """
    return _judged_scores(_numeric_score, completions, kwargs, "value_range")


def math_verify_available() -> bool:
    """Whether the optional math-verify package is installed."""
    return importlib.util.find_spec("math_verify") is not None


def math_verify_timeout() -> int | None:
    """math-verify's default 5 s timeouts use SIGALRM, which only the main thread may set: None elsewhere."""
    return 5 if threading.current_thread() is threading.main_thread() else None


def _symbolic_match(answer: str, reference: str) -> bool | None:
    """math-verify's verdict when both sides parse as maths, else None."""
    from math_verify import parse, verify

    timeout = math_verify_timeout()
    try:
        gold, target = parse(reference, parsing_timeout=timeout), parse(answer, parsing_timeout=timeout)
        if not gold or not target:
            return None
        return bool(verify(gold, target, timeout_seconds=timeout))
    # A reward must not crash a training run on any string sympy cannot digest.
    except Exception:  # noqa: BLE001
        return None


def _exact_score(answer: str | None, reference: object, use_math_verify: bool) -> float:
    """1.0 when the normalised texts are equal or math-verify finds them equivalent, else 0.0."""
    reference_text = text_of(reference)
    if answer is None or not reference_text.strip():
        return 0.0
    if normalize_text(answer) == normalize_text(reference_text):
        return 1.0
    return float(bool(use_math_verify and _symbolic_match(answer, reference_text)))


def exact_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In {0, 1}: normalised exact match, or math-verify equivalence when it is installed and both sides are maths.

    >>> exact_reward(None, ["<answer>The Heart.</answer>", "<answer>lung</answer>"], answer=["heart"] * 2)
    [1.0, 0.0]
    """
    answers = column(kwargs, "answer", len(completions))
    use_math_verify = math_verify_available()
    return [
        _exact_score(given, reference, use_math_verify)
        for given, reference in zip(judged_answers(completions), answers, strict=True)
    ]
