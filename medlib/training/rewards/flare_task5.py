"""The FLARE Task 5 X-ray report repository's GRPO reward exactly as published (`combined_reward` of its
`rl_qwen3vl.py`, Qwen3-VL-4B + Unsloth), quirks included, for the `flare_task5` recipe.

The branch is chosen by the reference alone, on the whole completion text (no tag handling):
- one letter A–F (any case): 1.0 if the first standalone letter A–F of the upper-cased completion is it, else
  −0.2 (the article "a" reads as option A; "F" counts with no choices at all);
- a number (optionally with "%"): 0.7 × value + 0.3 × (format + length bonus), value stepped on the error of
  the completion's first `-?\\d+(\\.\\d+)?` (1 / 0.5 / 0 / −0.5 at 2 / 5 / 10 / beyond, −0.3 more outside
  [0, 100], −0.5 when none: ".5" reads as 5, "1e2" as 1), length bonus +0.2 from 15 words, −0.2 up to 3;
- anything else (a report): 0.7 × clinical + 0.2 × format + 0.1 × ROUGE-L (rouge-score with stemming);
then clipped to [−2, 2]. Clinical is RadGraph-XL's partial F1 (reward level "all") where `radgraph` is
installed, medlib's offline clinical F1 otherwise — said in the log on first use.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import lru_cache

from medlib.evaluation.parsing import completion_text
from medlib.training.rewards.clinical import clinical_f1
from medlib.training.rewards.columns import column, text_of
from medlib.training.rewards.text import radgraph_available, radgraph_scorer, rouge_scorer

LOGGER = logging.getLogger(__name__)
MC_LABELS = frozenset("ABCDEF")
CLIP = 2.0
_FINDINGS = re.compile(r"^\s*findings?\s*[:\-]", re.IGNORECASE | re.MULTILINE)
_IMPRESSION = re.compile(r"^\s*impressions?\s*[:\-]|^\s*impression\s*[:\-]", re.IGNORECASE | re.MULTILINE)
_SENTENCE_BREAK = re.compile(r"(?<=[\.!?])\s+")
_LETTER = re.compile(r"\b([A-F])\b")
_FIRST_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)")


def _clip(score: float) -> float:
    """The original's final clipping to [−2, 2]."""
    return max(min(score, CLIP), -CLIP)


def _section(text: str, start: re.Match | None, other: re.Match | None) -> str:
    """Text after a header up to the other header when that comes later, stripped."""
    if not start:
        return ""
    end = other.start() if other and other.start() > start.end() else len(text)
    return text[start.end() : end].strip()


def _sentences(text: str) -> set[str]:
    """Sentences split after . ! ? with whitespace collapsed."""
    text = re.sub(r"\s+", " ", text.strip())
    return {part.strip() for part in _SENTENCE_BREAK.split(text) if part.strip()} if text else set()


def format_score(text: str) -> float:
    """The original's report-format score in [−2, 2]: length, Findings/Impression headers, artefacts, copying.

    >>> format_score("Findings: The lungs are clear. Impression: Normal chest.")
    0.0
    """
    score = 0.0
    n_words = len(text.strip().split())
    if 20 <= n_words <= 400:
        score += 0.3
    elif n_words < 10:
        score -= 0.3
    findings_match, impression_match = _FINDINGS.search(text), _IMPRESSION.search(text)
    findings = _section(text, findings_match, impression_match)
    impression = _section(text, impression_match, findings_match)
    score += 0.7 if findings and impression else 0.3 if findings or impression else 0.0
    score -= 1.0 if "<REASONING>" in text else 0.0
    score -= 1.0 if "addCriterion" in text else 0.0
    if findings and impression:
        first, second = _sentences(findings.lower()), _sentences(impression.lower())
        if first and second:
            score += 0.6 * (1.0 - len(first & second) / max(1, len(first | second)))
    return _clip(score)


def _is_choice(reference: str) -> bool:
    """A single option letter A–F, any case."""
    return len(reference.upper()) == 1 and reference.upper() in MC_LABELS


def _number(reference: str) -> float | None:
    """The reference as Python's float() reads it after dropping one trailing "%", else None."""
    text = reference[:-1].strip() if reference.endswith("%") else reference
    try:
        return float(text)
    except ValueError:
        return None


