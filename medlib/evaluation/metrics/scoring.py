"""Score a predictions file by data set and task with the metrics each task calls for, with bootstrap CIs
and paired comparisons; the engine behind `medlib score` and the 50 notebook."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from medlib.evaluation.metrics import coco, flare, flare_report, libra, stats, text, vqa
from medlib.evaluation.metrics.model_based import model_based_scores
from medlib.evaluation.parsing import parse_answer

# The headline metric of each task and whether lower is better.
PRIMARY = {
    "classification": ("balanced_accuracy", False),
    "multi_label": ("f1", False),
    "detection": ("f1", False),
    "instance_detection": ("f1", False),
    "counting": ("mae", True),
    "regression": ("mae", True),
    "vqa_closed": ("exact_match", False),
    "vqa_open": ("exact_match", False),
    "report_generation": ("flare_report_score", False),
}
# Report metrics come in the conventions of the tables they are compared with; each key names its convention.
REPORT_CONVENTIONS = {
    "flare": "FLARE 2025 utils/metrics.py on the answer text: keyword report score (its \"GREEN\"), clinical "
             "efficacy, its BLEU (flare_*, clinical_efficacy)",
    "libra": "Libra evaluate_report on lower-cased, cleaned text: HF evaluate BLEU-1…4, ROUGE-L, METEOR, "
             "BERTScore and temporal entity F1 (libra_*)",
    "sacrebleu": "sacrebleu corpus BLEU-1…4 on the answer text: 13a tokens, exponential smoothing (sacrebleu*)",
    "coco": "pycocoevalcap as COCO caption evaluation runs it: PTBTokenizer, BLEU-1…4 (closest reference "
            "length), ROUGE-L, CIDEr-D, METEOR 1.5 on request (coco_*)",
}


@dataclass(frozen=True)
class ScoringOptions:
    """Optional report metrics: BERTScore model, the coco convention (and its METEOR), model-based metrics."""

    bertscore_model: str | None = None
    coco: bool = True
    coco_meteor: bool = False
    model_metrics: tuple[str, ...] = ()


def _group(predictions: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
    """Predictions grouped by (dataset, task), sorted."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for prediction in predictions:
        groups.setdefault((str(prediction.get("dataset") or "-"), prediction["task"]), []).append(prediction)
    return dict(sorted(groups.items()))


def _answer_text(task: str, raw: object, parser: str) -> str | None:
    """The answer text of a free-text or VQA output under the parser's conventions (None if empty)."""
    raw = "" if raw is None else str(raw)
    if parser == "flare":
        content = flare.flare_clean(flare.answer_content(raw)).strip()
        return content or None
    return parse_answer(task, raw)[0]


def _empty(value: object) -> bool:
    """True for a missing or blank reference."""
    return value is None or not str(value).strip()


def _reference(task: str, record: dict, parser: str) -> object | None:
    """The record's reference under the parser's conventions; None when it cannot be scored.

    `flare` scores what the originals score: FLARE keeps empty classification, label, box and report
    references (only counting/regression references that are no number drop out) and Libra scores empty
    reports; `robust` drops every empty reference."""
    answer, choices = record["answer"], record.get("choices")
    if task in flare.FLARE_TASKS:
        return flare.parse_reference(task, answer, parser, choices)
    if task == "vqa_closed" and parser == "robust":
        return parse_answer(task, "" if answer is None else str(answer), choices)[0]
    if _empty(answer):
        return "" if task == "report_generation" and parser == "flare" else None
    return str(answer)


def _items(task: str, group: list[dict], parser: str) -> tuple[list, list, list[dict], int, int]:
    """(references, predictions, kept records, references skipped, empty references) for one group."""
    references, predictions, kept, skipped, empty = [], [], [], 0, 0
    for record in group:
        empty += _empty(record["answer"])
        reference = _reference(task, record, parser)
        if reference is None:
            skipped += 1
            continue
        choices = record.get("choices")
        if task in flare.FLARE_TASKS:
            prediction = flare.parse_item(task, record["raw"], parser, choices)
        elif task == "vqa_closed" and parser == "robust":
            prediction = parse_answer(task, str(record["raw"] or ""), choices)[0]
        else:
            prediction = _answer_text(task, record["raw"], parser)
        references.append(reference)
        predictions.append(prediction)
        kept.append(record)
    return references, predictions, kept, skipped, empty


def _unparsed(prediction: object) -> bool:
    """True for a prediction the parser could not read."""
    return prediction is None or prediction == ""


