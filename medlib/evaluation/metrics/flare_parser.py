"""The `flare` parser: FLARE 2025's baseline answer parsing (`parse_answer` of evaluate_model.py in
medfm-flare/FLARE25-QWen2.5VL), quirks included, and how it reads references."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

FLARE_TASKS = ("classification", "multi_label", "detection", "instance_detection", "counting", "regression")

_ANSWER_BLOCK = re.compile(r"<answer>(.*)</answer>", re.DOTALL)
_FLARE_LETTER = re.compile(r"\b([A-E])(?:[.\)\s]|$)")
_FLARE_EDGE_PUNCTUATION = re.compile(r"^[\s\.,:'\"]+|[\s\.,:'\"]+$")
_FLARE_BRACKETED_BOX = re.compile(r"\[\s*\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]\s*\]")
_FLARE_LOOSE_BOX = re.compile(r"\[?\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]?")
_FLARE_LABEL_LIST = re.compile(r"\[([^\]]+)\]")
_FLARE_INCOMPLETE = (
    "to accurately count", "to provide an accurate count", "to count the cells", "we need to",
    "i would need to", "to determine", "to estimate", "follow these steps", "carefully examine", "inspect each",
)  # fmt: skip
_FLARE_EXPLICIT_COUNTS = tuple(
    re.compile(pattern)
    for pattern in (
        r"count.*?(?:is|are|equals?|totals?)\s*:?\s*(\d+)",
        r"(?:total|number|count)\s*(?:is|are|equals?|of)?\s*:?\s*(\d+)",
        r"(\d+)\s*cells?\s*(?:visible|present|identified|counted)",
        r"approximately\s*(\d+)",
        r"estimated?\s*(\d+)",
    )
)
_FLARE_STANDALONE_NUMBER = re.compile(r"(?<!step\s)(?<!\d\.\s)(?<!procedure\s)(\d+)(?!\.\s)", re.IGNORECASE)
_FLARE_PERCENT = re.compile(r"(-?\d+\.?\d*)\s*%")
_FLARE_DECIMAL = re.compile(r"(-?\d+\.?\d*)")


def flare_clean(text: str) -> str:
    """The baseline's output cleaning: drop chat-template residue, keep what follows the last "Answer:"."""
    cleaned = text
    if "assistant\n" in cleaned:
        cleaned = cleaned.rsplit("assistant\n", 1)[-1].strip()
    elif "assistant:" in cleaned.lower():
        cleaned = cleaned[cleaned.lower().rfind("assistant:") + len("assistant:") :].strip()
    for marker in ("system\n", "user\n"):
        if cleaned.startswith(marker):
            cleaned = cleaned[len(marker) :].strip()
    if "Answer:" in cleaned:
        cleaned = cleaned.rsplit("Answer:", 1)[-1].strip()
    return cleaned


def _flare_classification(text: str) -> str:
    """First standalone A–E in the upper-cased text ("a mass" reads as A), else the last word."""
    found = _FLARE_LETTER.search(text.upper())
    if found:
        answer = found.group(1)
    else:
        words = text.split()
        answer = words[-1] if words else text
    return _FLARE_EDGE_PUNCTUATION.sub("", answer)


def _flare_multi_label(text: str) -> list[str]:
    """Labels from `[a, b]`, else split on ";" if present, else ","; case kept."""
    if "[" in text and "]" in text:
        found = _FLARE_LABEL_LIST.search(text)
        if found:
            inner = found.group(1)
            separator = ";" if ";" in inner else ","
            return [label.strip().strip("'\"") for label in inner.split(separator) if label.strip()]
    if ";" in text or "," in text:
        labels = [label.strip() for label in text.split(";" if ";" in text else ",") if label.strip()]
    else:
        labels = [text.strip()] if text.strip() else []
    cleaned = [label.strip().strip("'\".,;") for label in labels]
    cleaned = [label for label in cleaned if label]
    return cleaned if cleaned else [text.strip()]


def _flare_int_box(box: list) -> list[int]:
    """Coordinates truncated to int, as the baseline does (raises on non-numbers like it)."""
    return [int(coordinate) for coordinate in box]


