"""`medlib report`: results/index.html and a leaderboard (CSV + markdown) across every experiment."""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medlib.pipeline.config import display_path
from medlib.pipeline.results import ENVIRONMENT_FILE, METRICS_FILE, atomic_write_text
from medlib.pipeline.runner import RESOLVED_PARAMS_FILE, STAGES_FILE, render_html

ANALYSIS_STAGE = "50_metric_analysis"
HEADLINE_KEYS = ("accuracy", "format_valid", "image_question_accuracy")
REPORTED_PACKAGES = ("torch", "transformers", "trl", "peft", "unsloth")
# Figures the notebooks save that the index shows per experiment: training curves, then scores against chance.
HEADLINE_FIGURES = {"20_sft_loss.png": "SFT training curves", "30_grpo_rewards.png": "GRPO rewards",
                    "50_accuracy.png": "accuracy by question type vs chance"}


@dataclass
class Row:
    """One leaderboard row: an experiment's checkpoint and its headline metrics (value, low, high)."""

    experiment: str
    checkpoint: str
    metrics: dict[str, tuple[float | None, float | None, float | None]] = field(default_factory=dict)
    lower_is_better: set[str] = field(default_factory=set)


@dataclass
class ExperimentSummary:
    """What the report shows about one results folder."""

    name: str
    folder: Path
    rows: list[Row]
    provenance: dict[str, Any]
    notebooks: list[dict[str, str | None]]
    problems: list[str]
    figures: list[str] = field(default_factory=list)


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    """A JSON object from `path`; {} with a problem line when missing or malformed."""
    if not path.exists():
        problems.append(f"{path.name} missing")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        problems.append(f"{path.name} unreadable: {error}")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name}: expected a JSON object")
        return {}
    return data


