"""GRPO reward functions with TRL's signature `f(prompts, completions, **columns) -> list[float]`.

Every reward is pure and total: any completion (a string or TRL's list of chat messages) gives a
finite float inside the range its docstring states. Missing dataset columns are a set-up error
and raise a ValueError naming the column. The answer rewards judge the `<answer>` content, or
the whole text when the completion has no tags (the `plain` answer format).
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache

from medlib.evaluation.parsing import (
    TASK_TYPES,
    answers_match,
    completion_text,
    extract_answer,
    has_valid_format,
    normalize_option_letter,
    normalize_text,
    parse_answer,
)
from medlib.training.rewards.clinical import clinical_f1
from medlib.training.rewards.parsing import answer_content, matched_ious, report_sections

RewardFunction = Callable[..., list[float]]

OFF_BY_ONE_COUNT_REWARD = 0.25
# Multiple choice (FLARE Task 5 design): a wrong or missing letter costs a little.
CHOICE_RIGHT, CHOICE_WRONG = 1.0, -0.2
# Numeric answers: (largest absolute error, reward) steps, then the far-off and invalid rewards.
NUMERIC_STEPS = ((2.0, 1.0), (5.0, 0.5), (10.0, 0.0))
NUMERIC_FAR, NUMERIC_INVALID = -0.5, -1.0
PERCENT_RANGE = (0.0, 100.0)
# Report structure: words of the whole report allowed, and the similarity that counts as a copy.
REPORT_WORDS = (10, 300)
COPY_SIMILARITY = 0.8
DETECTION_IOU_THRESHOLD = 0.5


def _column(kwargs: dict, name: str, n_rows: int) -> list:
    """A dataset column TRL passed as a keyword argument; ValueError naming it when it is missing."""
    if name not in kwargs:
        raise ValueError(f"reward needs the dataset column {name!r}; got columns {sorted(kwargs)}")
    column = list(kwargs[name])
    if len(column) != n_rows:
        raise ValueError(f"column {name!r} has {len(column)} rows for {n_rows} completions")
    return column


def _optional_column(kwargs: dict, name: str, n_rows: int) -> list:
    """A dataset column, or None for every row when the data set has no such column."""
    return _column(kwargs, name, n_rows) if kwargs.get(name) is not None else [None] * n_rows


def _choices(value: object) -> list[str] | None:
    """A row's choices as a list of strings, or None."""
    return [str(choice) for choice in value] if isinstance(value, (list, tuple)) and value else None


def _text(value: object) -> str:
    """A reference cell as text ('' for None)."""
    return "" if value is None else str(value)


def _answers(completions: Sequence) -> list[str | None]:
    """The judged answer of each completion (see the module docstring), None when there is none."""
    return [answer_content(completion_text(completion)) for completion in completions]


# --- format ------------------------------------------------------------------------


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


def answer_format_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """1.0 for `<answer>…</answer>` with or without a leading think block, 0.5 for a closed answer amid text, else 0.0."""
    rewards = []
    for completion in completions:
        text = completion_text(completion)
        if has_valid_format(text, require_think=False):
            rewards.append(1.0)
        else:
            rewards.append(0.5 if extract_answer(text) is not None else 0.0)
    return rewards


def _is_copy(findings: str, impression: str) -> bool:
    """True when one section repeats the other (containment or word-sequence similarity)."""
    first, second = normalize_text(findings), normalize_text(impression)
    if first in second or second in first:
        return True
    matcher = difflib.SequenceMatcher(None, first.split(), second.split(), autojunk=False)
    return matcher.ratio() >= COPY_SIMILARITY


def _report_structure(text: str) -> float:
    """Quarter points: Findings, Impression, length window, sections not copied from each other."""
    sections = report_sections(text)
    findings, impression = sections.get("findings", ""), sections.get("impression", "")
    words = len(findings.split()) + len(impression.split())
    score = 0.25 * bool(findings) + 0.25 * bool(impression)
    score += 0.25 * (REPORT_WORDS[0] <= words <= REPORT_WORDS[1])
    if findings and impression and not _is_copy(findings, impression):
        score += 0.25
    return score


def report_format_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: 0.25 each for a non-empty `Findings:` and `Impression:`, words in REPORT_WORDS, no copy-paste."""
    return [_report_structure(answer or "") for answer in _answers(completions)]


# --- answers -----------------------------------------------------------------------


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
    choices = _optional_column(kwargs, "choices", n_rows)
    unknown = sorted({str(task) for task in tasks} - set(TASK_TYPES))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; expected one of {', '.join(TASK_TYPES)}")
    return [
        _answer_reward(task, completion, reference, row_choices)
        for task, completion, reference, row_choices in zip(
            tasks, completions, answers, choices, strict=True
        )
    ]


def _choice_score(answer: str | None, reference: object, choices: object) -> float:
    """CHOICE_RIGHT when the answer names the reference's option letter; 0.0 if the reference names none."""
    valid = _choices(choices)
    expected = normalize_option_letter(_text(reference), valid)
    if expected is None:
        return 0.0
    given = normalize_option_letter(answer, valid) if answer is not None else None
    return CHOICE_RIGHT if given == expected else CHOICE_WRONG


