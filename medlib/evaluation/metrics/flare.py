"""FLARE 2025 task metrics with two parsers: `flare` (the baseline's evaluation, quirks included) and `robust`.

`flare` reproduces the parsing and scoring of the FLARE 2025 baseline evaluation (`evaluate_model.py` of
medfm-flare/FLARE25-QWen2.5VL) so numbers compare with FLARE tables; `robust` parses what a careful reader
would (medlib.evaluation.parsing). Three crashes/bugs of the original are fixed in both (see README, metrics section):
binary classification reporting 0 everywhere, non-finite regression answers making the MAE infinite, and
malformed boxes crashing the IoU-threshold sweep.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Sequence

from medlib.evaluation.boxes import match_boxes
from medlib.evaluation.metrics.core import UNPARSED, balanced_accuracy
from medlib.evaluation.parsing import finite_float, parse_answer

PARSERS = ("flare", "robust")
FLARE_TASKS = ("classification", "multi_label", "detection", "instance_detection", "counting", "regression")
IOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
PRIMARY_IOU = 0.5

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


# --- the `flare` parser ----------------------------------------------------------------


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


def _flare_reference(task: str, text: object) -> object | None:
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


def parse_item(task: str, text: object, parser: str = "flare", choices: list[str] | None = None) -> object | None:
    """A prediction parsed by the named parser (`flare` or `robust`); None when unparseable."""
    if parser == "flare":
        return parse_flare(task, text)
    if parser == "robust":
        return parse_answer(task, "" if text is None else str(text), choices)[0]
    raise ValueError(f"unknown parser {parser!r}; expected one of {', '.join(PARSERS)}")


def parse_reference(task: str, text: object, parser: str = "flare", choices: list[str] | None = None) -> object | None:
    """A reference answer read under the parser's conventions; None when it cannot be scored."""
    if parser == "flare":
        return _flare_reference(task, text)
    return parse_item(task, text, parser, choices)


# --- classification and multi-label ----------------------------------------------------


def flare_label(label: object) -> str:
    """The baseline's label normalisation: one letter upper-cased, anything else lower-cased; None → ""."""
    if label is None:
        return ""
    text = " ".join(str(label).strip().split())
    return text.upper() if len(text) == 1 and text.isalpha() else text.lower()


def classification_scores(references: Sequence, predictions: Sequence) -> dict:
    """Balanced accuracy (primary), accuracy and weighted F1; a None prediction is wrong.

    The original computes a binary F1 on string labels when there are two classes, which raises and
    makes it report 0 for every metric; here the real values are computed in every case.
    """
    from sklearn.metrics import f1_score

    labels_true = [str(r) for r in references]
    labels_pred = [UNPARSED if p is None else str(p) for p in predictions]
    if not labels_true:
        return {"balanced_accuracy": float("nan"), "accuracy": float("nan"), "f1_weighted": float("nan")}
    return {
        "balanced_accuracy": balanced_accuracy(labels_true, labels_pred),
        "accuracy": statistics.fmean(t == p for t, p in zip(labels_true, labels_pred)),
        "f1_weighted": float(f1_score(labels_true, labels_pred, average="weighted", zero_division=0)),
    }


def _label_set(labels: object) -> set[str]:
    """A multi-label answer as a set of non-empty stripped strings (None → empty)."""
    if labels is None:
        return set()
    if not isinstance(labels, (list, tuple, set)):
        labels = [labels]
    return {str(label).strip() for label in labels if label and str(label).strip()}


def multi_label_scores(references: Sequence, predictions: Sequence) -> dict:
    """Mean per-sample F1/precision/recall (FLARE's primary; samples without reference labels skipped),
    plus micro and macro F1 over labels (scikit-learn)."""
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    pairs = [(_label_set(r), _label_set(p)) for r, p in zip(references, predictions)]
    pairs = [(r, p) for r, p in pairs if r]
    if not pairs:
        nan = float("nan")
        return {"f1": nan, "precision": nan, "recall": nan, "f1_micro": nan, "f1_macro": nan, "n_scored": 0}
    precisions, recalls, f1s = [], [], []
    for reference, prediction in pairs:
        hits = len(reference & prediction)
        precision = hits / len(prediction) if prediction else 0.0
        recall = hits / len(reference)
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    binarizer = MultiLabelBinarizer().fit([r | p for r, p in pairs])
    y_true = binarizer.transform([r for r, _ in pairs])
    y_pred = binarizer.transform([p for _, p in pairs])
    return {
        "f1": statistics.fmean(f1s),
        "precision": statistics.fmean(precisions),
        "recall": statistics.fmean(recalls),
        "f1_micro": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "n_scored": len(pairs),
    }


# --- detection ---------------------------------------------------------------------------