def _report_metrics(references: list, predictions: list, options: ScoringOptions) -> tuple[dict, dict]:
    """(metrics, per-item score lists) for report generation, in every convention of REPORT_CONVENTIONS."""
    generated = [p or "" for p in predictions]
    per_item = {"flare_report_score": report_item_scores(references, predictions)}
    metrics: dict[str, Any] = {"flare_report_score": sum(per_item["flare_report_score"]) / len(generated)}
    metrics["flare_report_components"] = flare_report.flare_report_score(generated, references)
    metrics["clinical_efficacy"] = flare_report.clinical_efficacy(generated, references)
    metrics["flare_bleu"] = flare_report.flare_bleu(generated, references)
    libra_metrics = libra.libra_scores(generated, references, options.bertscore_model)
    per_item.update(libra_metrics.pop("per_item"))
    metrics.update(libra_metrics)
    metrics.update({f"sacrebleu{n}": value for n, value in text.sacrebleu_orders(generated, references).items()})
    if options.coco:
        reason = coco.unavailable_reason()
        if reason:
            metrics["coco_unavailable"] = reason
        else:
            coco_metrics = coco.coco_scores(generated, references, meteor=options.coco_meteor)
            per_item.update(coco_metrics.pop("per_item"))
            metrics.update(coco_metrics)
    if options.model_metrics:
        metrics["model_based"] = model_based_scores(generated, references, options.model_metrics)
    metrics["conventions"] = REPORT_CONVENTIONS
    return metrics, per_item


def report_item_scores(references: Sequence, predictions: Sequence) -> list[float]:
    """FLARE report score of each generated report (an unparsed one scores as empty text)."""
    return [flare_report.flare_report_components(p or "", r)["overall"] for p, r in zip(predictions, references)]


def _report_primary(_references: Sequence, scores: Sequence) -> dict:
    """A report group's primary metric from its per-item scores (their mean)."""
    return {PRIMARY["report_generation"][0]: sum(scores) / len(scores) if scores else float("nan")}


def _task_metric(task: str, parser: str) -> Callable[[Sequence, Sequence], dict]:
    """(references, predictions) → metrics dict for a non-report task."""
    if task in flare.FLARE_TASKS:
        return flare.task_metric(task, parser)
    return vqa.vqa_scores


def _primary_of(metric: Callable[[Sequence, Sequence], dict], name: str) -> Callable[[Sequence, Sequence], float]:
    """The metric reduced to one named number, for the bootstrap."""
    return lambda references, predictions: metric(references, predictions)[name]


def _nothing_to_score(task: str, parser: str) -> dict:
    """Metrics of a group with no scorable item: the originals' values under `flare` (0, or an infinite MAE)."""
    if parser == "flare" and task in flare.FLARE_TASKS:
        return flare.task_metric(task, parser)([], [])
    return {}


def score_group(task: str, group: list[dict], parser: str = "flare", n_resamples: int = 1000,
                options: ScoringOptions | None = None) -> dict:
    """Metrics of one (dataset, task) group with its counts (n, unparsed answers, empty references, skipped
    references) and a CI for the primary metric."""
    options = options or ScoringOptions()
    references, predictions, kept, n_skipped, n_empty = _items(task, group, parser)
    primary, lower_is_better = PRIMARY[task]
    result: dict[str, Any] = {
        "task": task, "n": len(kept), "n_unparsed": sum(map(_unparsed, predictions)), "n_empty_reference": n_empty,
        "n_skipped_reference": n_skipped, "primary": primary, "lower_is_better": lower_is_better,
    }  # fmt: skip
    if not kept:
        result.update(metrics=_nothing_to_score(task, parser), ci={}, nothing_to_score=True)
        return result
    if task == "report_generation":
        metrics, per_item = _report_metrics(references, predictions, options)
        ci = {name: stats.bootstrap_mean_ci(values, n_resamples=n_resamples) for name, values in per_item.items()}
    else:
        metric = _task_metric(task, parser)
        metrics = metric(references, predictions)
        if task.startswith("vqa"):
            metrics["answer_tag_accuracy"] = vqa.answer_tag_accuracy([r["raw"] for r in kept], references)
            # Exact match is a mean of per-item scores: resample those rather than re-scoring text.
            matches = [vqa.exact_match(p, r) for r, p in zip(references, predictions)]
            ci = {primary: stats.bootstrap_mean_ci(matches, n_resamples=n_resamples)}
        else:
            ci = {primary: stats.bootstrap_ci(_primary_of(metric, primary), references, predictions,
                                              n_resamples=n_resamples)}  # fmt: skip
    # JSON has no infinity: say it in words where FLARE's MAE is infinite (no answer parsed).
    result.update(metrics=metrics, ci=ci, nothing_to_score=metrics.get("n_scored") == 0)
    return result


def score_records(predictions: Sequence[dict], parser: str = "flare", n_resamples: int = 1000,
                  options: ScoringOptions | None = None) -> dict:
    """{"parser", "n", "groups": [score_group(...) + dataset]} over every (dataset, task) of the predictions."""
    groups = []
    for (dataset, task), group in _group(predictions).items():
        groups.append({"dataset": dataset, **score_group(task, group, parser, n_resamples, options)})
    return {"parser": parser, "n": len(predictions), "n_resamples": n_resamples, "groups": groups}