def choice_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In {-0.2, 0, 1}: 1.0 for the right option letter ("c", "(C)", "C." or the choice text), -0.2 wrong or missing."""
    n_rows = len(completions)
    answers = _column(kwargs, "answer", n_rows)
    choices = _optional_column(kwargs, "choices", n_rows)
    return [
        _choice_score(given, reference, row_choices)
        for given, reference, row_choices in zip(_answers(completions), answers, choices, strict=True)
    ]


def _value_range(reference_text: str, row_range: object) -> tuple[float, float]:
    """Valid prediction range: the row's `value_range`, [0, 100] for a percentage, else unbounded."""
    if isinstance(row_range, (list, tuple)) and len(row_range) == 2:
        low, high = (parse_answer("regression", _text(bound))[0] for bound in row_range)
        if low is not None and high is not None:
            return float(low), float(high)
    if reference_text.strip().endswith("%"):
        return PERCENT_RANGE
    return -math.inf, math.inf


def _numeric_score(answer: str | None, reference: object, row_range: object) -> float:
    """Error-shaped reward of one numeric answer; 0.0 when the reference holds no number."""
    reference_text = _text(reference)
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
    """In [-1, 1]: 1.0 within 2 of the reference, 0.5 within 5, 0.0 within 10, -0.5 beyond, -1.0 missing or out of range."""
    n_rows = len(completions)
    answers = _column(kwargs, "answer", n_rows)
    ranges = _optional_column(kwargs, "value_range", n_rows)
    return [
        _numeric_score(given, reference, row_range)
        for given, reference, row_range in zip(_answers(completions), answers, ranges, strict=True)
    ]


def math_verify_available() -> bool:
    """Whether the optional math-verify package is installed."""
    return importlib.util.find_spec("math_verify") is not None


def _symbolic_match(answer: str, reference: str) -> bool | None:
    """math-verify's verdict when both sides parse as maths, else None."""
    from math_verify import parse, verify

    # math-verify's timeouts use SIGALRM, which only the main thread may set.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
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
    reference_text = _text(reference)
    if answer is None or not reference_text.strip():
        return 0.0
    if normalize_text(answer) == normalize_text(reference_text):
        return 1.0
    return float(bool(use_math_verify and _symbolic_match(answer, reference_text)))


def exact_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In {0, 1}: normalised exact match, or math-verify equivalence when it is installed and both sides are maths."""
    answers = _column(kwargs, "answer", len(completions))
    use_math_verify = math_verify_available()
    return [
        _exact_score(given, reference, use_math_verify)
        for given, reference in zip(_answers(completions), answers, strict=True)
    ]


def _set_f1(expected: set, found: set) -> float:
    """F1 of two sets; 1.0 when both are empty."""
    if not expected and not found:
        return 1.0
    return 2 * len(expected & found) / (len(expected) + len(found))


def _multilabel_score(answer: str | None, reference: object) -> float:
    """F1 of the predicted and reference label sets (labels split on ';' or ',')."""
    expected, _ = parse_answer("multi_label", _text(reference))
    found, _ = parse_answer("multi_label", answer) if answer else (None, "missing")
    if expected is None or found is None:
        return 0.0
    return _set_f1(set(expected), set(found))


def multilabel_f1_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: F1 between predicted and reference label sets; 0.0 when either has no labels."""
    answers = _column(kwargs, "answer", len(completions))
    return [_multilabel_score(given, reference) for given, reference in zip(_answers(completions), answers, strict=True)]


def _box_groups(task: object, text: str | None) -> dict[str, list[list[float]]] | None:
    """Boxes grouped by instance key (one group for plain detection), or None if unparseable."""
    if text is None:
        return None
    if task == "instance_detection":
        instances, _ = parse_answer("instance_detection", text)
        return instances
    boxes, _ = parse_answer("detection", text)
    return None if boxes is None else {"": boxes}


def _detection_scores(task: object, answer: str | None, reference: object) -> tuple[float, float]:
    """(F1 at DETECTION_IOU_THRESHOLD, matched IoU per box) of one answer; both 1.0 when neither has boxes."""
    expected, found = _box_groups(task, _text(reference)), _box_groups(task, answer)
    if expected is None or found is None:
        return 0.0, 0.0
    n_expected = sum(len(boxes) for boxes in expected.values())
    n_found = sum(len(boxes) for boxes in found.values())
    if n_expected == 0 and n_found == 0:
        return 1.0, 1.0
    ious = [iou for key in expected.keys() & found.keys() for iou in matched_ious(found[key], expected[key])]
    hits = sum(iou >= DETECTION_IOU_THRESHOLD for iou in ious)
    return 2 * hits / (n_expected + n_found), sum(ious) / max(n_expected, n_found)


def _detection_rows(completions: Sequence, kwargs: dict) -> list[tuple[float, float]]:
    """Detection scores of every row, boxes grouped by instance for `instance_detection` rows."""
    n_rows = len(completions)
    answers = _column(kwargs, "answer", n_rows)
    tasks = _optional_column(kwargs, "task", n_rows)
    return [
        _detection_scores(task, given, reference)
        for task, given, reference in zip(tasks, _answers(completions), answers, strict=True)
    ]


