"""Calibration and selective prediction from per-answer confidences: ECE, reliability bins, accuracy–coverage.

Conventions, named so they can be matched:
- ECE (Guo et al. 2017, "On Calibration of Modern Neural Networks"): M equal-width bins
  B_m = ((m-1)/M, m/M] (the first bin also holds 0), ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|;
  the bin edges are those of scikit-learn's `calibration_curve(strategy="uniform")`.
- Risk–coverage (Geifman & El-Yaniv 2017): answer the k most confident questions, k = 1..n; AURC is the
  mean selective risk (1 − accuracy) over the n coverages, `aurc_optimal` the same for a perfect ranking
  (all right answers first), and the area under the accuracy–coverage curve is 1 − AURC. Tied confidences
  take their expected value under a random order (so the result does not depend on the input order).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Coverages at which metrics.json keeps the accuracy–coverage curve (the full curve has one point per item).
COVERAGE_POINTS = tuple(round(0.05 * k, 2) for k in range(1, 21))


def _arrays(confidences: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Confidences and correctness as float arrays; ValueError on mismatched lengths or out-of-range values."""
    confidence = np.asarray(confidences, dtype=float)
    hits = np.asarray(correct, dtype=float)
    if confidence.shape != hits.shape or confidence.ndim != 1:
        raise ValueError(f"{len(confidence)} confidences but {len(hits)} correctness flags; they must pair up")
    if confidence.size and (not np.all(np.isfinite(confidence)) or confidence.min() < 0 or confidence.max() > 1):
        raise ValueError("confidences must be finite and within [0, 1]")
    return confidence, hits


def bin_index(confidences: np.ndarray, n_bins: int) -> np.ndarray:
    """The bin of each confidence among n_bins equal-width bins ((m-1)/M, m/M], 0 landing in the first."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], confidences, side="left")


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> list[dict]:
    """One row per bin: lower/upper edge, count, mean confidence and accuracy (None for an empty bin)."""
    confidence, hits = _arrays(confidences, correct)
    index = bin_index(confidence, n_bins)
    rows = []
    for m in range(n_bins):
        members = index == m
        count = int(members.sum())
        rows.append({"low": m / n_bins, "high": (m + 1) / n_bins, "count": count,
                     "confidence": float(confidence[members].mean()) if count else None,
                     "accuracy": float(hits[members].mean()) if count else None})
    return rows


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float:
    """ECE with equal-width bins (Guo et al. 2017); nan for no items."""
    confidence, _ = _arrays(confidences, correct)
    if not confidence.size:
        return float("nan")
    return float(sum(row["count"] / confidence.size * abs(row["accuracy"] - row["confidence"])
                     for row in reliability_bins(confidences, correct, n_bins) if row["count"]))


def selective_risks(confidences: Sequence[float], correct: Sequence[bool]) -> np.ndarray:
    """Risk (1 − accuracy) of answering the k most confident items, k = 1..n; ties at their expected value."""
    confidence, hits = _arrays(confidences, correct)
    order = np.argsort(-confidence, kind="stable")
    confidence, errors = confidence[order], 1.0 - hits[order]
    risks = np.empty(confidence.size)
    start = 0
    errors_before = 0.0
    while start < confidence.size:
        stop = start
        while stop < confidence.size and confidence[stop] == confidence[start]:
            stop += 1
        group_rate = errors[start:stop].mean()  # a random order of the tied items: each adds this on average
        k = np.arange(start + 1, stop + 1)
        risks[start:stop] = (errors_before + (k - start) * group_rate) / k
        errors_before += errors[start:stop].sum()
        start = stop
    return risks


def coverage_curve(confidences: Sequence[float], correct: Sequence[bool]) -> dict[str, Any]:
    """Accuracy against coverage (k/n), AURC, the optimal AURC, and the area under accuracy–coverage."""
    confidence, hits = _arrays(confidences, correct)
    n = confidence.size
    if not n:
        return {"coverage": [], "accuracy": [], "aurc": float("nan"), "aurc_optimal": float("nan"),
                "area_under_accuracy_coverage": float("nan")}
    risks = selective_risks(confidence, hits)
    optimal = selective_risks(hits, hits)  # a confidence that ranks every right answer first
    aurc = float(risks.mean())
    return {"coverage": (np.arange(1, n + 1) / n).tolist(), "accuracy": (1.0 - risks).tolist(),
            "aurc": aurc, "aurc_optimal": float(optimal.mean()), "area_under_accuracy_coverage": 1.0 - aurc}


def accuracy_at_coverage(curve: dict[str, Any], coverage: float) -> float:
    """Selective accuracy when answering the most confident `coverage` share of the questions."""
    if not curve["coverage"]:
        return float("nan")
    k = max(1, int(np.ceil(coverage * len(curve["coverage"]))))
    return float(curve["accuracy"][k - 1])


def calibration_summary(items: list[dict], n_bins: int = 10, coverages: Sequence[float] = (0.5, 0.8)) -> dict:
    """Accuracy, mean confidence, ECE, reliability bins and the coverage curve of scored option items."""
    confidences = [item["confidence"] for item in items]
    correct = [bool(item["correct"]) for item in items]
    curve = coverage_curve(confidences, correct)
    return {"n": len(items), "accuracy": float(np.mean(correct)) if items else float("nan"),
            "mean_confidence": float(np.mean(confidences)) if items else float("nan"),
            "ece": expected_calibration_error(confidences, correct, n_bins), "n_bins": n_bins,
            "reliability": reliability_bins(confidences, correct, n_bins),
            **{f"accuracy_at_{int(c * 100)}_coverage": accuracy_at_coverage(curve, c) for c in coverages},
            "aurc": curve["aurc"], "aurc_optimal": curve["aurc_optimal"],
            "area_under_accuracy_coverage": curve["area_under_accuracy_coverage"],
            "agrees_with_generated": (float(np.mean([bool(i.get("generated_agrees")) for i in items]))
                                      if items else float("nan")),
            "coverage_points": {f"{c:.2f}": accuracy_at_coverage(curve, c) for c in COVERAGE_POINTS},
            "curve": {"coverage": curve["coverage"], "accuracy": curve["accuracy"]}}


def calibration_by_group(items: list[dict], n_bins: int = 10) -> dict[str, dict]:
    """calibration_summary for all items (`all`) and per question type."""
    groups: dict[str, list[dict]] = {"all": list(items)}
    for item in items:
        groups.setdefault(item.get("question_type") or item["task"], []).append(item)
    return {name: calibration_summary(group, n_bins) for name, group in groups.items()}
