"""Per-question-type accuracy, balanced accuracy and MAE over a predictions list (the notebook summary)."""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable, Sequence

from sklearn.metrics import balanced_accuracy_score

from medlib.evaluation.parsing import (
    answers_match,
    finite_float,
    has_valid_format,
    normalize_text,
    parse_answer,
)

__all__ = [
    "UNPARSED",
    "accuracy",
    "balanced_accuracy",
    "comparison_table",
    "confusion_matrix",
    "headline",
    "label_groups",
    "mean_absolute_error",
    "normalize_text",
    "score_predictions",
]

UNPARSED = "<unparsed>"
_NUMERIC_TASKS = frozenset({"counting", "regression"})
_LABEL_TASKS = frozenset({"classification", "vqa_closed"})


def _check_lengths(references: Sequence, predictions: Sequence) -> None:
    """Raise ValueError unless references and predictions pair up one to one."""
    if len(references) != len(predictions):
        raise ValueError(
            f"{len(references)} references but {len(predictions)} predictions; they must pair up"
        )


def _fraction(flags: Iterable[bool]) -> float:
    """Share of true flags; nan when there are none."""
    flags = list(flags)
    return sum(flags) / len(flags) if flags else float("nan")


def accuracy(references: Sequence, predictions: Sequence) -> float:
    """Share of predictions equal to their reference; a None prediction is wrong; nan if empty."""
    _check_lengths(references, predictions)
    return _fraction(p is not None and p == r for r, p in zip(references, predictions))


def balanced_accuracy(references: Sequence, predictions: Sequence) -> float:
    """Mean per-class recall (scikit-learn); None predictions become UNPARSED, hence wrong; nan if empty."""
    _check_lengths(references, predictions)
    if not references:
        return float("nan")
    if any(r is None for r in references):
        raise ValueError("references must not contain None")
    # Labels are compared by their text so that int labels and the UNPARSED sentinel can mix.
    y_true = [str(r) for r in references]
    y_pred = [UNPARSED if p is None else str(p) for p in predictions]
    with warnings.catch_warnings():
        # Predicted classes absent from the references (UNPARSED among them) and groups with
        # a single class are expected here and well defined.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        return float(balanced_accuracy_score(y_true, y_pred))


def confusion_matrix(references: Sequence, predictions: Sequence) -> dict:
    """{"labels": sorted reference labels (+ UNPARSED if any), "matrix": counts[reference][prediction]}."""
    _check_lengths(references, predictions)
    y_true = [str(r) for r in references]
    y_pred = [UNPARSED if p is None else str(p) for p in predictions]
    labels = sorted(set(y_true)) + sorted(set(y_pred) - set(y_true))
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for truth, guess in zip(y_true, y_pred):
        matrix[index[truth]][index[guess]] += 1
    return {"labels": labels, "matrix": matrix}


def mean_absolute_error(references: Sequence[float], predictions: Sequence[float | None]) -> dict:
    """MAE over parseable predictions only (nan if none), with n_scored and n_unparsed."""
    _check_lengths(references, predictions)
    errors = [abs(float(p) - float(r)) for r, p in zip(references, predictions) if p is not None]
    return {
        "mae": statistics.fmean(errors) if errors else float("nan"),
        "n_scored": len(errors),
        "n_unparsed": len(predictions) - len(errors),
    }


def _question_type(prediction: dict) -> str:
    """Group key: meta["question_type"] when given, else the task."""
    return (prediction.get("meta") or {}).get("question_type") or prediction["task"]


def _parsed_reference(prediction: dict) -> object:
    """The prediction's reference answer parsed under its task rules; ValueError if it does not parse."""
    reference, error = parse_answer(
        prediction["task"], prediction["answer"], prediction.get("choices")
    )
    if reference is None:
        raise ValueError(
            f"reference answer {prediction['answer']!r} of {prediction.get('id')!r} "
            f"does not parse as {prediction['task']}: {error}"
        )
    return reference


def _is_correct(prediction: dict) -> bool:
    """True if the stored parsed answer matches the reference (unparsed is wrong)."""
    return answers_match(
        prediction["task"],
        prediction.get("parsed"),
        prediction["answer"],
        prediction.get("choices"),
    )


def _common_scores(predictions: list[dict], require_think: bool) -> dict:
    """n, format_valid, parsed and accuracy of a list of predictions."""
    return {
        "n": len(predictions),
        "format_valid": _fraction(
            has_valid_format(p.get("raw") or "", require_think) for p in predictions
        ),
        "parsed": _fraction(p.get("parsed") is not None for p in predictions),
        "accuracy": _fraction(_is_correct(p) for p in predictions),
    }


