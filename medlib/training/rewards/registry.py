"""The reward registry: every reward by the name params use, its documented range, and optional dependencies."""

from __future__ import annotations

from medlib.training.rewards.answers import (
    CHOICE_RIGHT,
    CHOICE_WRONG,
    NUMERIC_INVALID,
    accuracy_reward,
    choice_reward,
    exact_reward,
    numeric_reward,
)
from medlib.training.rewards.columns import RewardFunction
from medlib.training.rewards.flare_task5 import CLIP, flare_task5_reward
from medlib.training.rewards.format import answer_format_reward, format_reward, report_format_reward
from medlib.training.rewards.medr1 import medr1_accuracy_reward, medr1_format_nothink_reward, medr1_format_reward
from medlib.training.rewards.structured import (
    count_reward,
    detection_f1_reward,
    detection_iou_reward,
    multilabel_f1_reward,
)
from medlib.training.rewards.text import clinical_f1_reward, radgraph_available, radgraph_f1_reward, rouge_l_reward

REWARD_FUNCTIONS: dict[str, RewardFunction] = {
    "format": format_reward,
    "answer_format": answer_format_reward,
    "report_format": report_format_reward,
    "accuracy": accuracy_reward,
    "choice": choice_reward,
    "numeric": numeric_reward,
    "exact": exact_reward,
    "multilabel_f1": multilabel_f1_reward,
    "detection_f1": detection_f1_reward,
    "detection_iou": detection_iou_reward,
    "count": count_reward,
    "rouge_l": rouge_l_reward,
    "clinical_f1": clinical_f1_reward,
    "radgraph_f1": radgraph_f1_reward,
    # Exact copies of published rewards (see the `medr1`, `medr1_nothink` and `flare_task5` recipes).
    "medr1_format": medr1_format_reward,
    "medr1_format_nothink": medr1_format_nothink_reward,
    "medr1_accuracy": medr1_accuracy_reward,
    "flare_task5": flare_task5_reward,
}
# Documented (low, high) of each reward: the property tests hold every function to it.
REWARD_BOUNDS: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in REWARD_FUNCTIONS},
    "choice": (CHOICE_WRONG, CHOICE_RIGHT),
    "numeric": (NUMERIC_INVALID, 1.0),
    "flare_task5": (-CLIP, CLIP),
}
OPTIONAL_REWARDS = {"radgraph_f1": radgraph_available}


def build_reward_functions(names: list[str]) -> list[RewardFunction]:
    """Reward functions for the given registry names, in order; ValueError naming an unknown one."""
    unknown = [name for name in names if name not in REWARD_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; known rewards: {', '.join(sorted(REWARD_FUNCTIONS))}")
    missing = [name for name in names if name in OPTIONAL_REWARDS and not OPTIONAL_REWARDS[name]()]
    if missing:
        raise ValueError(f"reward(s) {missing} need optional packages that are not installed (pip install radgraph)")
    return [REWARD_FUNCTIONS[name] for name in names]
