"""Turn model output (`<think>…</think><answer>…</answer>`) into a structured answer per task type."""

from __future__ import annotations

import json
import math
import re
import string

from medlib.data.records import TASKS

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"
_WITH_THINK = re.compile(r"<think>(.*)</think>\s*<answer>(.*)</answer>", re.DOTALL)
_WITHOUT_THINK = re.compile(r"<answer>(.*)</answer>", re.DOTALL)

_DEFAULT_LETTERS = "ABCDE"
_LETTER_ALONE = re.compile(r"\(?([A-Za-z])\)?[.:)]?")
# A lowercase letter followed by text ("a mass") is prose, so leading letters need a delimiter.
_LETTER_LEADING = re.compile(r"\(([A-Za-z])\)\s*\S|([A-Za-z])\)\s*\S|([A-Z])[.:]\s+\S")
_LETTER_AFTER_KEYWORD = re.compile(
    r"\b(?i:option|choice|answer)(?:\s+(?i:is))?\s*[:\-]?\s*\(?"
    r"(?:([A-Z])\b|([a-z])(?=\)?\s*(?:[.,;:!)]|$)))"
)

_NUMBER_WORDS = {
    word: value
    for value, word in enumerate((
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen", "twenty",
    ))
}  # fmt: skip
# ASCII only: float() must accept every match, and "ſix" must not case-fold to "six".
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
# "1,234" is one thousand two hundred thirty-four, not 1 (nor FLARE's 234).
_GROUPED_NUMBER = re.compile(
    r"(?<![\w.,])[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|" + _NUMBER.pattern, re.ASCII
)
_COUNT = re.compile(
    _GROUPED_NUMBER.pattern + r"|\b(" + "|".join(_NUMBER_WORDS) + r")\b",
    re.ASCII | re.IGNORECASE,
)
_BOX = re.compile(r"\[\s*" + r"\s*,\s*".join([_NUMBER.pattern] * 4) + r"\s*\]", re.ASCII)