def _flare_detection(text: str) -> list[list[int]]:
    """Integer boxes: a JSON object's boxes, else `[[a,b,c,d]]`, else any `a,b,c,d` (decimals and signs lost)."""
    try:
        if text.startswith("{") and text.endswith("}"):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError:
                loaded = None
            if isinstance(loaded, dict):
                return [
                    _flare_int_box(box)
                    for boxes in loaded.values() if isinstance(boxes, list)
                    for box in boxes if isinstance(box, list) and len(box) == 4
                ]  # fmt: skip
        for pattern in (_FLARE_BRACKETED_BOX, _FLARE_LOOSE_BOX):
            found = pattern.findall(text)
            if found:
                return [[int(value) for value in box] for box in found]
        return []
    except (TypeError, ValueError, OverflowError):
        return []


def _flare_instances(text: str) -> dict[str, list[list[int]]]:
    """Instance → boxes from a JSON object spanning the whole text (leading spaces or a newline: nothing)."""
    if not (text.startswith("{") and text.endswith("}")):
        return {}
    try:
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            return {}
        instances = {}
        for key, boxes in loaded.items():
            if not isinstance(boxes, list):
                continue
            if boxes and isinstance(boxes[0], list) and len(boxes[0]) == 4:
                # Only the first box's shape is checked: later boxes may be malformed, and are kept.
                instances[str(key)] = [_flare_int_box(box) for box in boxes]
            elif len(boxes) == 4 and all(isinstance(value, (int, float)) for value in boxes):
                instances[str(key)] = [_flare_int_box(boxes)]
        return instances
    except (TypeError, ValueError, OverflowError, RecursionError):
        return {}


def _flare_count(text: str) -> int | None:
    """The baseline's count: explicit "count is N" phrases, else the largest standalone number ("1,234" → 234)."""
    lowered = text.lower()
    if any(indicator in lowered for indicator in _FLARE_INCOMPLETE):
        return None
    for pattern in _FLARE_EXPLICIT_COUNTS:
        found = pattern.findall(lowered)
        if found:
            return max(int(number) for number in found)
    found = _FLARE_STANDALONE_NUMBER.findall(text)
    # Small numbers are taken for list or step numbers unless they are the only number.
    numbers = [int(number) for number in found if int(number) > 10 or len(found) == 1]
    if numbers:
        return max(numbers)
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) else None


def _flare_regression(text: str) -> float | None:
    """First percentage, else first number ("5-10%" → -10, ".75" → 75); non-finite → None (fixed)."""
    for pattern in (_FLARE_PERCENT, _FLARE_DECIMAL):
        found = pattern.findall(text)
        if found:
            return float(found[0])
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_FLARE_PARSERS: dict[str, Callable[[str], object]] = {
    "classification": _flare_classification,
    "multi_label": _flare_multi_label,
    "detection": _flare_detection,
    "instance_detection": _flare_instances,
    "counting": _flare_count,
    "regression": _flare_regression,
}


def answer_content(text: str) -> str:
    """Content of the `<answer>` block, unstripped (FLARE's own models answer without tags), else the text."""
    found = _ANSWER_BLOCK.search(text)
    return found.group(1) if found else text


def parse_flare(task: str, text: object) -> object | None:
    """The FLARE baseline's parse of a model output for a FLARE task type; None where it finds nothing."""
    if task not in _FLARE_PARSERS:
        raise ValueError(f"no FLARE parser for task {task!r}; FLARE tasks: {', '.join(FLARE_TASKS)}")
    content = flare_clean(answer_content("" if text is None else str(text)))
    return _FLARE_PARSERS[task](content)


def flare_reference(task: str, text: object) -> object | None:
    """A reference as the baseline reads it: classification raw, counting int(float()), regression float()."""
    raw = "" if text is None else str(text)
    if task == "classification":
        return raw
    if task in ("counting", "regression"):
        try:
            value = float(raw)
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
        return int(value) if task == "counting" else value
    return parse_flare(task, raw)
