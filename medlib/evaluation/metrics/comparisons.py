"""Each checkpoint against the one before it (SFT vs base, GRPO vs SFT): paired bootstrap per task, and a figure.

The numbers come from `scoring.compare_records` (each task's primary metric under the chosen parser, the
difference later − earlier on the same questions, its 95% paired-bootstrap CI and two-sided p-value); this
module names the pairs `<later>_vs_<earlier>` and keys their rows by task, as `metrics.json` stores them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from medlib.evaluation.metrics.scoring import PRIMARY, compare_records


def pair_name(later: str, earlier: str) -> str:
    """The key of one comparison: `<later>_vs_<earlier>`."""
    return f"{later}_vs_{earlier}"


def verdict(row: Mapping[str, Any]) -> str:
    """`better`, `worse` or `unclear`: whether the CI of the difference excludes zero, and on which side."""
    low, high = row.get("ci_low", math.nan), row.get("ci_high", math.nan)
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 <= high:
        return "unclear"
    up = low > 0
    return "better" if up != bool(row.get("lower_is_better")) else "worse"


def comparison_pairs(order: Sequence[str], against_first: bool = False) -> list[tuple[str, str]]:
    """(earlier, later) of consecutive checkpoints, then each later one against the first when asked."""
    pairs = list(zip(order, order[1:]))
    if against_first:
        pairs += [(order[0], later) for later in order[2:]]
    return pairs


def stepwise_comparisons(records: Mapping[str, Sequence[dict]], order: Sequence[str], parser: str = "flare",
                         n_resamples: int = 1000, against_first: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """{`<later>_vs_<earlier>`: {task: {metric, difference, ci_low, ci_high, p_value, ...}}} for consecutive checkpoints.

    A task answered in more than one data set is keyed `<dataset>/<task>`; `difference` is later − earlier
    (for a lower-is-better metric such as MAE, a negative difference is an improvement: see `verdict`).
    `against_first` adds each checkpoint after the second against the first (e.g. `grpo_vs_base`).
    """
    comparisons: dict[str, dict[str, dict[str, Any]]] = {}
    for earlier, later in comparison_pairs(order, against_first):
        rows = compare_records(records[earlier], records[later], parser, n_resamples)
        datasets_of: dict[str, set[str]] = {}
        for row in rows:
            datasets_of.setdefault(row["task"], set()).add(row["dataset"])
        pair: dict[str, dict[str, Any]] = {}
        for row in rows:
            key = row["task"] if len(datasets_of[row["task"]]) == 1 else f"{row['dataset']}/{row['task']}"
            entry = {"metric": row["metric"], "difference": row["difference"], "ci_low": row["low"],
                     "ci_high": row["high"], "p_value": row["p_value"], "n": row["n"], "dataset": row["dataset"],
                     earlier: row["baseline"], later: row["candidate"],
                     "lower_is_better": PRIMARY[row["task"]][1], "n_resamples": n_resamples}
            entry["verdict"] = verdict(entry)
            pair[key] = entry
        comparisons[pair_name(later, earlier)] = pair
    return comparisons


def comparisons_table(comparisons: Mapping[str, Mapping[str, Mapping[str, Any]]]):
    """One row per (comparison, task): the values, the difference with its CI, p and the verdict (a DataFrame)."""
    import pandas as pd

    rows = []
    for name, pair in comparisons.items():
        later, earlier = name.split("_vs_", 1)
        for task, row in pair.items():
            rows.append({"comparison": name, "task": task, "metric": row["metric"], earlier: row[earlier],
                         later: row[later], "difference": row["difference"], "ci_low": row["ci_low"],
                         "ci_high": row["ci_high"], "p_value": row["p_value"], "verdict": row["verdict"]})
    return pd.DataFrame(rows)


def comparisons_figure(comparisons: Mapping[str, Mapping[str, Mapping[str, Any]]]):
    """One panel per comparison: each task's difference with its 95% CI, zero marked, improvements green."""
    import matplotlib.pyplot as plt

    names = [name for name, pair in comparisons.items() if pair]
    rows = max([len(comparisons[n]) for n in names] or [1])
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(6.5 * max(1, len(names)), 1.4 + 0.8 * rows),
                             squeeze=False)
    colours = {"better": "tab:green", "worse": "tab:red", "unclear": "tab:gray"}
    for ax, name in zip(axes.flat, names):
        pair = comparisons[name]
        labels = []
        for y, (task, row) in enumerate(pair.items()):
            difference, low, high = row["difference"], row["ci_low"], row["ci_high"]
            colour = colours[row["verdict"]]
            if math.isfinite(low) and math.isfinite(high):
                ax.plot([low, high], [y, y], color=colour, linewidth=2)
            ax.plot([difference], [y], "o", color=colour)
            better = "lower" if row["lower_is_better"] else "higher"
            detail = f"p={row['p_value']:.3g}" if math.isfinite(difference) else "undefined (nothing parsed)"
            labels.append(f"{task}\n{row['metric']} ({better} is better), {detail}")
        ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(-0.6, len(labels) - 0.4)
        ax.set_xlabel("difference (later − earlier), 95% paired-bootstrap CI")
        ax.set_title(name.replace("_vs_", " vs "), fontsize=10)
    if not names:
        axes.flat[0].axis("off")
    fig.tight_layout()
    return fig