def compare_records(
    baseline: Sequence[dict], candidate: Sequence[dict], parser: str = "flare", n_resamples: int = 1000
) -> list[dict]:
    """Per (dataset, task), the primary metric of both on their shared ids, paired-bootstrap difference
    (candidate − baseline) with CI and p-value, and improvement in percent."""
    by_id = {record["id"]: record for record in baseline}
    rows = []
    for (dataset, task), group in _group([r for r in candidate if r["id"] in by_id]).items():
        pairs = [(by_id[r["id"]], r) for r in group if by_id[r["id"]]["task"] == task]
        references, baseline_preds, _, _, _ = _items(task, [a for a, _ in pairs], parser)
        _, candidate_preds, _, _, _ = _items(task, [b for _, b in pairs], parser)
        if not references or len(baseline_preds) != len(candidate_preds):
            continue
        primary, lower_is_better = PRIMARY[task]
        if task == "report_generation":  # score each report once, then resample the per-item scores
            baseline_preds = report_item_scores(references, baseline_preds)
            candidate_preds = report_item_scores(references, candidate_preds)
            metric = _report_primary
        else:
            metric = _task_metric(task, parser)
        test = stats.paired_bootstrap(
            _primary_of(metric, primary), references, baseline_preds, candidate_preds, n_resamples=n_resamples
        )
        value_a, value_b = metric(references, baseline_preds)[primary], metric(references, candidate_preds)[primary]
        rows.append({
            "dataset": dataset, "task": task, "metric": primary, "n": len(references), "baseline": value_a,
            "candidate": value_b, "difference": test["difference"], "low": test["low"], "high": test["high"],
            "p_value": test["p_value"],
            "improvement_percent": stats.improvement_percent(value_a, value_b, lower_is_better),
        })  # fmt: skip
    return rows


def _fmt(value: object) -> str:
    """A number with 4 significant decimals, '–' for missing or nan."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


REPORT_COLUMNS = (
    ("flare", ("flare_report_score", "clinical_efficacy", "flare_bleu")),
    ("libra", ("libra_bleu1", "libra_bleu4", "libra_rouge_l", "libra_meteor", "libra_temporal_f1")),
    ("sacrebleu", ("sacrebleu1", "sacrebleu4")),
    ("coco", ("coco_bleu1", "coco_bleu4", "coco_rouge_l", "coco_cider", "coco_meteor")),
)


def report_convention_rows(scores: dict) -> list[dict]:
    """One row per report group and convention: the convention's headline numbers (None where not computed)."""
    rows = []
    for group in scores["groups"]:
        if group["task"] != "report_generation" or not group["n"]:
            continue
        for convention, names in REPORT_COLUMNS:
            rows.append({"dataset": group["dataset"], "convention": convention,
                         **{name: group["metrics"].get(name) for name in names}})
    return rows


def convention_table(task_scores: dict[str, dict]) -> Any:
    """Report metrics by convention as a pandas DataFrame: rows (dataset, convention, metric), one column per
    checkpoint of {checkpoint: score_records(...)}; empty when no checkpoint has reports."""
    import pandas as pd

    rows = [{"checkpoint": checkpoint, "dataset": row["dataset"], "convention": row["convention"], "metric": name,
             "value": value}
            for checkpoint, scores in task_scores.items() for row in report_convention_rows(scores)
            for name, value in row.items() if name not in ("dataset", "convention") and value is not None]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).pivot_table(index=["dataset", "convention", "metric"], columns="checkpoint",
                                          values="value", sort=False)


def markdown_table(scores: dict, comparison: list[dict] | None = None) -> str:
    """The scores (and comparison) as markdown tables: one row per data set and task, then report conventions."""
    lines = [
        f"Parser: `{scores['parser']}`; 95% bootstrap CIs ({scores['n_resamples']} resamples).",
        "",
        "| dataset | task | n | unparsed | empty reference | skipped | metric | value | 95% CI |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for group in scores["groups"]:
        primary = group["primary"]
        ci = group["ci"].get(primary, {})
        lines.append(
            f"| {group['dataset']} | {group['task']} | {group['n']} | {group['n_unparsed']} | "
            f"{group['n_empty_reference']} | {group['n_skipped_reference']} | {primary} | "
            f"{_fmt(group['metrics'].get(primary))} | [{_fmt(ci.get('low'))}, {_fmt(ci.get('high'))}] |"
        )
    for row in report_convention_rows(scores):
        if row["convention"] == "flare":
            lines += ["", "Report metrics by convention (README, Metrics):", "",
                      "| dataset | convention | metrics |", "| --- | --- | --- |"]
        values = ", ".join(f"{name} {_fmt(value)}" for name, value in row.items()
                           if name not in ("dataset", "convention"))
        lines.append(f"| {row['dataset']} | {row['convention']} | {values} |")
    if comparison:
        lines += [
            "",
            "| dataset | task | metric | baseline | candidate | difference | 95% CI | p | improvement % |",
            "| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for row in comparison:
            lines.append(
                f"| {row['dataset']} | {row['task']} | {row['metric']} | {_fmt(row['baseline'])} | "
                f"{_fmt(row['candidate'])} | {_fmt(row['difference'])} | [{_fmt(row['low'])}, {_fmt(row['high'])}] | "
                f"{_fmt(row['p_value'])} | {_fmt(row['improvement_percent'])} |"
            )
    return "\n".join(lines) + "\n"
