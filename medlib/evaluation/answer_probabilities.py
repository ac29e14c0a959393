"""How the model's probabilities over a question's options depend on the right answer (a soft confusion matrix).

From the option-scoring items (`medlib.evaluation.option_scoring`): per question type whose questions share one
option set, the mean probability of each option over the questions whose reference is each option. A row that
puts its mass on its own option is an answer the model tells apart; rows that are alike are answers it does not
(equal rows: the answer ignores the image). Greedy accuracy hides the difference between a checkpoint that is
nearly right and one that guesses; this shows it, and it shows what a reward on sampled answers can work with:
GRPO re-weights answers the model already gives some probability, it cannot separate rows that are equal.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def reference_option(item: dict[str, Any]) -> int | None:
    """The index of the item's reference among its options (compared as written, then as whole numbers)."""
    answer = str(item["answer"]).strip()
    options = [str(o).strip() for o in item["options"]]
    if answer in options:
        return options.index(answer)
    if answer.isdigit():
        numbers = [int(o) if o.isdigit() else None for o in options]
        if int(answer) in numbers:
            return numbers.index(int(answer))
    return None


def probability_table(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean option probabilities per reference for items sharing one option set.

    >>> items = [{"options": ["0", "1"], "probabilities": [0.9, 0.1], "answer": "0"},
    ...          {"options": ["0", "1"], "probabilities": [0.3, 0.7], "answer": "1"},
    ...          {"options": ["0", "1"], "probabilities": [0.5, 0.5], "answer": "1"}]
    >>> table = probability_table(items)
    >>> table["matrix"], table["n"], round(table["right_answer_probability"], 4)
    ([[0.9, 0.1], [0.4, 0.6]], [1, 2], 0.7)
    """
    options = [str(o) for o in items[0]["options"]]
    size = len(options)
    sums, counts = np.zeros((size, size)), np.zeros(size, dtype=int)
    right = []
    for item in items:
        if [str(o) for o in item["options"]] != options:
            raise ValueError(f"{item.get('id')}: options {item['options']} differ from {options}; "
                             "a table needs one option set")
        row = reference_option(item)
        if row is None:
            raise ValueError(f"{item.get('id')}: reference {item['answer']!r} is not among its options {options}")
        sums[row] += item["probabilities"]
        counts[row] += 1
        right.append(item["probabilities"][row])
    matrix = [[round(float(v), 6) for v in (sums[r] / counts[r] if counts[r] else np.full(size, np.nan))]
              for r in range(size)]
    return {"options": options, "matrix": matrix, "n": counts.tolist(),
            "right_answer_probability": float(np.mean(right)), "chance": 1.0 / size}


def _option_set(item: dict[str, Any]) -> tuple[str, ...]:
    """An item's options as a hashable key."""
    return tuple(str(o) for o in item["options"])


def probability_tables(items: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """probability_table per question type (per `type · data set` where the data sets' options differ), and why
    each other group has none."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(item.get("question_type") or item["task"], []).append(item)
    tables, skipped = {}, {}
    for question_type, group in groups.items():
        if len({_option_set(item) for item in group}) > 1:
            # Several data sets with their own labels (FLARE's classification sets): one table per data set.
            by_dataset: dict[str, list[dict[str, Any]]] = {}
            for item in group:
                by_dataset.setdefault(str(item.get("dataset")), []).append(item)
            parts = {f"{question_type} · {dataset}": members for dataset, members in by_dataset.items()}
        else:
            parts = {question_type: group}
        for name, members in parts.items():
            option_sets = {_option_set(item) for item in members}
            if len(option_sets) > 1:
                # Multiple choice with per-question choice texts: a column would mean a different answer per question.
                skipped[name] = f"{len(option_sets)} different option sets"
            elif any(reference_option(item) is None for item in members):
                skipped[name] = "a reference outside its options"
            else:
                tables[name] = probability_table(members)
    return tables, skipped