def _well_formed(boxes: object) -> tuple[list[list[float]], int]:
    """The four-finite-number boxes of a list, and how many others were skipped."""
    if not isinstance(boxes, list):
        return [], 0
    kept = []
    for box in boxes:
        if (
            isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        ):  # fmt: skip
            kept.append([float(v) for v in box])
    return kept, len(boxes) - len(kept)


def _prf(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall and F1 from pooled counts (0 where undefined, as FLARE)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, "tp": tp, "fp": fp, "fn": fn}


def _pooled_detection(
    pairs: list[tuple[list, list]], thresholds: Sequence[float], strict: bool, n_malformed: int
) -> dict:
    """F1 at PRIMARY_IOU (primary) and at every threshold from (predicted, reference) box-list pairs."""
    by_threshold = {}
    for threshold in sorted(set(thresholds) | {PRIMARY_IOU}):
        counts = [match_boxes(predicted, reference, threshold, strict) for predicted, reference in pairs]
        by_threshold[threshold] = _prf(*(sum(column) for column in zip(*counts)) if counts else (0, 0, 0))
    scores = dict(by_threshold[PRIMARY_IOU])
    scores["f1_at"] = {f"{t:.2f}": by_threshold[t]["f1"] for t in thresholds}
    scores["f1_mean_over_thresholds"] = statistics.fmean(by_threshold[t]["f1"] for t in thresholds)
    scores["n_malformed_boxes"] = n_malformed
    return scores


def detection_scores(
    references: Sequence, predictions: Sequence, thresholds: Sequence[float] = IOU_THRESHOLDS, strict: bool = True
) -> dict:
    """Pooled detection F1 over the data set; a None prediction has no boxes; malformed boxes are skipped and counted."""
    pairs, n_malformed = [], 0
    for reference, prediction in zip(references, predictions):
        reference_boxes, bad_reference = _well_formed(reference)
        predicted_boxes, bad_prediction = _well_formed(prediction)
        n_malformed += bad_reference + bad_prediction
        pairs.append((predicted_boxes, reference_boxes))
    return _pooled_detection(pairs, thresholds, strict, n_malformed)


def instance_detection_scores(
    references: Sequence, predictions: Sequence, thresholds: Sequence[float] = IOU_THRESHOLDS, strict: bool = True
) -> dict:
    """Detection F1 matched within each instance key (union of keys), pooled over the data set."""
    pairs, n_malformed = [], 0
    for reference, prediction in zip(references, predictions):
        reference = reference if isinstance(reference, dict) else {}
        prediction = prediction if isinstance(prediction, dict) else {}
        for key in set(reference) | set(prediction):
            reference_boxes, bad_reference = _well_formed(reference.get(key, []))
            predicted_boxes, bad_prediction = _well_formed(prediction.get(key, []))
            n_malformed += bad_reference + bad_prediction
            pairs.append((predicted_boxes, reference_boxes))
    return _pooled_detection(pairs, thresholds, strict, n_malformed)


# --- counting and regression ---------------------------------------------------------------


def numeric_scores(references: Sequence, predictions: Sequence) -> dict:
    """MAE (primary) and RMSE over parseable finite predictions, with the unparseable ones counted beside."""
    errors = []
    for reference, prediction in zip(references, predictions):
        truth, guess = finite_float(reference), finite_float(prediction)
        if truth is not None and guess is not None:
            errors.append(guess - truth)
    n_unparsed = len(predictions) - len(errors)
    if not errors:
        return {"mae": float("nan"), "rmse": float("nan"), "n_scored": 0, "n_unparsed": n_unparsed}
    return {
        "mae": statistics.fmean(abs(e) for e in errors),
        "rmse": math.sqrt(statistics.fmean(e * e for e in errors)),
        "n_scored": len(errors),
        "n_unparsed": n_unparsed,
    }


# --- one entry point -------------------------------------------------------------------------


def task_metric(task: str, parser: str = "flare") -> Callable[[Sequence, Sequence], dict]:
    """The scoring function (references, predictions) → dict of a FLARE task under the parser's conventions."""
    strict = parser == "flare"
    if task == "classification":
        if parser == "flare":
            return lambda refs, preds: classification_scores(
                [flare_label(r) for r in refs], [flare_label(p) for p in preds]
            )
        return classification_scores
    if task == "multi_label":
        return multi_label_scores
    if task == "detection":
        return lambda refs, preds: detection_scores(refs, preds, strict=strict)
    if task == "instance_detection":
        return lambda refs, preds: instance_detection_scores(refs, preds, strict=strict)
    if task in ("counting", "regression"):
        return numeric_scores
    raise ValueError(f"no FLARE metric for task {task!r}; FLARE tasks: {', '.join(FLARE_TASKS)}")