def detection_f1_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: F1 of boxes matched one-to-one at IoU >= 0.5 (per instance key for instance detection)."""
    return [f1 for f1, _ in _detection_rows(completions, kwargs)]


def detection_iou_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: summed IoU of the best one-to-one box pairing over the larger of the two box counts."""
    return [iou for _, iou in _detection_rows(completions, kwargs)]


def _count_score(answer: str | None, reference: object) -> float:
    """1 - |error| / max(reference, 1), floored at 0; 0.0 when either count is unreadable."""
    expected, _ = parse_answer("counting", _text(reference))
    found, _ = parse_answer("counting", answer) if answer else (None, "missing")
    if expected is None or found is None:
        return 0.0
    error = abs(float(found) - float(expected))
    return max(0.0, 1.0 - error / max(float(expected), 1.0))


def count_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: one minus the relative counting error (capped at 1); 0.0 for an unreadable count."""
    answers = _column(kwargs, "answer", len(completions))
    return [_count_score(given, reference) for given, reference in zip(_answers(completions), answers, strict=True)]


# --- text --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _rouge_scorer():
    """rouge-score's ROUGE-L scorer, built once."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def _rouge_l(answer: str | None, reference: object) -> float:
    """ROUGE-L F-measure (rouge-score); 0.0 for a missing answer."""
    if not answer:
        return 0.0
    return float(_rouge_scorer().score(_text(reference), answer)["rougeL"].fmeasure)


def rouge_l_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: ROUGE-L F-measure of the answer against the reference (rouge-score, no stemming)."""
    answers = _column(kwargs, "answer", len(completions))
    return [_rouge_l(given, reference) for given, reference in zip(_answers(completions), answers, strict=True)]


def clinical_f1_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: F1 of (finding, present/absent/uncertain) pairs of answer and reference (offline lexicon)."""
    answers = _column(kwargs, "answer", len(completions))
    return [
        clinical_f1(_text(reference), given) if given is not None else 0.0
        for given, reference in zip(_answers(completions), answers, strict=True)
    ]


def radgraph_available() -> bool:
    """Whether the optional radgraph package is installed (its model weights come from the hub)."""
    return importlib.util.find_spec("radgraph") is not None


@lru_cache(maxsize=1)
def _radgraph_scorer():
    """radgraph's partial-level F1 scorer, loaded once."""
    from radgraph import F1RadGraph

    return F1RadGraph(reward_level="partial")


def radgraph_f1_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: RadGraph partial F1 (entities and relations) of answer vs reference; needs `pip install radgraph`."""
    if not radgraph_available():
        raise ImportError("radgraph_f1 needs the optional radgraph package: pip install radgraph")
    references = [_text(r) for r in _column(kwargs, "answer", len(completions))]
    answers = _answers(completions)
    scored = [i for i, (given, ref) in enumerate(zip(answers, references, strict=True)) if given and ref.strip()]
    rewards = [0.0] * len(completions)
    if scored:
        _, per_pair, _, _ = _radgraph_scorer()(hyps=[answers[i] for i in scored], refs=[references[i] for i in scored])
        for index, value in zip(scored, per_pair, strict=True):
            rewards[index] = float(value) if math.isfinite(float(value)) else 0.0
    return rewards


REWARD_FUNCTIONS: dict[str, RewardFunction] = {
    "format": format_reward,
    "answer_format": answer_format_reward,
    "report_format": report_format_reward,
    "accuracy": accuracy_reward,
    "choice": choice_reward,
    "numeric": numeric_reward,
    "exact": exact_reward,
    "multilabel_f1": multilabel_f1_reward,
    "detection_f1": detection_f1_reward,
    "detection_iou": detection_iou_reward,
    "count": count_reward,
    "rouge_l": rouge_l_reward,
    "clinical_f1": clinical_f1_reward,
    "radgraph_f1": radgraph_f1_reward,
}
# Documented (low, high) of each reward: the property tests hold every function to it.
REWARD_BOUNDS: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in REWARD_FUNCTIONS},
    "choice": (CHOICE_WRONG, CHOICE_RIGHT),
    "numeric": (NUMERIC_INVALID, 1.0),
}
OPTIONAL_REWARDS = {"radgraph_f1": radgraph_available}


def build_reward_functions(names: list[str]) -> list[RewardFunction]:
    """Reward functions for the given registry names, in order; ValueError naming an unknown one."""
    unknown = [name for name in names if name not in REWARD_FUNCTIONS]
    if unknown:
        raise ValueError(
            f"unknown reward(s) {unknown}; known rewards: {', '.join(sorted(REWARD_FUNCTIONS))}"
        )
    missing = [name for name in names if name in OPTIONAL_REWARDS and not OPTIONAL_REWARDS[name]()]
    if missing:
        raise ValueError(f"reward(s) {missing} need optional packages that are not installed (pip install radgraph)")
    return [REWARD_FUNCTIONS[name] for name in names]
