"""Per-task reward recipes from params: named rewards with weights, each logged by TRL under its own name.

`reward_recipes` is either a mapping {task or "default": {reward: weight}} or the name of a published
recipe reproduced exactly (NAMED_RECIPES: `medr1`, `medr1_nothink`, `flare_task5`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medlib.data.records import TASKS
from medlib.training.rewards.columns import RewardFunction
from medlib.training.rewards.registry import REWARD_FUNCTIONS, build_reward_functions

DEFAULT_SCOPE = "default"  # the recipe for every task the recipes do not name

# Starting points per task type, in the designs of the seed projects (reports: FLARE Task 5).
STANDARD_RECIPES: dict[str, dict[str, float]] = {
    "report_generation": {"clinical_f1": 0.7, "report_format": 0.2, "rouge_l": 0.1},
    "classification": {"format": 0.2, "choice": 0.8},
    "vqa_closed": {"format": 0.2, "accuracy": 0.8},
    "vqa_open": {"format": 0.2, "exact": 0.4, "rouge_l": 0.4},
    "counting": {"format": 0.2, "count": 0.8},
    "regression": {"format": 0.2, "numeric": 0.8},
    "multi_label": {"format": 0.2, "multilabel_f1": 0.8},
    "detection": {"format": 0.2, "detection_f1": 0.8},
    "instance_detection": {"format": 0.2, "detection_f1": 0.8},
}
# Published reward recipes, reproduced exactly for every task (see each reward's module).
NAMED_RECIPES: dict[str, dict[str, dict[str, float]]] = {
    # Med-R1 (grpo_vqa.py): think format + accuracy, TRL's default unit weights.
    "medr1": {DEFAULT_SCOPE: {"medr1_format": 1.0, "medr1_accuracy": 1.0}},
    # Med-R1 without thinking (grpo_vqa_nothink.py).
    "medr1_nothink": {DEFAULT_SCOPE: {"medr1_format_nothink": 1.0, "medr1_accuracy": 1.0}},
    # FLARE Task 5's combined_reward: its branches and weights live inside the one function.
    "flare_task5": {DEFAULT_SCOPE: {"flare_task5": 1.0}},
}


@dataclass(frozen=True)
class ScopedReward:
    """A registry reward applied to rows of some tasks only (None elsewhere, which TRL skips); picklable."""

    reward: str
    tasks: frozenset[str]
    name: str

    @property
    def __name__(self) -> str:  # TRL logs each reward function under its __name__
        return self.name

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float | None]:
        """Scores of the in-scope rows, None for the others."""
        function = REWARD_FUNCTIONS[self.reward]
        n_rows = len(completions)
        if self.tasks >= set(TASKS):
            return function(prompts, completions, **kwargs)
        if kwargs.get("task") is None:
            raise ValueError(f"reward {self.name!r} is scoped to tasks {sorted(self.tasks)}: it needs the 'task' column")
        rows = [i for i, task in enumerate(kwargs["task"]) if task in self.tasks]
        scores: list[float | None] = [None] * n_rows
        if not rows:
            return scores
        subset = {key: _rows(value, rows, n_rows) for key, value in kwargs.items()}
        for index, score in zip(rows, function(_rows(prompts, rows, n_rows), [completions[i] for i in rows],
                                               **subset), strict=True):
            scores[index] = score
        return scores


def _rows(value: object, rows: list[int], n_rows: int) -> object:
    """The selected rows of a per-row column; anything else (trainer state, callbacks) unchanged."""
    if isinstance(value, (list, tuple)) and len(value) == n_rows:
        return [value[i] for i in rows]
    return value


def recipe_from_params(reward_functions: Sequence[str] = (), reward_weights: Sequence[float] | None = None,
                       reward_recipes: Mapping[str, Mapping[str, float]] | str | None = None
                       ) -> dict[str, dict[str, float]]:
    """Merge the params into {scope: {reward: weight}}: the names/weights form the default recipe, per-task recipes
    add to it; a recipe name (NAMED_RECIPES) replaces everything with that published recipe."""
    if isinstance(reward_recipes, str):
        if reward_recipes not in NAMED_RECIPES:
            raise ValueError(f"reward_recipes: unknown recipe {reward_recipes!r}; named recipes: "
                             f"{', '.join(NAMED_RECIPES)} (or a mapping task → {{reward: weight}})")
        recipe = {scope: dict(components) for scope, components in NAMED_RECIPES[reward_recipes].items()}
        _check_recipe(recipe)
        return recipe
    names = list(reward_functions)
    unknown = [name for name in names if name not in REWARD_FUNCTIONS]
    if unknown:
        raise ValueError(f"reward_functions: unknown reward {unknown[0]!r}; known rewards: "
                         f"{', '.join(sorted(REWARD_FUNCTIONS))}")
    weights = [1.0] * len(names) if not reward_weights else list(reward_weights)
    if len(weights) != len(names):
        raise ValueError(f"reward_weights has {len(weights)} values for {len(names)} reward_functions {names}")
    recipe: dict[str, dict[str, float]] = {DEFAULT_SCOPE: dict(zip(names, weights))} if names else {}
    if reward_recipes is not None and not isinstance(reward_recipes, Mapping):
        raise ValueError(f"reward_recipes: expected a recipe name or a mapping task → {{reward: weight}}, "
                         f"got {reward_recipes!r}")
    for scope, components in (reward_recipes or {}).items():
        if not isinstance(components, Mapping):
            raise ValueError(f"reward_recipes.{scope}: expected a mapping reward name → weight, got {components!r}")
        recipe[str(scope)] = dict(components)
    _check_recipe(recipe)
    return recipe


def _check_recipe(recipe: Mapping[str, Mapping[str, float]]) -> None:
    """ValueError naming the first unknown scope, unknown reward or non-numeric weight."""
    if not recipe:
        raise ValueError("reward_functions: no rewards (empty, and no reward_recipes): set reward_functions "
                         "(with reward_weights) or reward_recipes")
    for scope, components in recipe.items():
        if scope != DEFAULT_SCOPE and scope not in TASKS:
            raise ValueError(f"reward_recipes.{scope}: unknown task; use {DEFAULT_SCOPE!r} or one of "
                             f"{', '.join(TASKS)}")
        for name, weight in components.items():
            if name not in REWARD_FUNCTIONS:
                raise ValueError(f"reward_recipes.{scope}.{name}: unknown reward; known rewards: "
                                 f"{', '.join(sorted(REWARD_FUNCTIONS))}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"reward_recipes.{scope}.{name}: weight must be a finite number, got {weight!r}")


def _scope_tasks(recipe: Mapping[str, Mapping[str, float]]) -> dict[str, frozenset[str]]:
    """Tasks each scope covers: the default scope takes every task without its own recipe."""
    named = {scope for scope in recipe if scope != DEFAULT_SCOPE}
    return {scope: frozenset(set(TASKS) - named) if scope == DEFAULT_SCOPE else frozenset({scope})
            for scope in recipe}


def _announce(names: Sequence[str]) -> None:
    """Log once which scorer the exact published rewards use here when an optional package is missing."""
    from medlib.training.rewards.flare_task5 import clinical_scorer_name
    from medlib.training.rewards.medr1 import accuracy_checker_name

    if "flare_task5" in names:
        clinical_scorer_name()
    if "medr1_accuracy" in names:
        accuracy_checker_name()


def build_recipe(recipe: Mapping[str, Mapping[str, float]]) -> tuple[list[RewardFunction], list[float]]:
    """TRL reward functions and weights for a recipe: one per reward, split by scope only where weights differ."""
    _check_recipe(recipe)
    names = [name for components in recipe.values() for name in components]
    build_reward_functions(names)
    _announce(names)
    tasks = _scope_tasks(recipe)
    by_reward: dict[str, dict[float, set[str]]] = {}
    scopes_of: dict[tuple[str, float], list[str]] = {}
    for scope, components in recipe.items():
        for name, weight in components.items():
            by_reward.setdefault(name, {}).setdefault(float(weight), set()).update(tasks[scope])
            scopes_of.setdefault((name, float(weight)), []).append(scope)
    functions: list[RewardFunction] = []
    weights: list[float] = []
    for name, groups in by_reward.items():
        for weight, group_tasks in groups.items():
            label = name if len(groups) == 1 else f"{name}@{'+'.join(sorted(scopes_of[(name, weight)]))}"
            functions.append(ScopedReward(name, frozenset(group_tasks), label))
            weights.append(weight)
    return functions, weights


def total_rewards(weights: Sequence[float], scores: Sequence[Sequence[float | None]]) -> list[float]:
    """Weighted sum per row of the component scores (one list per reward), skipping None as TRL does."""
    totals = []
    for row in zip(*scores, strict=True):
        totals.append(sum(weight * score for weight, score in zip(weights, row, strict=True) if score is not None))
    return totals
