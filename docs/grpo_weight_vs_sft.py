"""How GRPO weighs one question against SFT when the reward is the SFT label (README, "Why, in one line of algebra").

One decision among K answers, the right one drawn with probability p; G completions per group; reward 1 for the
right answer, 0 otherwise; advantage (r - mean) / (std + 1e-4) with the unbiased group std, as TRL's
`scale_rewards="group"`. Enumerates every group, takes the expected policy gradient on the logits, and prints its
component on the right answer's logit divided by SFT's (the gradient of log p). Run: .venv/bin/python docs/grpo_weight_vs_sft.py
"""
from __future__ import annotations

import itertools
import math

import numpy as np


def grpo_over_sft(p: float, generations: int = 4, answers: int = 4) -> float:
    """Expected GRPO gradient on the right answer's logit over SFT's, for one question."""
    probs = np.array([p] + [(1 - p) / (answers - 1)] * (answers - 1))
    gradient = np.zeros(answers)
    for group in itertools.product(range(answers), repeat=generations):
        weight = float(np.prod(probs[list(group)]))
        rewards = np.array([1.0 if a == 0 else 0.0 for a in group])
        advantages = (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-4)
        for answer, advantage in zip(group, advantages):
            log_softmax_gradient = -probs.copy()
            log_softmax_gradient[answer] += 1
            gradient += weight * advantage * log_softmax_gradient / generations
    return float(gradient[0] / (1 - probs[0]))  # SFT: d log p / d logit_right = 1 - p


if __name__ == "__main__":
    ps = (0.1, 0.25, 0.5, 0.75, 0.9)
    for g in (4, 8):
        print(f"G={g}: " + "  ".join(f"p={p}: {grpo_over_sft(p, g):.2f}" for p in ps))
    print("large G, sqrt(p/(1-p)): " + "  ".join(f"p={p}: {math.sqrt(p / (1 - p)):.2f}" for p in ps))