def params_hash(path: Path) -> str | None:
    """sha256 (16 hex) of the resolved parameters' content, independent of comments and key order."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def data_fingerprint(data_dir: Path) -> str | None:
    """sha256 (16 hex) over the records JSONL files of a data folder (names and contents), None if none."""
    files = sorted(data_dir.glob("*.jsonl")) if data_dir.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def headline_rows(name: str, analysis: dict[str, Any]) -> list[Row]:
    """One row per checkpoint of the metric-analysis block, with CIs of each task's primary metric."""
    headline = analysis.get("headline") if isinstance(analysis.get("headline"), dict) else {}
    task_scores = analysis.get("task_scores") if isinstance(analysis.get("task_scores"), dict) else {}
    checkpoints = [key for key, value in headline.items() if isinstance(value, dict)]
    checkpoints += [key for key in task_scores if key not in checkpoints]
    rows = []
    for checkpoint in checkpoints:
        row = Row(name, checkpoint)
        for key in HEADLINE_KEYS:
            value = (headline.get(checkpoint) or {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row.metrics[key] = (float(value), None, None)
        scores = task_scores.get(checkpoint) or {}
        for group in scores.get("groups", []) if isinstance(scores, dict) else []:
            primary = group.get("primary")
            if not primary:
                continue
            label = f"{group.get('task')}:{primary}"
            ci = (group.get("ci") or {}).get(primary) or {}
            value = ci.get("value", (group.get("metrics") or {}).get(primary))
            row.metrics[label] = (value, ci.get("low"), ci.get("high"))
            if group.get("lower_is_better"):
                row.lower_is_better.add(label)
        rows.append(row)
    return rows


def _notebooks(folder: Path, render: bool) -> tuple[list[dict[str, str | None]], list[str]]:
    """Each executed notebook with its HTML and code-hidden HTML (rendered when missing or stale)."""
    entries, problems = [], []
    for notebook in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        noinput = notebook.with_suffix(".noinput.html")
        stale = not noinput.exists() or noinput.stat().st_mtime < notebook.stat().st_mtime
        if render and stale:
            try:
                render_html(notebook, exclude_input=True)
            except Exception as error:  # noqa: BLE001 - one broken notebook must not sink the page
                problems.append(f"{notebook.name}: code-hidden rendering failed: {type(error).__name__}: {error}")
        html_path = notebook.with_suffix(".html")
        entries.append({
            "stem": notebook.stem,
            "html": html_path.name if html_path.exists() else None,
            "noinput": noinput.name if noinput.exists() else None,
        })
    return entries, problems


def summarize(folder: Path, *, repo_root: Path | None = None, render: bool = True) -> ExperimentSummary:
    """Read one results folder, tolerating missing stages and files (each noted as a problem)."""
    repo_root = repo_root or Path.cwd()
    problems: list[str] = []
    metrics = _read_json(folder / METRICS_FILE, problems)
    environment = _read_json(folder / ENVIRONMENT_FILE, problems)
    stages = _read_json(folder / STAGES_FILE, []) if (folder / STAGES_FILE).exists() else {}
    resolved_path = folder / RESOLVED_PARAMS_FILE
    resolved: dict[str, Any] = {}
    if resolved_path.exists():
        try:
            resolved = yaml.safe_load(resolved_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            problems.append(f"{RESOLVED_PARAMS_FILE} unreadable: {error}")
    else:
        problems.append(f"{RESOLVED_PARAMS_FILE} missing")
    name = next((block.get("experiment") for block in resolved.values()
                 if isinstance(block, dict) and block.get("experiment")), None) or folder.name
    analysis = metrics.get(ANALYSIS_STAGE)
    if not isinstance(analysis, dict):
        problems.append(f"no {ANALYSIS_STAGE} metrics yet")
        analysis = {}
    data_dirs = {str(block["data_dir"]) for block in resolved.values()
                 if isinstance(block, dict) and isinstance(block.get("data_dir"), str)}
    exploration = metrics.get("10_data_exploration") if isinstance(metrics.get("10_data_exploration"), dict) else {}
    fingerprint = exploration.get("data_fingerprint")
    if fingerprint is None and len(data_dirs) == 1:
        data_dir = Path(next(iter(data_dirs)))
        fingerprint = data_fingerprint(data_dir if data_dir.is_absolute() else repo_root / data_dir)
    packages = environment.get("packages") if isinstance(environment.get("packages"), dict) else {}
    completed = [stem for stem, state in stages.items() if isinstance(state, dict) and state.get("status") == "completed"]
    provenance = {
        "git_commit": environment.get("git_commit"),
        "git_dirty": environment.get("git_dirty"),
        "params_hash": params_hash(resolved_path) if resolved_path.exists() else None,
        "data_fingerprint": fingerprint,
        "device": environment.get("device"),
        "device_count": environment.get("device_count"),
        "packages": {key: packages.get(key) for key in REPORTED_PACKAGES if packages.get(key)},
        "timestamp_utc": environment.get("timestamp_utc"),
        "stages_completed": completed,
    }
    notebooks, notebook_problems = _notebooks(folder, render)
    figures = [name for name in HEADLINE_FIGURES if (folder / "figures" / name).is_file()]
    return ExperimentSummary(name, folder, headline_rows(name, analysis), provenance, notebooks,
                             problems + notebook_problems, figures)


def _columns(summaries: list[ExperimentSummary]) -> list[str]:
    """Metric columns in first-seen order, the headline keys first."""
    seen = [key for key in HEADLINE_KEYS if any(key in row.metrics for s in summaries for row in s.rows)]
    for summary in summaries:
        for row in summary.rows:
            seen += [key for key in row.metrics if key not in seen]
    return seen


def _sorted_rows(summaries: list[ExperimentSummary]) -> list[tuple[ExperimentSummary, Row]]:
    """Rows by accuracy, best first; rows without accuracy last, then by name."""
    pairs = [(summary, row) for summary in summaries for row in summary.rows]

    def key(pair: tuple[ExperimentSummary, Row]) -> tuple[bool, float, str, str]:
        value = pair[1].metrics.get("accuracy", (None, None, None))[0]
        return (value is None, -(value or 0.0), pair[1].experiment, pair[1].checkpoint)

    return sorted(pairs, key=key)


def _number(value: float | None) -> str:
    """A metric for people: 3 decimals, an en dash when missing."""
    return "–" if value is None else f"{value:.3f}"


def _with_ci(metric: tuple[float | None, float | None, float | None] | None) -> str:
    """`0.990 [0.970, 1.000]`, or the bare value without an interval."""
    if metric is None:
        return ""
    value, low, high = metric
    if low is None or high is None:
        return _number(value)
    return f"{_number(value)} [{_number(low)}, {_number(high)}]"


PROVENANCE_COLUMNS = ("git_commit", "params_hash", "data_fingerprint", "device")


def leaderboard_csv(summaries: list[ExperimentSummary]) -> str:
    """CSV: experiment, checkpoint, each metric with _low/_high columns, then provenance."""
    columns = _columns(summaries)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["experiment", "checkpoint"]
    for column in columns:
        header += [column, f"{column}_low", f"{column}_high"]
    writer.writerow(header + list(PROVENANCE_COLUMNS))
    for summary, row in _sorted_rows(summaries):
        cells: list[Any] = [row.experiment, row.checkpoint]
        for column in columns:
            cells += ["" if item is None else item for item in row.metrics.get(column, (None, None, None))]
        writer.writerow(cells + [summary.provenance.get(key) or "" for key in PROVENANCE_COLUMNS])
    return buffer.getvalue()


def leaderboard_markdown(summaries: list[ExperimentSummary]) -> str:
    """A markdown table: one row per experiment and checkpoint, metrics with 95% CIs where known."""
    columns = _columns(summaries)
    lines = ["| experiment | checkpoint | " + " | ".join(columns) + " | commit |",
             "| --- | --- | " + " | ".join("---:" for _ in columns) + " | --- |"]
    for summary, row in _sorted_rows(summaries):
        commit = (summary.provenance.get("git_commit") or "")[:10]
        cells = [_with_ci(row.metrics.get(column)) for column in columns]
        lines.append(f"| {row.experiment} | {row.checkpoint} | " + " | ".join(cells) + f" | {commit} |")
    return "\n".join(lines) + "\n"


STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}code{font-size:90%}
.problems{color:#a40}section{margin-top:2.5em}figure{margin:1em 0}figure svg{max-width:100%;height:auto}
figcaption{color:#555;font-size:90%}.curves{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.curves img{max-width:560px;width:100%;border:1px solid #eee}"""


def index_html(summaries: list[ExperimentSummary], results_root: Path) -> str:
    """The results site's front page: leaderboard, then one section per experiment."""
    escape = html.escape
    columns = _columns(summaries)
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    body_rows = []
    for summary, row in _sorted_rows(summaries):
        link = f'<a href="#{escape(summary.folder.name)}">{escape(row.experiment)}</a>'
        cells = "".join(f'<td class="num">{escape(_with_ci(row.metrics.get(c)))}</td>' for c in columns)
        body_rows.append(f"<tr><td>{link}</td><td>{escape(row.checkpoint)}</td>{cells}</tr>")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>medlib results</title>", f"<style>{STYLE}</style></head><body>",
        "<h1>Results</h1>",
        f"<p>{len(summaries)} experiment(s) in <code>{escape(display_path(results_root))}</code>. "
        "Metrics with 95% bootstrap confidence intervals where the analysis computed them. "
        '<a href="leaderboard.csv">CSV</a> · <a href="leaderboard.md">markdown</a></p>',
        f"<table><tr><th>experiment</th><th>checkpoint</th>{head}</tr>{''.join(body_rows)}</table>",
    ]
    from medlib.pipeline import site_figures

    colors = site_figures.checkpoint_colors([row.checkpoint for s in summaries for row in s.rows])
    lower = {label for s in summaries for row in s.rows for label in row.lower_is_better}
    compared = site_figures.comparison_figure(
        {(row.experiment, row.checkpoint): row.metrics for s in summaries for row in s.rows}, lower, colors)
    if compared is not None:
        parts.append('<section id="comparison"><h2>Across experiments</h2>'
                     f'<figure class="chart">{site_figures.svg(compared)}<figcaption>Each task\'s primary metric for '
                     "every experiment and checkpoint, from their 50_metric_analysis.</figcaption></figure></section>")
    for summary in sorted(summaries, key=lambda s: s.name):
        parts.append(_section(summary, results_root, colors))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _figures(summary: ExperimentSummary, base: str, colors: dict[str, str] | None) -> str:
    """An experiment's headline figures: task scores per checkpoint with CIs, then the notebooks' saved curves."""
    from medlib.pipeline import site_figures

    escape = html.escape
    colors = colors or site_figures.checkpoint_colors([row.checkpoint for row in summary.rows])
    lower = {label for row in summary.rows for label in row.lower_is_better}
    scores = site_figures.task_scores_figure({row.checkpoint: row.metrics for row in summary.rows}, lower, colors)
    parts = [f'<figure class="chart">{site_figures.svg(scores)}</figure>'] if scores is not None else []
    images = "".join(
        f'<figure><a href="{escape(base)}/figures/{escape(name)}"><img src="{escape(base)}/figures/{escape(name)}" '
        f'alt="{escape(HEADLINE_FIGURES[name])}"></a><figcaption>{escape(HEADLINE_FIGURES[name])}</figcaption></figure>'
        for name in summary.figures)
    if images:
        parts.append(f'<div class="curves">{images}</div>')
    return "".join(parts)


def _section(summary: ExperimentSummary, results_root: Path, colors: dict[str, str] | None = None) -> str:
    """One experiment: headline figures, notebooks (full and code-hidden), provenance, problems."""
    escape = html.escape
    base = summary.folder.relative_to(results_root).as_posix() if summary.folder.is_relative_to(results_root) \
        else summary.folder.as_posix()
    links = []
    for entry in summary.notebooks:
        full = f'<a href="{escape(base)}/{escape(entry["html"])}">notebook</a>' if entry["html"] else "not rendered"
        hidden = (f' · <a href="{escape(base)}/{escape(entry["noinput"])}">without code</a>'
                  if entry["noinput"] else "")
        links.append(f"<li><code>{escape(str(entry['stem']))}</code>: {full}{hidden}</li>")
    provenance = summary.provenance
    packages = ", ".join(f"{name} {version}" for name, version in provenance["packages"].items())
    dirty = " (uncommitted changes)" if provenance.get("git_dirty") else ""
    facts = [
        ("git commit", f"{provenance.get('git_commit') or 'unknown'}{dirty}"),
        ("params hash", provenance.get("params_hash") or "unknown"),
        ("data fingerprint", provenance.get("data_fingerprint") or "unknown"),
        ("device", f"{provenance.get('device') or 'unknown'} × {provenance.get('device_count') or 1}"),
        ("packages", packages or "unknown"),
        ("run at (UTC)", provenance.get("timestamp_utc") or "unknown"),
        ("stages completed", ", ".join(provenance["stages_completed"]) or "not recorded"),
    ]
    rows = "".join(f"<tr><th>{escape(key)}</th><td>{escape(str(value))}</td></tr>" for key, value in facts)
    problems = "".join(f"<li>{escape(problem)}</li>" for problem in summary.problems)
    return (f'<section id="{escape(summary.folder.name)}"><h2>{escape(summary.name)}</h2>'
            f'<p><a href="{escape(base)}/">files</a> · <a href="{escape(base)}/{RESOLVED_PARAMS_FILE}">'
            f"parameters</a></p>{_figures(summary, base, colors)}"
            f"<ul>{''.join(links) or '<li>no executed notebooks</li>'}</ul>"
            f"<table>{rows}</table>"
            + (f'<ul class="problems">{problems}</ul>' if problems else "") + "</section>")


def experiment_folders(results_root: Path) -> list[Path]:
    """Subfolders of results_root that hold a run: metrics.json, params.resolved.yaml or a notebook."""
    if not results_root.is_dir():
        return []
    return [folder for folder in sorted(results_root.iterdir()) if folder.is_dir() and (
        (folder / METRICS_FILE).exists() or (folder / RESOLVED_PARAMS_FILE).exists()
        or any(folder.glob("[0-9][0-9]_*.ipynb")))]


def build_report(results_root: Path | str = "results", *, repo_root: Path | str | None = None,
                 render: bool = True) -> dict[str, Path]:
    """Write index.html, leaderboard.csv and leaderboard.md into results_root; return their paths."""
    results_root = Path(results_root)
    summaries = [summarize(folder, repo_root=Path(repo_root) if repo_root else None, render=render)
                 for folder in experiment_folders(results_root)]
    return {
        "index": atomic_write_text(results_root / "index.html", index_html(summaries, results_root)),
        "csv": atomic_write_text(results_root / "leaderboard.csv", leaderboard_csv(summaries)),
        "markdown": atomic_write_text(results_root / "leaderboard.md", leaderboard_markdown(summaries)),
    }


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `medlib report [RESULTS_DIR] [--no-render]`."""
    parser = subparsers.add_parser(
        "report", help="build results/index.html and a leaderboard across experiments",
        description="Read every results/<experiment>/ folder and write index.html (leaderboard, notebook links "
        "with code-hidden versions, provenance), leaderboard.csv and leaderboard.md.")
    parser.add_argument("results", nargs="?", default="results", help="results root (default: %(default)s)")
    parser.add_argument("--no-render", dest="render", action="store_false",
                        help="do not render missing code-hidden notebook HTML")
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    """Handler of `medlib report`."""
    paths = build_report(args.results, render=args.render)
    print(f"[medlib] report: {display_path(paths['index'])}, {display_path(paths['csv'])}, "
          f"{display_path(paths['markdown'])}")
    return 0
