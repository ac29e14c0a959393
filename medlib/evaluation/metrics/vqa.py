"""VQA metrics: SQuAD-normalised exact match and token F1, numeric-tolerant match, closed/open accuracy,
and Med-R1-style accuracy on the `<answer>` content."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence

from medlib.evaluation.parsing import extract_answer, normalize_text

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
CLOSED_ANSWERS = frozenset({"yes", "no"})


def _as_references(reference: str | Sequence[str]) -> list[str]:
    """One reference or several, as a list of strings."""
    if isinstance(reference, str):
        return [reference]
    return [str(r) for r in reference] or [""]


def exact_match(prediction: str | None, reference: str | Sequence[str]) -> float:
    """1.0 if the SQuAD-normalised prediction equals any normalised reference; None scores 0."""
    if prediction is None:
        return 0.0
    normalized = normalize_text(prediction)
    return float(any(normalized == normalize_text(r) for r in _as_references(reference)))


def _token_f1(prediction_tokens: list[str], reference_tokens: list[str]) -> float:
    """SQuAD token F1 of two token lists (both empty → 1, one empty → 0)."""
    if not prediction_tokens or not reference_tokens:
        return float(prediction_tokens == reference_tokens)
    common = sum((Counter(prediction_tokens) & Counter(reference_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction_tokens), common / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str | None, reference: str | Sequence[str]) -> float:
    """SQuAD token F1 after normalisation, the maximum over references; None scores 0."""
    if prediction is None:
        return 0.0
    tokens = normalize_text(prediction).split()
    return max(_token_f1(tokens, normalize_text(r).split()) for r in _as_references(reference))


def _single_number(text: str) -> float | None:
    """The number a short answer consists of ("4.5 cm" → 4.5), or None when it has none or several."""
    found = _NUMBER.findall(str(text))
    if len(found) != 1:
        return None
    value = float(found[0])
    return value if math.isfinite(value) else None


def numeric_match(
    prediction: str | None, reference: str | Sequence[str], rel_tol: float = 0.05, abs_tol: float = 1e-6
) -> float:
    """Exact match, or both hold one number within the tolerance (relative 5% by default)."""
    if prediction is None:
        return 0.0
    if exact_match(prediction, reference):
        return 1.0
    guess = _single_number(prediction)
    if guess is None:
        return 0.0
    for r in _as_references(reference):
        truth = _single_number(r)
        if truth is not None and math.isclose(guess, truth, rel_tol=rel_tol, abs_tol=abs_tol):
            return 1.0
    return 0.0


def answer_tag_accuracy(raw_outputs: Sequence[str], references: Sequence[str]) -> float:
    """Med-R1 style: the `<answer>…</answer>` content must exactly match (normalised); no tag is wrong."""
    if not raw_outputs:
        return float("nan")
    return statistics.fmean(
        exact_match(extract_answer(raw) if isinstance(raw, str) else None, reference)
        for raw, reference in zip(raw_outputs, references)
    )


def is_closed(reference: str) -> bool:
    """True for yes/no references (closed questions, as in VQA-RAD/SLAKE splits)."""
    return normalize_text(reference) in CLOSED_ANSWERS


def vqa_scores(references: Sequence[str], predictions: Sequence[str | None]) -> dict:
    """Exact match, token F1 and numeric-tolerant match (means), and accuracy on closed and open items."""
    if not references:
        nan = float("nan")
        return {"exact_match": nan, "token_f1": nan, "numeric_match": nan, "closed_accuracy": nan,
                "open_accuracy": nan, "n_closed": 0, "n_open": 0}  # fmt: skip
    matches = [exact_match(p, r) for r, p in zip(references, predictions)]
    closed = [m for m, r in zip(matches, references) if is_closed(r)]
    opened = [m for m, r in zip(matches, references) if not is_closed(r)]
    return {
        "exact_match": statistics.fmean(matches),
        "token_f1": statistics.fmean(token_f1(p, r) for r, p in zip(references, predictions)),
        "numeric_match": statistics.fmean(numeric_match(p, r) for r, p in zip(references, predictions)),
        "closed_accuracy": statistics.fmean(closed) if closed else float("nan"),
        "open_accuracy": statistics.fmean(opened) if opened else float("nan"),
        "n_closed": len(closed),
        "n_open": len(opened),
    }
