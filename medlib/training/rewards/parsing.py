"""Parsing helpers the rewards need beyond medlib.evaluation.parsing: answer content, report sections, box matching."""

from __future__ import annotations

import math
import re

from medlib.evaluation.parsing import extract_answer

# Longest text a reward looks at: keeps quadratic steps (LCS, sequence matching) bounded.
MAX_TEXT_CHARS = 8000
# Boxes beyond this many per answer count as unmatched predictions without entering the matching.
MAX_BOXES = 100

_SECTION_HEADER = re.compile(r"(?:^|(?<=\s))(findings|impression)\s*:", re.IGNORECASE)


def answer_content(text: str) -> str | None:
    """Content of the last `<answer>` block; the whole text when it has no tags at all; else None."""
    if not isinstance(text, str):
        return None
    text = text[:MAX_TEXT_CHARS]
    answer = extract_answer(text)
    if answer is not None:
        return answer
    if "<answer>" in text or "</answer>" in text or "<think>" in text or "</think>" in text:
        return None  # a tagged completion whose answer never closed has no answer
    return text.strip()


def report_sections(text: str) -> dict[str, str]:
    """Map `findings` / `impression` to the stripped text after their first header, up to the next header."""
    headers = list(_SECTION_HEADER.finditer(text))
    sections: dict[str, str] = {}
    for index, header in enumerate(headers):
        name = header.group(1).lower()
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        sections.setdefault(name, text[header.end() : end].strip())
    return sections


def box_iou(first: list[float], second: list[float]) -> float:
    """Intersection over union of two `[x1, y1, x2, y2]` boxes; reversed corners give an empty box."""
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


def matched_ious(predicted: list[list[float]], reference: list[list[float]]) -> list[float]:
    """IoUs of the one-to-one pairing of predicted and reference boxes that maximises total IoU."""
    from scipy.optimize import linear_sum_assignment

    predicted, reference = predicted[:MAX_BOXES], reference[:MAX_BOXES]
    if not predicted or not reference:
        return []
    ious = [[box_iou(p, r) for r in reference] for p in predicted]
    rows, columns = linear_sum_assignment(ious, maximize=True)
    return [ious[row][column] for row, column in zip(rows, columns)]
