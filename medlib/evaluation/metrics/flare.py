"""FLARE 2025 task metrics with two parsers: `flare` (the baseline's evaluation, quirks included) and `robust`.

`flare` reproduces the parsing and scoring of the FLARE 2025 baseline evaluation (`evaluate_model.py` of
medfm-flare/FLARE25-QWen2.5VL) so numbers compare with FLARE tables, nothing-to-score cases included;
`robust` parses what a careful reader would (medlib.evaluation.parsing) and reports nan where nothing can be
scored. Three crashes/bugs of the original are fixed in both (see README, Metrics): binary classification
reporting 0 everywhere, non-finite regression answers making the MAE infinite, and malformed boxes crashing
the IoU-threshold sweep.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from medlib.evaluation.boxes import match_boxes
from medlib.evaluation.metrics.core import UNPARSED, balanced_accuracy
from medlib.evaluation.metrics.flare_parser import (  # noqa: F401  (re-exported: the parser's public names)
    FLARE_TASKS,
    answer_content,
    flare_clean,
    flare_reference,
    parse_flare,
)
from medlib.evaluation.parsing import finite_float, parse_answer

PARSERS = ("flare", "robust")
IOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
PRIMARY_IOU = 0.5

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
        return flare_reference(task, text)
    return parse_item(task, text, parser, choices)


# --- classification and multi-label ----------------------------------------------------


def flare_label(label: object) -> str:
    """The baseline's label normalisation: one letter upper-cased, anything else lower-cased; None → ""."""
    if label is None:
        return ""
    text = " ".join(str(label).strip().split())
    return text.upper() if len(text) == 1 and text.isalpha() else text.lower()


def classification_scores(references: Sequence, predictions: Sequence, nothing: float = math.nan) -> dict:
    """Balanced accuracy (primary), accuracy and weighted F1; a None prediction is wrong; `nothing` when empty.

    The original computes a binary F1 on string labels when there are two classes, which raises and
    makes it report 0 for every metric; here the real values are computed in every case.
    """
    from sklearn.metrics import f1_score

    labels_true = [str(r) for r in references]
    labels_pred = [UNPARSED if p is None else str(p) for p in predictions]
    if not labels_true:
        return {"balanced_accuracy": nothing, "accuracy": nothing, "f1_weighted": nothing}
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


def multi_label_scores(references: Sequence, predictions: Sequence, nothing: float = math.nan) -> dict:
    """Mean per-sample F1/precision/recall (FLARE's primary; samples without reference labels skipped, and
    `nothing` when none is left), plus micro and macro F1 over labels (scikit-learn)."""
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    pairs = [(_label_set(r), _label_set(p)) for r, p in zip(references, predictions)]
    pairs = [(r, p) for r, p in pairs if r]
    if not pairs:
        nan = float("nan")
        return {"f1": nothing, "precision": nothing, "recall": nothing, "f1_micro": nan, "f1_macro": nan,
                "n_scored": 0}
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


def numeric_scores(references: Sequence, predictions: Sequence, nothing: float = math.nan) -> dict:
    """MAE (primary) and RMSE over parseable finite predictions, with the unparseable ones counted beside;
    the MAE is `nothing` when no prediction parses."""
    errors = []
    for reference, prediction in zip(references, predictions):
        truth, guess = finite_float(reference), finite_float(prediction)
        if truth is not None and guess is not None:
            errors.append(guess - truth)
    n_unparsed = len(predictions) - len(errors)
    if not errors:
        return {"mae": nothing, "rmse": float("nan"), "n_scored": 0, "n_unparsed": n_unparsed}
    return {
        "mae": statistics.fmean(abs(e) for e in errors),
        "rmse": math.sqrt(statistics.fmean(e * e for e in errors)),
        "n_scored": len(errors),
        "n_unparsed": n_unparsed,
    }


# --- one entry point -------------------------------------------------------------------------


def task_metric(task: str, parser: str = "flare") -> Callable[[Sequence, Sequence], dict]:
    """The scoring function (references, predictions) → dict of a FLARE task under the parser's conventions.

    With nothing to score, `flare` gives FLARE's numbers (0.0 for the label and box tasks, an infinite MAE
    when no count or value parses) and `robust` keeps nan."""
    flare_rules = parser == "flare"
    nothing = 0.0 if flare_rules else math.nan
    if task == "classification":
        if flare_rules:
            return lambda refs, preds: classification_scores(
                [flare_label(r) for r in refs], [flare_label(p) for p in preds], nothing
            )
        return classification_scores
    if task == "multi_label":
        return lambda refs, preds: multi_label_scores(refs, preds, nothing)
    if task == "detection":
        return lambda refs, preds: detection_scores(refs, preds, strict=flare_rules)
    if task == "instance_detection":
        return lambda refs, preds: instance_detection_scores(refs, preds, strict=flare_rules)
    if task in ("counting", "regression"):
        return lambda refs, preds: numeric_scores(refs, preds, math.inf if flare_rules else math.nan)
    raise ValueError(f"no FLARE metric for task {task!r}; FLARE tasks: {', '.join(FLARE_TASKS)}")
