"""Figures of the results site (`medlib report`): per-task scores with CIs, and experiments side by side, as inline SVG."""
from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # the report runs headless (CI, clusters): never ask for a display

import matplotlib.pyplot as plt  # noqa: E402

# Metric values with their 95% CI: (value, low, high); any of them may be unknown.
Metric = tuple[float | None, float | None, float | None]
PANEL_WIDTH, PANEL_HEIGHT = 3.6, 2.6
PALETTE = ("#8c8c8c", "#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#56b4e9")


def svg(fig: plt.Figure) -> str:
    """The figure as an inline <svg> element (text kept as text, so it stays small and searchable)."""
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _known(metric: Metric | None) -> bool:
    """Whether a metric has a finite value to draw."""
    return metric is not None and metric[0] is not None and math.isfinite(metric[0])


def _error(metric: Metric) -> tuple[float, float]:
    """Error-bar lengths below and above the value (0 where the CI is unknown)."""
    value, low, high = metric
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return 0.0, 0.0
    return max(0.0, value - low), max(0.0, high - value)


def _panels(n: int, columns: int = 3) -> tuple[plt.Figure, list]:
    """A grid of n panels, `columns` wide."""
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(PANEL_WIDTH * columns, PANEL_HEIGHT * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _title(label: str, lower_is_better: set[str]) -> str:
    """`task: metric`, with the direction where lower is better (MAE)."""
    task, _, metric = label.partition(":")
    return f"{task}: {metric}" + (" (lower is better)" if label in lower_is_better else "")


def _bars(ax, names: Sequence[str], metrics: Sequence[Metric], colors: Sequence[str], *, horizontal: bool) -> None:
    """Bars with 95% CI whiskers and their values written beside them."""
    values = [metric[0] for metric in metrics]
    errors = list(zip(*[_error(metric) for metric in metrics])) or [[], []]
    positions = range(len(names))
    if horizontal:
        bars = ax.barh(positions, values, xerr=errors, color=colors, capsize=3, height=0.6)
        ax.set_yticks(positions, names, fontsize=8)
        ax.invert_yaxis()
    else:
        bars = ax.bar(positions, values, yerr=errors, color=colors, capsize=3, width=0.6)
        ax.set_xticks(positions, names, fontsize=8)
    ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.margins(x=0.25) if horizontal else ax.margins(y=0.2)
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def task_scores_figure(checkpoints: dict[str, dict[str, Metric]], lower_is_better: set[str],
                       colors: dict[str, str]) -> plt.Figure | None:
    """One panel per task's primary metric, one bar per checkpoint with its 95% CI; None without task scores."""
    labels = list(dict.fromkeys(label for metrics in checkpoints.values() for label in metrics
                                if ":" in label and _known(metrics[label])))
    if not labels:
        return None
    fig, axes = _panels(len(labels))
    for ax, label in zip(axes, labels):
        names = [name for name, metrics in checkpoints.items() if _known(metrics.get(label))]
        _bars(ax, names, [checkpoints[name][label] for name in names], [colors[name] for name in names],
              horizontal=False)
        ax.set_title(_title(label, lower_is_better), fontsize=9)
    fig.suptitle("per-task score by checkpoint (whiskers: 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return fig


def comparison_figure(rows: dict[tuple[str, str], dict[str, Metric]], lower_is_better: set[str],
                      colors: dict[str, str]) -> plt.Figure | None:
    """Experiments side by side: one panel per task metric, one bar per experiment · checkpoint; None if < 2."""
    experiments = {experiment for experiment, _ in rows}
    labels = list(dict.fromkeys(label for metrics in rows.values() for label in metrics
                                if ":" in label and _known(metrics[label])))
    if len(experiments) < 2 or not labels:
        return None
    fig, axes = _panels(len(labels), columns=2)
    height = max(PANEL_HEIGHT, 0.32 * len(rows) + 1)
    fig.set_size_inches(fig.get_size_inches()[0] * 1.3, height * math.ceil(len(labels) / 2))
    for ax, label in zip(axes, labels):
        keys = [key for key, metrics in rows.items() if _known(metrics.get(label))]
        _bars(ax, [f"{experiment} · {checkpoint}" for experiment, checkpoint in keys],
              [rows[key][label] for key in keys], [colors[checkpoint] for _, checkpoint in keys], horizontal=True)
        ax.set_title(_title(label, lower_is_better), fontsize=9)
    fig.suptitle("experiments compared (whiskers: 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return fig


def checkpoint_colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per checkpoint name, the same in every figure (base grey, then the palette in order)."""
    ordered = list(dict.fromkeys(["base", "sft", "grpo", *names]))
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(ordered)}
