"""Bootstrap confidence intervals and paired tests between two checkpoints scored on the same items."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

# A metric over parallel item lists, e.g. lambda refs, preds: accuracy(refs, preds).
Metric = Callable[..., float]


def _finite_or_nan(value: float) -> float:
    """The value as float, nan when it is not finite."""
    value = float(value)
    return value if math.isfinite(value) else float("nan")


def _take(columns: Sequence[Sequence], indices: np.ndarray) -> list[list]:
    """The columns resampled at the indices."""
    return [[column[i] for i in indices] for column in columns]


def bootstrap_ci(
    metric: Metric, *columns: Sequence, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict:
    """Percentile bootstrap CI of metric(*columns) resampling items with replacement.

    Returns {"value", "low", "high", "n", "n_resamples", "confidence"}; resamples on which the metric is
    not finite are dropped (low/high are nan when fewer than half remain or there are under 2 items).
    """
    return _bootstrap(metric, columns, n_resamples, confidence, seed)[0]


def _bootstrap(
    metric: Metric, columns: Sequence[Sequence], n_resamples: int, confidence: float, seed: int
) -> tuple[dict, np.ndarray]:
    """bootstrap_ci's result and its finite resampled metric values (empty under 2 items)."""
    n = len(columns[0]) if columns else 0
    if any(len(column) != n for column in columns):
        raise ValueError("bootstrap columns must have the same length")
    value = _finite_or_nan(metric(*columns)) if n else float("nan")
    result = {"value": value, "low": float("nan"), "high": float("nan"), "n": n,
              "n_resamples": n_resamples, "confidence": confidence}  # fmt: skip
    if n < 2:
        return result, np.empty(0)
    rng = np.random.default_rng(seed)
    draws = np.array([_finite_or_nan(metric(*_take(columns, rng.integers(0, n, n)))) for _ in range(n_resamples)])
    draws = draws[np.isfinite(draws)]
    if len(draws) >= n_resamples / 2:
        tail = (1 - confidence) / 2 * 100
        result["low"], result["high"] = (float(v) for v in np.percentile(draws, [tail, 100 - tail]))
    return result, draws


def bootstrap_mean_ci(
    values: Sequence[float], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict:
    """bootstrap_ci of the mean of per-item scores, vectorised (for accuracies and per-item F1s)."""
    values = np.asarray(values, dtype=float)
    result = {"value": float(values.mean()) if len(values) else float("nan"), "low": float("nan"),
              "high": float("nan"), "n": len(values), "n_resamples": n_resamples, "confidence": confidence}  # fmt: skip
    if len(values) < 2:
        return result
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_resamples, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    result["low"], result["high"] = (float(v) for v in np.percentile(means, [tail, 100 - tail]))
    return result


def paired_bootstrap(
    metric: Metric,
    references: Sequence,
    predictions_a: Sequence,
    predictions_b: Sequence,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Difference metric(B) − metric(A) on the same items, its bootstrap CI and a two-sided p-value
    (twice the share of resampled differences on the other side of zero, capped at 1)."""
    if not len(references) == len(predictions_a) == len(predictions_b):
        raise ValueError("paired_bootstrap needs the same items for both checkpoints")

    def difference(refs: Sequence, a: Sequence, b: Sequence) -> float:
        return metric(refs, b) - metric(refs, a)

    # The p-value reads the same resampled differences as the CI.
    result, draws = _bootstrap(difference, (references, predictions_a, predictions_b), n_resamples, confidence, seed)
    result["difference"] = result.pop("value")
    if len(references) < 2 or not math.isfinite(result["difference"]):
        result["p_value"] = float("nan")
        return result
    below, above = np.mean(draws <= 0), np.mean(draws >= 0)
    result["p_value"] = float(min(1.0, 2 * min(below, above))) if len(draws) else float("nan")
    return result


def permutation_test(
    metric: Metric,
    references: Sequence,
    predictions_a: Sequence,
    predictions_b: Sequence,
    n_permutations: int = 1000,
    seed: int = 0,
) -> dict:
    """Paired permutation test: swap A's and B's prediction of each item at random; the p-value is the
    share of permutations whose |difference| reaches the observed one (add-one smoothed)."""
    if not len(references) == len(predictions_a) == len(predictions_b):
        raise ValueError("permutation_test needs the same items for both checkpoints")
    observed = _finite_or_nan(metric(references, predictions_b) - metric(references, predictions_a))
    if not len(references) or not math.isfinite(observed):
        return {"difference": observed, "p_value": float("nan"), "n_permutations": n_permutations}
    rng = np.random.default_rng(seed)
    extreme = 0
    for _ in range(n_permutations):
        swap = rng.random(len(references)) < 0.5
        a = [pb if s else pa for pa, pb, s in zip(predictions_a, predictions_b, swap)]
        b = [pa if s else pb for pa, pb, s in zip(predictions_a, predictions_b, swap)]
        permuted = _finite_or_nan(metric(references, b) - metric(references, a))
        extreme += bool(math.isfinite(permuted) and abs(permuted) >= abs(observed) - 1e-12)
    return {"difference": observed, "p_value": (extreme + 1) / (n_permutations + 1), "n_permutations": n_permutations}


def improvement_percent(baseline: float, value: float, lower_is_better: bool = False) -> float:
    """Relative improvement of value over baseline in percent (sign flipped for errors); nan if baseline is 0."""
    if not (math.isfinite(baseline) and math.isfinite(value)) or baseline == 0:
        return float("nan")
    change = (baseline - value) if lower_is_better else (value - baseline)
    return 100.0 * change / abs(baseline)
