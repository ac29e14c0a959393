"""Figures of the analyses beyond the anchors: image ablation, reliability, accuracy–coverage, answer
probabilities, robustness."""
from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import seaborn as sns

from medlib.plots import panel_grid


def ablation_bars(rows: list[dict[str, Any]], chance: dict[str, float] | None = None) -> plt.Figure:
    """Accuracy with the image, blank and wrong image per question type; one panel per checkpoint, 95% CI whiskers."""
    checkpoints = list(dict.fromkeys(row["checkpoint"] for row in rows))
    fig, axes = panel_grid(len(checkpoints))
    palette = sns.color_palette()
    for ax, checkpoint in zip(axes, checkpoints):
        mine = [r for r in rows if r["checkpoint"] == checkpoint and r["question_type"] != "all"]
        types = list(dict.fromkeys(r["question_type"] for r in mine))
        variants = list(dict.fromkeys(r["variant"] for r in mine))
        width = 0.8 / (len(variants) + 1)
        for t, question_type in enumerate(types):
            group = [r for r in mine if r["question_type"] == question_type]
            ax.bar(t, group[0]["with_image"], width, color=palette[0], label="with image" if t == 0 else None)
            for v, variant in enumerate(variants):
                row = next((r for r in group if r["variant"] == variant), None)
                if row is None:
                    continue
                # The whisker is the paired CI of the drop, drawn around the ablated accuracy.
                low, high = row["with_image"] + row["low"], row["with_image"] + row["high"]
                error = [[max(0.0, row["ablated"] - low)], [max(0.0, high - row["ablated"])]]
                ax.bar(t + (v + 1) * width, row["ablated"], width, color=palette[v + 1],
                       yerr=error if math.isfinite(low) else None, capsize=3, label=variant if t == 0 else None)
            if chance and question_type in chance:
                ax.hlines(chance[question_type], t - width / 2, t + (len(variants) + 0.5) * width, colors="black",
                          linestyles="dashed", label="chance" if t == 0 else None)
        ax.set_xticks([t + width * len(variants) / 2 for t in range(len(types))], types)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy")
        ax.set_title(checkpoint)
        ax.legend(fontsize=8)
    fig.suptitle("Does the answer need the image? (same questions, image replaced)")
    fig.tight_layout()
    return fig


def reliability_diagrams(summaries: dict[str, dict[str, Any]]) -> plt.Figure:
    """Accuracy per confidence bin against the diagonal, one panel per checkpoint, with ECE and counts."""
    fig, axes = panel_grid(len(summaries))
    for ax, (checkpoint, summary) in zip(axes, summaries.items()):
        bins = summary["reliability"]
        filled = [b for b in bins if b["count"]]
        width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
        ax.bar([b["low"] for b in filled], [b["accuracy"] for b in filled], width=width, align="edge",
               edgecolor="black", alpha=0.8, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        for b in filled:
            ax.text(b["low"] + width / 2, 0.02, str(b["count"]), ha="center", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{checkpoint}: ECE {summary['ece']:.3f} (n {summary['n']})")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Reliability of the option confidences (closed-form questions)")
    fig.tight_layout()
    return fig


def coverage_curves(summaries: dict[str, dict[str, Any]]) -> plt.Figure:
    """Selective accuracy against coverage for each checkpoint, AURC in the legend."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for checkpoint, summary in summaries.items():
        curve = summary["curve"]
        ax.plot(curve["coverage"], curve["accuracy"],
                label=f"{checkpoint} (AURC {summary['aurc']:.3f}, optimal {summary['aurc_optimal']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("coverage (share of questions answered, most confident first)")
    ax.set_ylabel("accuracy of the answered")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def answer_probability_maps(tables: dict[str, dict[str, dict[str, Any]]]) -> plt.Figure:
    """Heat maps of the mean option probability per right answer: a row per checkpoint, a column per question type."""
    question_types = list(dict.fromkeys(q for by_type in tables.values() for q in by_type))
    fig, axes = plt.subplots(len(tables), len(question_types), squeeze=False,
                             figsize=(3.8 * len(question_types), 3.2 * len(tables)))
    for row, (checkpoint, by_type) in enumerate(tables.items()):
        for column, question_type in enumerate(question_types):
            ax, table = axes[row][column], by_type.get(question_type)
            if table is None:
                ax.axis("off")
                continue
            labels = [f"{option} (n {n})" for option, n in zip(table["options"], table["n"], strict=True)]
            sns.heatmap(table["matrix"], ax=ax, vmin=0, vmax=1, cmap="viridis", annot=len(table["options"]) <= 6,
                        fmt=".2f", cbar=False, xticklabels=table["options"], yticklabels=labels)
            ax.tick_params(axis="y", rotation=0)
            ax.set_xlabel("option")
            ax.set_ylabel("right answer")
            ax.set_title(f"{checkpoint} · {question_type}: right {table['right_answer_probability']:.2f}", fontsize=9)
    fig.suptitle("Mean probability of each option, by right answer (a diagonal: answers told apart)")
    fig.tight_layout()
    return fig


def robustness_curves(rows: list[dict[str, Any]], question_type: str = "all") -> plt.Figure:
    """Accuracy against severity (0: clean), one panel per perturbation, one line per checkpoint."""
    chosen = [r for r in rows if r["question_type"] == question_type]
    perturbations = list(dict.fromkeys(r["perturbation"] for r in chosen))
    fig, axes = panel_grid(len(perturbations), 3.8, 3.2)
    for ax, name in zip(axes, perturbations):
        mine = [r for r in chosen if r["perturbation"] == name]
        for checkpoint in dict.fromkeys(r["checkpoint"] for r in mine):
            points = sorted((r["severity"], r["accuracy"]) for r in mine if r["checkpoint"] == checkpoint)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=checkpoint)
        ax.set_title(name)
        ax.set_xlabel("severity (0: clean)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
    fig.suptitle(f"Robustness: accuracy under image perturbations ({question_type})")
    fig.tight_layout()
    return fig
