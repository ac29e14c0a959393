"""Score a predictions file by data set and task with the metrics each task calls for, with bootstrap CIs
and paired comparisons; the engine behind `medlib score` and the 50 notebook."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medlib.evaluation.metrics import flare, flare_report, stats, text, vqa
from medlib.evaluation.metrics.nltk_data import wordnet_available
from medlib.evaluation.parsing import parse_answer

REQUIRED_FIELDS = ("id", "task", "raw", "answer")
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


def read_predictions_file(path: str | Path) -> list[dict]:
    """Prediction records from a JSONL file; ValueError naming the file, line and field on bad input."""
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            missing = [field for field in REQUIRED_FIELDS if field not in record]
            if missing:
                raise ValueError(f"{path}:{number}: missing field {missing[0]!r}")
            if record["task"] not in PRIMARY:
                raise ValueError(f"{path}:{number}: field 'task' has unknown value {record['task']!r}")
            records.append(record)
    return records


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


def _items(task: str, group: list[dict], parser: str) -> tuple[list, list, list[dict], int]:
    """(references, predictions, kept records, number of unscorable references) for one group."""
    references, predictions, kept, bad = [], [], [], 0
    for record in group:
        choices = record.get("choices")
        if task in flare.FLARE_TASKS:
            reference = flare.parse_reference(task, record["answer"], parser, choices)
            prediction = flare.parse_item(task, record["raw"], parser, choices)
        elif task == "vqa_closed" and parser == "robust":
            reference = parse_answer(task, str(record["answer"]), choices)[0]
            prediction = parse_answer(task, str(record["raw"] or ""), choices)[0]
        else:
            reference = str(record["answer"]) if str(record["answer"]).strip() else None
            prediction = _answer_text(task, record["raw"], parser)
        if reference is None:
            bad += 1
            continue
        references.append(reference)
        predictions.append(prediction)
        kept.append(record)
    return references, predictions, kept, bad


def _unparsed(prediction: object) -> bool:
    """True for a prediction the parser could not read."""
    return prediction is None or prediction == ""


def _report_metrics(references: list, predictions: list, bertscore_model: str | None) -> tuple[dict, dict]:
    """(metrics, per-item score lists) for report generation."""
    generated = [p or "" for p in predictions]
    per_item = {
        "flare_report_score": report_item_scores(references, predictions),
        "rouge_l": text.rouge_l_per_item(generated, references),
        "temporal_f1": [text.temporal_f1_item(g, r) for g, r in zip(generated, references)],
    }  # fmt: skip
    metrics = {name: sum(values) / len(values) for name, values in per_item.items()}
    metrics["flare_report_components"] = flare_report.flare_report_score(generated, references)
    metrics["clinical_efficacy"] = flare_report.clinical_efficacy(generated, references)
    metrics["flare_bleu"] = flare_report.flare_bleu(generated, references)
    metrics.update(text.bleu_scores(generated, references))
    metrics["meteor"] = text.meteor(generated, references) if wordnet_available() else None
    if bertscore_model:
        result = text.bertscore(generated, references, model_type=bertscore_model)
        metrics["bertscore_f1"] = result["f1"]
        metrics["bertscore_settings"] = result["settings"]
        per_item["bertscore_f1"] = result["f1_per_item"]
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


def score_group(
    task: str, group: list[dict], parser: str = "flare", n_resamples: int = 1000, bertscore_model: str | None = None
) -> dict:
    """Metrics of one (dataset, task) group with n, unparsed and unscorable counts and a CI for the primary metric."""
    references, predictions, kept, n_bad = _items(task, group, parser)
    primary, lower_is_better = PRIMARY[task]
    result: dict[str, Any] = {
        "task": task, "n": len(kept), "n_unparsed": sum(map(_unparsed, predictions)),
        "n_bad_reference": n_bad, "primary": primary, "lower_is_better": lower_is_better,
    }  # fmt: skip
    if not kept:
        result.update(metrics={}, ci={})
        return result
    if task == "report_generation":
        metrics, per_item = _report_metrics(references, predictions, bertscore_model)
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
    result.update(metrics=metrics, ci=ci)
    return result


def score_records(
    predictions: Sequence[dict], parser: str = "flare", n_resamples: int = 1000, bertscore_model: str | None = None
) -> dict:
    """{"parser", "n", "groups": [score_group(...) + dataset]} over every (dataset, task) of the predictions."""
    groups = []
    for (dataset, task), group in _group(predictions).items():
        groups.append({"dataset": dataset, **score_group(task, group, parser, n_resamples, bertscore_model)})
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
        references, baseline_preds, _, _ = _items(task, [a for a, _ in pairs], parser)
        _, candidate_preds, _, _ = _items(task, [b for _, b in pairs], parser)
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


def markdown_table(scores: dict, comparison: list[dict] | None = None) -> str:
    """The scores (and comparison) as markdown tables: one row per data set and task."""
    lines = [
        f"Parser: `{scores['parser']}`; 95% bootstrap CIs ({scores['n_resamples']} resamples).",
        "",
        "| dataset | task | n | unparsed | metric | value | 95% CI |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for group in scores["groups"]:
        primary = group["primary"]
        ci = group["ci"].get(primary, {})
        lines.append(
            f"| {group['dataset']} | {group['task']} | {group['n']} | {group['n_unparsed']} | {primary} | "
            f"{_fmt(group['metrics'].get(primary))} | [{_fmt(ci.get('low'))}, {_fmt(ci.get('high'))}] |"
        )
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
