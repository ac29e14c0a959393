"""Format rewards: the think/answer layout, the answer tags alone, and a report's Findings/Impression structure."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from medlib.evaluation.parsing import completion_text, extract_answer, has_valid_format, normalize_text
from medlib.training.rewards.columns import judged_answers
from medlib.training.rewards.parsing import report_sections

# Report structure: words of the whole report allowed, and the similarity that counts as a copy.
REPORT_WORDS = (10, 300)
COPY_SIMILARITY = 0.8


def _tag_format(completions: Sequence, require_think: bool) -> list[float]:
    """1.0 for the exact layout, 0.5 for a closed answer tag amid other text, else 0.0."""
    rewards = []
    for completion in completions:
        text = completion_text(completion)
        if has_valid_format(text, require_think):
            rewards.append(1.0)
        else:
            rewards.append(0.5 if extract_answer(text) is not None else 0.0)
    return rewards


def format_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """1.0 for `<think>…</think><answer>…</answer>`, 0.5 if only a closed answer tag is present, else 0.0.

    >>> format_reward(None, ["<think>a</think><answer>C</answer>", "<answer>C</answer>", "C"])
    [1.0, 0.5, 0.0]
    """
    return _tag_format(completions, require_think=True)


def answer_format_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """1.0 for `<answer>…</answer>` with or without a leading think block, 0.5 for a closed answer amid text, else 0.0.

    >>> answer_format_reward(None, ["<answer>C</answer>", "so <answer>C</answer>", "C"])
    [1.0, 0.5, 0.0]
    """
    return _tag_format(completions, require_think=False)


def _is_copy(findings: str, impression: str) -> bool:
    """True when one section repeats the other (containment or word-sequence similarity)."""
    first, second = normalize_text(findings), normalize_text(impression)
    if first in second or second in first:
        return True
    matcher = difflib.SequenceMatcher(None, first.split(), second.split(), autojunk=False)
    return matcher.ratio() >= COPY_SIMILARITY


def _report_structure(text: str) -> float:
    """Quarter points: Findings, Impression, length window, sections not copied from each other."""
    sections = report_sections(text)
    findings, impression = sections.get("findings", ""), sections.get("impression", "")
    words = len(findings.split()) + len(impression.split())
    score = 0.25 * bool(findings) + 0.25 * bool(impression)
    score += 0.25 * (REPORT_WORDS[0] <= words <= REPORT_WORDS[1])
    if findings and impression and not _is_copy(findings, impression):
        score += 0.25
    return score


def report_format_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In [0, 1]: 0.25 each for a non-empty `Findings:` and `Impression:`, words in REPORT_WORDS, no copy-paste.

    >>> report = "Findings: The lungs are clear. No effusion or pneumothorax. Impression: Normal chest."
    >>> report_format_reward(None, [report, "Findings: clear. Impression: clear.", "Normal."])
    [1.0, 0.5, 0.0]
    """
    return [_report_structure(answer or "") for answer in judged_answers(completions)]
