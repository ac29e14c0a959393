"""Structured-answer rewards: label-set F1, detection F1 and IoU, relative counting error."""

from __future__ import annotations

from collections.abc import Sequence

from medlib.evaluation.boxes import iou_matches, matched_ious
from medlib.evaluation.parsing import parse_answer
from medlib.training.rewards.columns import column, judged_answers, optional_column, text_of

DETECTION_IOU_THRESHOLD = 0.5


def _set_f1(expected: set, found: set) -> float:
    """F1 of two sets; 1.0 when both are empty."""
    if not expected and not found:
        return 1.0
    return 2 * len(expected & found) / (len(expected) + len(found))


def _multilabel_score(answer: str | None, reference: object) -> float:
    """F1 of the predicted and reference label sets (labels split on ';' or ',')."""
    expected, _ = parse_answer("multi_label", text_of(reference))
    found, _ = parse_answer("multi_label", answer) if answer else (None, "missing")
    if expected is None or found is None:
        return 0.0
    return _set_f1(set(expected), set(found))


def multilabel_f1_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: F1 between predicted and reference label sets; 0.0 when either has no labels.

    >>> multilabel_f1_reward(None, ["<answer>caries; filling</answer>", "<answer>caries</answer>"],
    ...                      answer=["caries; filling"] * 2)
    [1.0, 0.6666666666666666]
    """
    answers = column(kwargs, "answer", len(completions))
    return [_multilabel_score(given, reference)
            for given, reference in zip(judged_answers(completions), answers, strict=True)]


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
    expected, found = _box_groups(task, text_of(reference)), _box_groups(task, answer)
    if expected is None or found is None:
        return 0.0, 0.0
    n_expected = sum(len(boxes) for boxes in expected.values())
    n_found = sum(len(boxes) for boxes in found.values())
    if n_expected == 0 and n_found == 0:
        return 1.0, 1.0
    ious = [iou for key in expected.keys() & found.keys() for iou in matched_ious(found[key], expected[key])]
    hits = sum(iou_matches(iou, DETECTION_IOU_THRESHOLD, strict=False) for iou in ious)
    return 2 * hits / (n_expected + n_found), sum(ious) / max(n_expected, n_found)


def _detection_rows(completions: Sequence, kwargs: dict) -> list[tuple[float, float]]:
    """Detection scores of every row, boxes grouped by instance for `instance_detection` rows."""
    n_rows = len(completions)
    answers = column(kwargs, "answer", n_rows)
    tasks = optional_column(kwargs, "task", n_rows)
    return [
        _detection_scores(task, given, reference)
        for task, given, reference in zip(tasks, judged_answers(completions), answers, strict=True)
    ]


def detection_f1_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: F1 of boxes matched one-to-one at IoU >= 0.5 (per instance key for instance detection).

    >>> detection_f1_reward(None, ["<answer>[[0, 0, 10, 10]]</answer>", "<answer>[[0, 0, 10, 10], [50, 50, 60, 60]]</answer>"],
    ...                     answer=["[[0, 0, 10, 9]]"] * 2)
    [1.0, 0.6666666666666666]
    """
    return [f1 for f1, _ in _detection_rows(completions, kwargs)]


def detection_iou_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: summed IoU of the best one-to-one box pairing over the larger of the two box counts.

    >>> detection_iou_reward(None, ["<answer>[[0, 0, 10, 10], [50, 50, 60, 60]]</answer>"], answer=["[[0, 0, 10, 10]]"])
    [0.5]
    """
    return [iou for _, iou in _detection_rows(completions, kwargs)]


def _count_score(answer: str | None, reference: object) -> float:
    """1 - |error| / max(reference, 1), floored at 0; 0.0 when either count is unreadable."""
    expected, _ = parse_answer("counting", text_of(reference))
    found, _ = parse_answer("counting", answer) if answer else (None, "missing")
    if expected is None or found is None:
        return 0.0
    error = abs(float(found) - float(expected))
    return max(0.0, 1.0 - error / max(float(expected), 1.0))


def count_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: one minus the relative counting error (capped at 1); 0.0 for an unreadable count.

    >>> count_reward(None, ["<answer>4</answer>", "<answer>twelve</answer>", "<answer>many</answer>"], answer=["5"] * 3)
    [0.8, 0.0, 0.0]
    """
    answers = column(kwargs, "answer", len(completions))
    return [_count_score(given, reference) for given, reference in zip(judged_answers(completions), answers, strict=True)]
