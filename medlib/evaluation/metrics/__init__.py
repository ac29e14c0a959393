"""Metrics: the notebook summary (`core`), FLARE 2025 task metrics (`flare`, `flare_parser`, `flare_report`),
VQA (`vqa`), report text (`text`) and its named conventions (`libra`, `coco`; FLARE's and sacrebleu's beside
them), model-based report metrics (`model_based`), statistics (`stats`) and the file-level scoring behind
`medlib score` (`scoring`). Importing does no work: WordNet and Java are looked up when first needed."""

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
from medlib.evaluation.metrics.scoring import (
    REPORT_CONVENTIONS,
    ScoringOptions,
    compare_records,
    convention_table,
    markdown_table,
    report_convention_rows,
    score_records,
)
from medlib.evaluation.metrics.stats import bootstrap_ci, bootstrap_mean_ci, improvement_percent, paired_bootstrap
from medlib.evaluation.prediction_file import read_predictions

__all__ = [
    "REPORT_CONVENTIONS",
    "ScoringOptions",
    "UNPARSED",
    "accuracy",
    "balanced_accuracy",
    "bootstrap_ci",
    "bootstrap_mean_ci",
    "compare_records",
    "comparison_table",
    "convention_table",
    "confusion_matrix",
    "headline",
    "improvement_percent",
    "label_groups",
    "markdown_table",
    "mean_absolute_error",
    "normalize_text",
    "paired_bootstrap",
    "read_predictions",
    "report_convention_rows",
    "score_predictions",
    "score_records",
    "worst_errors",
]
