"""Model-based report metrics (RadGraph-F1, CheXbert F1, GREEN) through RadEval, when it and the weights are there.

Install with `pip install -e ".[metrics]"` (RadEval pulls radgraph, f1chexbert and green-score); the
weights come from the Hugging Face hub on first use, so the hub (or a filled HF cache) is needed.
Nothing here runs in this repository's CPU test suite.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

MODEL_METRICS = ("radgraph", "chexbert", "green")


def radeval_available() -> bool:
    """True when the RadEval package can be imported."""
    return importlib.util.find_spec("RadEval") is not None


@lru_cache(maxsize=4)
def _evaluator(metrics: tuple[str, ...]) -> Any:
    """One RadEval evaluator per metric selection, loaded once."""
    from RadEval import RadEval

    return RadEval(**{f"do_{name}": name in metrics for name in MODEL_METRICS})


def model_based_scores(
    predictions: Sequence[str], references: Sequence[str], metrics: Sequence[str] = MODEL_METRICS
) -> dict:
    """RadEval's scores for the chosen metrics ({"radgraph", "chexbert", "green"} subset), as RadEval names them."""
    unknown = set(metrics) - set(MODEL_METRICS)
    if unknown:
        raise ValueError(f"unknown model-based metrics {sorted(unknown)}; expected some of {MODEL_METRICS}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} reports but {len(references)} references; they must pair up")
    if not radeval_available():
        raise RuntimeError('model-based metrics need RadEval: pip install -e ".[metrics]" (and hub access for weights)')
    evaluator = _evaluator(tuple(sorted(metrics)))
    return dict(evaluator(refs=[str(r) for r in references], hyps=[str(p) for p in predictions]))