_PUNCTUATION = re.compile("[" + re.escape(string.punctuation) + "]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_text(text: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation and articles, collapse whitespace."""
    without_punctuation = _PUNCTUATION.sub("", str(text).lower())
    return " ".join(_ARTICLES.sub(" ", without_punctuation).split())


def _text_of_content(content: object) -> str:
    """Text of one message's content: a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return _text_of_content(content.get("text", content.get("content")))
    if isinstance(content, (list, tuple)):
        return "".join(_text_of_content(part) for part in content)
    return str(content)


def _text_of_messages(messages: list | tuple) -> str:
    """Text of the assistant messages; of every item when no message has the assistant role."""
    assistant = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    if not assistant:
        return _text_of_content(messages)
    texts = (_text_of_content(message.get("content")) for message in assistant)
    return "\n".join(text for text in texts if text)


def completion_text(completion: object) -> str:
    """Assistant text of a TRL completion (plain string or list of chat messages); never raises."""
    try:
        if completion is None:
            return ""
        if isinstance(completion, str):
            return completion
        if isinstance(completion, dict):
            return _text_of_content(completion.get("content"))
        if isinstance(completion, (list, tuple)):
            return _text_of_messages(completion)
        return str(completion)
    # A reward must not crash a training run, even on an object whose __str__ raises.
    except Exception:  # noqa: BLE001
        return ""


def extract_answer(text: str) -> str | None:
    """Stripped content of the last closed `<answer>…</answer>`, or None."""
    if not isinstance(text, str):
        return None
    last_close = text.rfind(_ANSWER_CLOSE)
    start = text.rfind(_ANSWER_OPEN, 0, max(last_close, 0))
    if last_close < 0 or start < 0:
        return None
    end = text.find(_ANSWER_CLOSE, start)
    return text[start + len(_ANSWER_OPEN) : end].strip()


def has_valid_format(text: str, require_think: bool = True) -> bool:
    """True if the text is exactly `<think>…</think><answer>…</answer>` with a non-empty answer."""
    if not isinstance(text, str):
        return False
    stripped = text.strip()
    think_count = stripped.count(_THINK_OPEN) + stripped.count(_THINK_CLOSE)
    if stripped.count(_ANSWER_OPEN) != 1 or stripped.count(_ANSWER_CLOSE) != 1:
        return False
    if think_count == 2 and stripped.count(_THINK_OPEN) == 1:
        match = _WITH_THINK.fullmatch(stripped)
    elif think_count == 0 and not require_think:
        match = _WITHOUT_THINK.fullmatch(stripped)
    else:
        return False
    return match is not None and match.group(match.lastindex).strip() != ""


def _option_letters(choices: list[str] | None) -> str:
    """Letters a valid answer may use: A, B, … per choice, else A–E."""
    if choices:
        return string.ascii_uppercase[: len(choices)]
    return _DEFAULT_LETTERS


def _loose_text(text: str) -> str:
    """Lower-case text without punctuation or extra whitespace, for matching choice texts."""
    return " ".join(_PUNCTUATION.sub(" ", str(text).lower()).split())


def _named_letter(text: str) -> str | None:
    """Upper-case letter the text names as an option ("(c)", "C) left", "answer is C"), any range."""
    found = _LETTER_ALONE.fullmatch(text) or _LETTER_LEADING.match(text)
    found = found or _LETTER_AFTER_KEYWORD.search(text)
    if found is None:
        return None
    return next(group for group in found.groups() if group).upper()


def normalize_option_letter(text: str, choices: list[str] | None = None) -> str | None:
    """Option letter named by the text ("(C)", "Option c", "the answer is C", a choice text), or None."""
    if not isinstance(text, str):
        return None
    stripped = text.strip()
    letters = _option_letters(choices)
    named = _named_letter(stripped)
    if named is not None:
        return named if named in letters else None
    if choices:
        loose = _loose_text(stripped)
        for letter, choice in zip(letters, choices):
            if loose and loose == _loose_text(choice):
                return letter
    return None


def _parse_yes_no(text: str, choices: list[str] | None) -> tuple[object | None, str | None]:
    """Yes/no from the first word; a choice letter when the choices are not yes/no."""
    loose_choices = [_loose_text(choice) for choice in choices or []]
    if loose_choices and not set(loose_choices) <= {"yes", "no"}:
        letter = normalize_option_letter(text, choices)
        return (letter, None) if letter else (None, "no matching choice")
    words = _loose_text(text).split()
    if words and words[0] in ("yes", "no"):
        return words[0], None
    letter = normalize_option_letter(text, choices) if choices else None
    if letter is not None:
        return loose_choices[ord(letter) - ord("A")], None
    return None, "no yes/no"


def _parse_classification(text: str, choices: list[str] | None) -> tuple[object | None, str | None]:
    """Option letter; without choices, a non-letter answer is kept as a normalised label."""
    letter = normalize_option_letter(text, choices)
    if letter is not None:
        return letter, None
    if choices or _named_letter(text.strip()) is not None:
        return None, "no option letter"
    label = _loose_text(text)
    return (label, None) if label else (None, "no label")


def _finite_number(token: str) -> float | None:
    """The token as a finite float, or None."""
    value = float(token.replace(",", ""))
    return value if math.isfinite(value) else None


def _parse_count(text: str) -> tuple[object | None, str | None]:
    """Non-negative integer from the first number or number word."""
    found = _COUNT.search(text)
    if found is None:
        return None, "no number"
    if found.group(1):
        return _NUMBER_WORDS[found.group(1).lower()], None
    value = _finite_number(found.group(0))
    if value is None:
        return None, "not finite"
    if not value.is_integer():
        return None, "not an integer"
    if value < 0:
        return None, "negative count"
    return int(value), None


def _parse_float(text: str) -> tuple[object | None, str | None]:
    """Float from the first number, ignoring units ("45%", "4.5 cm")."""
    found = _GROUPED_NUMBER.search(text)
    if found is None:
        return None, "no number"
    value = _finite_number(found.group(0))
    return (value, None) if value is not None else (None, "not finite")


def _parse_labels(text: str) -> tuple[object | None, str | None]:
    """Sorted unique lower-cased labels split on ";" if present, else ","."""
    separator = ";" if ";" in text else ","
    labels = {_loose_text(label) for label in text.split(separator)}
    labels.discard("")
    return (sorted(labels), None) if labels else (None, "no labels")


def _is_number(value: object) -> bool:
    """True for ints and floats but not bools."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite_float(value: object) -> float | None:
    """The number as a finite float, or None (bools, strings and huge ints included)."""
    if not _is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _as_box(value: object) -> list[float] | None:
    """[x1, y1, x2, y2] as floats if the value is four finite numbers, else None."""
    if not isinstance(value, list) or len(value) != 4:
        return None
    box = [finite_float(v) for v in value]
    return None if any(v is None for v in box) else box


def _as_boxes(value: object) -> list[list[float]] | None:
    """A list of boxes from one box or a list of boxes, else None."""
    single = _as_box(value)
    if single is not None:
        return [single]
    if not isinstance(value, list):
        return None
    boxes = [_as_box(item) for item in value]
    return None if any(box is None for box in boxes) else boxes


def _load_json_between(text: str, opener: str, closer: str) -> object | None:
    """JSON value spanning the first opener to the last closer, or None."""
    start, end = text.find(opener), text.rfind(closer)
    if start < 0 or end < start:
        return None
    try:
        return json.loads(text[start : end + 1])
    except (ValueError, RecursionError):
        return None


def _parse_boxes(text: str) -> tuple[object | None, str | None]:
    """Boxes from `[[x1,y1,x2,y2], …]` or `[x1,y1,x2,y2]`; `[]` means none found."""
    loaded = _load_json_between(text, "[", "]")
    if loaded is not None:
        boxes = _as_boxes(loaded)
        return (boxes, None) if boxes is not None else (None, "not a list of boxes")
    boxes = [[float(v) for v in _NUMBER.findall(match)] for match in _BOX.findall(text)]
    boxes = [box for box in boxes if all(math.isfinite(v) for v in box)]
    return (boxes, None) if boxes else (None, "no boxes")


def _parse_instances(text: str) -> tuple[object | None, str | None]:
    """Mapping instance key → list of boxes from a JSON object."""
    loaded = _load_json_between(text, "{", "}")
    if not isinstance(loaded, dict):
        return None, "no JSON object"
    instances = {str(key): _as_boxes(value) for key, value in loaded.items()}
    if any(boxes is None for boxes in instances.values()):
        return None, "not a list of boxes"
    return instances, None


def _parse_free_text(text: str) -> tuple[object | None, str | None]:
    """The stripped text if non-empty."""
    stripped = text.strip()
    return (stripped, None) if stripped else (None, "empty answer")


def parse_answer(
    task: str, text: str, choices: list[str] | None = None
) -> tuple[object | None, str | None]:
    """(parsed answer, None) or (None, reason) for the task's rules; the `<answer>` content is used if present."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    text = "" if text is None else str(text)
    answer = extract_answer(text)
    content = (text if answer is None else answer).strip()
    if not content:
        return None, "empty answer"
    if task == "vqa_closed":
        return _parse_yes_no(content, choices)
    if task == "classification":
        return _parse_classification(content, choices)
    if task == "counting":
        return _parse_count(content)
    if task == "regression":
        return _parse_float(content)
    if task == "multi_label":
        return _parse_labels(content)
    if task == "detection":
        return _parse_boxes(content)
    if task == "instance_detection":
        return _parse_instances(content)
    return _parse_free_text(content)


def answers_match(
    task: str, parsed: object, reference_text: str, choices: list[str] | None = None
) -> bool:
    """True if the parsed prediction equals the reference parsed under the same task rules."""
    reference, _ = parse_answer(task, reference_text, choices)
    if parsed is None or reference is None:
        return False
    if task == "regression":
        value = finite_float(parsed)
        return value is not None and abs(value - reference) <= 1e-6 * max(1.0, abs(reference))
    if task == "multi_label":
        return isinstance(parsed, list) and set(map(str, parsed)) == set(reference)
    if task in ("vqa_open", "report_generation"):
        return isinstance(parsed, str) and normalize_text(parsed) == normalize_text(reference)
    if task == "counting":
        return _is_number(parsed) and parsed == reference
    return parsed == reference
