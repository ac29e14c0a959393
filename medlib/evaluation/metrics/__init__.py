"""Metrics: the notebook summary (`core`), FLARE 2025 task metrics (`flare`, `flare_report`), VQA (`vqa`),
report text (`text`), model-based report metrics (`model_based`), statistics (`stats`) and the
file-level scoring behind `medlib score` (`scoring`)."""

from __future__ import annotations

from medlib.evaluation.metrics.core import (
    UNPARSED,
    accuracy,
    balanced_accuracy,
    comparison_table,
    confusion_matrix,
    headline,
    label_groups,
    mean_absolute_error,
    normalize_text,
    score_predictions,
    worst_errors,
)
from medlib.evaluation.metrics.nltk_data import ensure_nltk_path
from medlib.evaluation.metrics.scoring import compare_records, markdown_table, read_predictions_file, score_records
from medlib.evaluation.metrics.stats import bootstrap_ci, bootstrap_mean_ci, improvement_percent, paired_bootstrap

__all__ = [
    "UNPARSED",
    "accuracy",
    "balanced_accuracy",
    "bootstrap_ci",
    "bootstrap_mean_ci",
    "compare_records",
    "comparison_table",
    "confusion_matrix",
    "headline",
    "improvement_percent",
    "label_groups",
    "markdown_table",
    "mean_absolute_error",
    "normalize_text",
    "paired_bootstrap",
    "read_predictions_file",
    "score_predictions",
    "score_records",
    "worst_errors",
]

ensure_nltk_path()
