"""Box overlap shared by the detection metrics and the detection rewards: one IoU, two matchings.

`match_boxes` is FLARE 2025's greedy matching (its threshold quirk, IoU strictly above the threshold,
behind `strict`); `matched_ious` is the one-to-one pairing of highest total IoU the rewards use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Boxes beyond this many per answer count as unmatched predictions without entering the matching.
MAX_BOXES = 100


def box_iou(first: Sequence[float], second: Sequence[float]) -> float:
    """IoU of two `[x1, y1, x2, y2]` boxes in [0, 1]; 0 for disjoint, touching, reversed or non-finite boxes.

    On finite boxes this is FLARE 2025's `calculate_iou` number for number (a reversed box never
    intersects there either).

    >>> box_iou([0, 0, 2, 2], [0, 0, 2, 1])
    0.5
    >>> box_iou([0, 0, 1, 1], [1, 1, 2, 2])
    0.0
    """
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    intersection = max(0.0, width) * max(0.0, height)
    area_first = max(0.0, first[2] - first[0]) * max(0.0, first[3] - first[1])
    area_second = max(0.0, second[2] - second[0]) * max(0.0, second[3] - second[1])
    union = area_first + area_second - intersection
    if not math.isfinite(union) or union <= 0.0:
        return 0.0
    iou = intersection / union
    return min(1.0, max(0.0, iou)) if math.isfinite(iou) else 0.0


def iou_matches(iou: float, threshold: float, strict: bool) -> bool:
    """Whether an IoU counts as a match: above the threshold (strict, FLARE's `iou > 0.5`) or at least it."""
    return iou > threshold if strict else iou >= threshold


def match_boxes(
    predicted: Sequence[Sequence[float]], reference: Sequence[Sequence[float]], threshold: float, strict: bool = True
) -> tuple[int, int, int]:
    """(TP, FP, FN) by FLARE's greedy matching: each predicted box in turn takes the unmatched reference
    box of highest (positive) IoU; a match needs `iou_matches(iou, threshold, strict)`.

    >>> match_boxes([[0, 0, 2, 2]], [[0, 0, 2, 1]], 0.5, strict=True)
    (0, 1, 1)
    >>> match_boxes([[0, 0, 2, 2]], [[0, 0, 2, 1]], 0.5, strict=False)
    (1, 0, 0)
    """
    matched: set[int] = set()
    true_positives = 0
    for box in predicted:
        best_iou, best_index = 0.0, -1
        for index, candidate in enumerate(reference):
            if index in matched:
                continue
            iou = box_iou(box, candidate)
            if iou > best_iou:
                best_iou, best_index = iou, index
        if best_index >= 0 and iou_matches(best_iou, threshold, strict):
            matched.add(best_index)
            true_positives += 1
    return true_positives, len(predicted) - true_positives, len(reference) - len(matched)


def matched_ious(predicted: list[list[float]], reference: list[list[float]]) -> list[float]:
    """IoUs of the one-to-one pairing of predicted and reference boxes that maximises total IoU (scipy).

    >>> matched_ious([[0, 0, 1, 1], [5, 5, 6, 6]], [[5, 5, 6, 6]])
    [1.0]
    """
    from scipy.optimize import linear_sum_assignment

    predicted, reference = predicted[:MAX_BOXES], reference[:MAX_BOXES]
    if not predicted or not reference:
        return []
    ious = [[box_iou(p, r) for r in reference] for p in predicted]
    rows, columns = linear_sum_assignment(ious, maximize=True)
    return [float(ious[row][column]) for row, column in zip(rows, columns)]