def _chance(predictions: list[dict], references: list) -> float:
    """Expected accuracy of uniform guessing: 1/len(choices) per item, else 1/distinct references."""
    n_labels = len({str(r) for r in references})
    return statistics.fmean(
        1 / len(p["choices"]) if p.get("choices") else 1 / n_labels for p in predictions
    )


def _group_scores(predictions: list[dict], require_think: bool) -> dict:
    """Common scores plus MAE for numeric groups and balanced accuracy/chance for label groups."""
    scores = _common_scores(predictions, require_think)
    tasks = {p["task"] for p in predictions}
    if tasks <= _NUMERIC_TASKS:
        references = [_parsed_reference(p) for p in predictions]
        numeric = mean_absolute_error(
            references, [finite_float(p.get("parsed")) for p in predictions]
        )
        scores.update(mae=numeric["mae"], n_unparsed=numeric["n_unparsed"])
    if tasks <= _LABEL_TASKS:
        # Only these groups need parsed references (free-text ones, reports, may be empty).
        references = [_parsed_reference(p) for p in predictions]
        labels = [p.get("parsed") for p in predictions]
        scores["balanced_accuracy"] = balanced_accuracy(references, labels)
        scores["chance"] = _chance(predictions, references)
    return scores


def score_predictions(predictions: list[dict], require_think: bool = True) -> dict:
    """{"overall": micro scores, "by_question_type": scores per meta question_type or task}."""
    groups: dict[str, list[dict]] = {}
    for prediction in predictions:
        groups.setdefault(_question_type(prediction), []).append(prediction)
    return {
        "overall": _common_scores(list(predictions), require_think),
        "by_question_type": {
            question_type: _group_scores(group, require_think)
            for question_type, group in sorted(groups.items())
        },
    }


def label_groups(predictions: list[dict]) -> dict[str, tuple[list, list]]:
    """Per question type of label tasks (classification, yes/no): (parsed references, stored parsed answers)."""
    groups: dict[str, tuple[list, list]] = {}
    for prediction in predictions:
        if prediction["task"] in _LABEL_TASKS:
            references, answers = groups.setdefault(_question_type(prediction), ([], []))
            references.append(_parsed_reference(prediction))
            answers.append(prediction.get("parsed"))
    return dict(sorted(groups.items()))


def comparison_table(scores: dict[str, dict]):
    """One row per (question type, checkpoint) with every group metric, as a pandas DataFrame."""
    import pandas as pd

    rows = [
        {"question_type": question_type, "checkpoint": checkpoint, **group}
        for checkpoint, score in scores.items()
        for question_type, group in score["by_question_type"].items()
    ]
    return pd.DataFrame(rows).set_index(["question_type", "checkpoint"]).sort_index(level=0, sort_remaining=False)


def headline(scores: dict[str, dict], image_question_type: str) -> dict:
    """The numbers a reader checks first: per checkpoint accuracy and format validity, overall and
    on the image-determined question type, with its chance level."""
    summary: dict = {"image_question_type": image_question_type}
    for checkpoint, score in scores.items():
        group = score["by_question_type"].get(image_question_type, {})
        summary[checkpoint] = {
            "accuracy": score["overall"]["accuracy"],
            "format_valid": score["overall"]["format_valid"],
            "image_question_accuracy": group.get("accuracy"),
            "image_question_chance": group.get("chance"),
        }
    return summary


def error_size(prediction: dict) -> float:
    """How wrong one prediction is: 0 when it matches, 1 + |error| for numbers, 1 for other misses, and
    infinite when nothing could be parsed (the worst: no answer at all)."""
    if prediction.get("parsed") is None:
        return math.inf
    if _is_correct(prediction):
        return 0.0
    if prediction["task"] in _NUMERIC_TASKS:
        predicted, reference = finite_float(prediction["parsed"]), finite_float(_parsed_reference(prediction))
        if predicted is not None and reference is not None:
            return 1.0 + abs(predicted - reference)
    return 1.0


def worst_errors(predictions: list[dict], n: int = 8) -> list[dict]:
    """The n most wrong predictions (unparsed first, then the largest numeric errors), ties by id."""
    wrong = [p for p in predictions if error_size(p) > 0]
    return sorted(wrong, key=lambda p: (-error_size(p), str(p.get("id"))))[:n]
