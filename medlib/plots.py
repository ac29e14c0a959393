"""Figures the notebooks show and save: samples, loss and reward curves, checkpoint comparisons."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import seaborn as sns

from medlib.data import load_record_images


def set_style() -> None:
    """Apply the project's figure style."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")


def count_bars(counts: dict[str, dict[str, int]], title: str) -> plt.Figure:
    """Bar chart of answer counts per group (e.g. per question type); a note when there is nothing to count."""
    groups = list(counts)
    if not groups:  # e.g. report generation only: free text has no answer balance
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no closed-form answers or labels to count", ha="center", va="center")
        fig.suptitle(title)
        return fig
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.2), squeeze=False)
    for ax, group in zip(axes.flat, groups):
        labels = sorted(counts[group], key=str)
        ax.bar(labels, [counts[group][label] for label in labels], color=sns.color_palette()[0])
        ax.set_title(group)
        ax.set_ylabel("questions")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def panel_grid(n: int, width: float = 4.2, height: float = 3.6) -> tuple[plt.Figure, list]:
    """A figure with n panels (width × height inches each), at most 3 per row; the unused cells are hidden."""
    columns = min(3, max(1, n))
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def training_curves(series: dict[str, tuple[list[int], list[float]]], title: str) -> plt.Figure:
    """One panel per logged quantity over optimizer steps."""
    names = list(series)
    fig, axes = panel_grid(len(names), 4.5, 3.2)
    for ax, name in zip(axes, names):
        steps, values = series[name]
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def comparison_bars(table: dict[str, dict[str, float]], metric: str,
                    chance: dict[str, float] | None = None) -> plt.Figure:
    """Grouped bars: one group per question type, one bar per checkpoint; dashed chance levels."""
    checkpoints = list(table)
    groups = sorted({g for scores in table.values() for g in scores})
    width = 0.8 / max(1, len(checkpoints))
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(groups) + 2), 3.6))
    for i, checkpoint in enumerate(checkpoints):
        xs = [g + (i - (len(checkpoints) - 1) / 2) * width for g in range(len(groups))]
        values = [table[checkpoint].get(group, float("nan")) for group in groups]
        bars = ax.bar(xs, values, width, label=checkpoint)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    for g, group in enumerate(groups):
        if chance and group in chance:
            ax.hlines(chance[group], g - 0.45, g + 0.45, colors="grey", linestyles="dashed")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.1)
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_title(f"{metric} by question type (dashed: chance)")
    fig.tight_layout()
    return fig


def metric_heatmap(table, title: str) -> plt.Figure:
    """Heatmap of a (data set · task) × checkpoint table of headline metric values."""
    fig, ax = plt.subplots(figsize=(1.6 * max(2, table.shape[1]) + 3, 0.45 * max(2, table.shape[0]) + 1.5))
    sns.heatmap(table.astype(float), annot=True, fmt=".2f", cmap="viridis", cbar=True, ax=ax)
    ax.grid(False)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def confusion_figures(confusions: dict[str, dict]) -> plt.Figure:
    """One annotated confusion matrix (rows: reference, columns: prediction) per checkpoint/question type."""
    names = list(confusions)
    fig, axes = panel_grid(len(names), 3.8, 3.4)
    for ax, name in zip(axes, names):
        labels, matrix = confusions[name]["labels"], confusions[name]["matrix"]
        sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, xticklabels=labels, yticklabels=labels,
                    ax=ax)
        ax.grid(False)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
    fig.tight_layout()
    return fig


def _draw_boxes(ax, boxes: object, color: str) -> None:
    """Draw [x1, y1, x2, y2] boxes (a list, or a dict of instance → list) on an image axis."""
    from matplotlib.patches import Rectangle

    groups = boxes.values() if isinstance(boxes, dict) else [boxes]
    for group in groups:
        for box in group if isinstance(group, list) else []:
            if isinstance(box, (list, tuple)) and len(box) == 4:
                x1, y1, x2, y2 = (float(v) for v in box)
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.5))


def error_gallery(predictions: list[dict[str, Any]], data_root: str | Path, *, columns: int = 4,
                  image_size: int | None = None) -> plt.Figure:
    """Images of wrong answers titled with reference and prediction; detection boxes drawn (green: reference,
    red: predicted)."""
    from medlib.evaluation.parsing import parse_answer

    rows = max(1, math.ceil(len(predictions) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, prediction in zip(axes.flat, predictions):
        if prediction.get("images"):
            ax.imshow(load_record_images(prediction, data_root, image_size)[0], cmap="gray")
        if prediction["task"] in ("detection", "instance_detection"):
            _draw_boxes(ax, parse_answer(prediction["task"], prediction["answer"])[0], "lime")
            _draw_boxes(ax, prediction.get("parsed"), "red")
        predicted = prediction.get("parsed")
        shown = "unparsed" if predicted is None else str(predicted)
        ax.set_title(f"{prediction['checkpoint']} · {prediction['id']}\nref {str(prediction['answer'])[:28]} · "
                     f"pred {shown[:28]}", fontsize=8)
    fig.tight_layout()
    return fig