def _choice_score(completion: str, reference: str) -> float:
    """1.0 when the first standalone A–F of the upper-cased completion is the reference letter, else −0.2."""
    found = _LETTER.search(completion.upper())
    return 1.0 if found and found.group(1) == reference.upper() else -0.2


def _numeric_score(completion: str, gold: float, format_term: float) -> float:
    """0.7 × the stepped value term + 0.3 × (format + length bonus)."""
    found = _FIRST_NUMBER.search(completion)
    predicted = float(found.group(1)) if found else None
    if predicted is None:
        value = -0.5
    else:
        error = abs(predicted - gold)
        value = 1.0 if error <= 2 else 0.5 if error <= 5 else 0.0 if error <= 10 else -0.5
        value -= 0.3 if predicted < 0 or predicted > 100 else 0.0
    n_words = len(completion.strip().split())
    bonus = 0.2 if n_words >= 15 else -0.2 if n_words <= 3 else 0.0
    return 0.7 * value + 0.3 * (format_term + bonus)


@lru_cache(maxsize=1)
def clinical_scorer_name() -> str:
    """Which clinical scorer the reward uses here, logged once: RadGraph-XL when installed, else the offline F1."""
    if radgraph_available():
        LOGGER.info("flare_task5 reward: clinical term is RadGraph-XL partial F1, as published")
        return "radgraph"
    LOGGER.warning("flare_task5 reward: radgraph is not installed, so the clinical term uses medlib's offline "
                   "clinical F1 instead of RadGraph-XL (the published runs used RadGraph): pip install radgraph")
    return "offline_clinical_f1"


def _clinical_scores(texts: list[str], references: list[str]) -> list[float]:
    """Clinical term of each report row: RadGraph partial F1 in one batch, or the offline clinical F1."""
    if not texts:
        return []
    if clinical_scorer_name() == "offline_clinical_f1":
        return [clinical_f1(reference, text) for text, reference in zip(texts, references)]
    try:
        _, per_pair, _, _ = radgraph_scorer("all", "radgraph-xl")(hyps=texts, refs=references)
        scores = [float(pair[1]) if isinstance(pair, (list, tuple)) else float(pair) for pair in per_pair]
    # The original scores every report 0.0 when RadGraph fails on the batch.
    except Exception:  # noqa: BLE001
        scores = [0.0] * len(texts)
    return (scores + [0.0] * len(texts))[: len(texts)]


def flare_task5_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [−2, 2]: the published FLARE Task 5 combined reward (module docstring), branch chosen by the reference.

    >>> flare_task5_reward(None, ["A mass is seen, answer C", "<answer>C</answer>", "F"], answer=["C", "C", "f"])
    [-0.2, 1.0, 1.0]
    >>> [round(r, 2) for r in flare_task5_reward(None, [".5", "1e2", "none"], answer=["5", "100%", "40%"])]
    [0.55, -0.5, -0.5]
    """
    # The branch is chosen on the stripped reference; ROUGE and RadGraph see it as it is.
    raw = [text_of(r) for r in column(kwargs, "answer", len(completions))]
    references = [r.strip() for r in raw]
    texts = [completion_text(c) for c in completions]
    formats = [format_score(text) for text in texts]
    reports = [i for i, ref in enumerate(references) if not _is_choice(ref) and _number(ref) is None]
    clinical = dict(zip(reports, _clinical_scores([texts[i] for i in reports], [raw[i] for i in reports])))
    rewards = []
    for index, (text, reference, format_term) in enumerate(zip(texts, references, formats)):
        if _is_choice(reference):
            score = _choice_score(text, reference)
        elif (gold := _number(reference)) is not None:
            score = _numeric_score(text, gold, format_term)
        else:
            try:
                rouge = float(rouge_scorer(True).score(raw[index], text)["rougeL"].fmeasure)
            except Exception:  # noqa: BLE001  # the original scores ROUGE 0.0 on any error
                rouge = 0.0
            score = 0.7 * clinical[index] + 0.2 * format_term + 0.1 * rouge
        rewards.append(float(_clip(score)))
    return rewards
