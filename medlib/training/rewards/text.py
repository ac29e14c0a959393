"""Report-text rewards: ROUGE-L, the offline clinical finding F1, and RadGraph F1 where it is installed."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from medlib.training.rewards.clinical import clinical_f1
from medlib.training.rewards.columns import column, judged_answers, text_of


@lru_cache(maxsize=2)
def rouge_scorer(use_stemmer: bool = False) -> Any:
    """rouge-score's ROUGE-L scorer, built once per stemming choice."""
    from rouge_score import rouge_scorer as scorers

    return scorers.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


def _rouge_l(answer: str | None, reference: object) -> float:
    """ROUGE-L F-measure (rouge-score); 0.0 for a missing answer."""
    if not answer:
        return 0.0
    return float(rouge_scorer().score(text_of(reference), answer)["rougeL"].fmeasure)


def rouge_l_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: ROUGE-L F-measure of the answer against the reference (rouge-score, no stemming).

    >>> rouge_l_reward(None, ["Small effusion.", "Small effusions.", ""], answer=["Small effusion."] * 3)
    [1.0, 0.5, 0.0]
    """
    answers = column(kwargs, "answer", len(completions))
    return [_rouge_l(given, reference) for given, reference in zip(judged_answers(completions), answers, strict=True)]


def clinical_f1_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: F1 of (finding, present/absent/uncertain) pairs of answer and reference (offline lexicon).

    >>> clinical_f1_reward(None, ["Small right effusion.", "No effusion."], answer=["Right pleural effusion."] * 2)
    [1.0, 0.0]
    """
    answers = column(kwargs, "answer", len(completions))
    return [
        clinical_f1(text_of(reference), given) if given is not None else 0.0
        for given, reference in zip(judged_answers(completions), answers, strict=True)
    ]


def radgraph_available() -> bool:
    """Whether the optional radgraph package is installed (its model weights come from the hub)."""
    return importlib.util.find_spec("radgraph") is not None


@lru_cache(maxsize=4)
def radgraph_scorer(reward_level: str = "partial", model_type: str | None = None) -> Any:
    """radgraph's F1RadGraph scorer for a reward level (and model, when named), loaded once."""
    from radgraph import F1RadGraph

    return F1RadGraph(reward_level=reward_level, **({"model_type": model_type} if model_type else {}))


def radgraph_f1_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: RadGraph partial F1 (entities and relations) of answer vs reference; needs `pip install radgraph`."""
    if not radgraph_available():
        raise ImportError("radgraph_f1 needs the optional radgraph package: pip install radgraph")
    references = [text_of(r) for r in column(kwargs, "answer", len(completions))]
    answers = judged_answers(completions)
    scored = [i for i, (given, ref) in enumerate(zip(answers, references, strict=True)) if given and ref.strip()]
    rewards = [0.0] * len(completions)
    if scored:
        _, per_pair, _, _ = radgraph_scorer()(hyps=[answers[i] for i in scored], refs=[references[i] for i in scored])
        for index, value in zip(scored, per_pair, strict=True):
            rewards[index] = float(value) if math.isfinite(float(value)) else 0.0
    return rewards
