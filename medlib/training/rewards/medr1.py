"""Med-R1's GRPO rewards exactly as published (Yuxiang-Lai117/Med-R1, src/r1-v/src/open_r1/grpo_vqa.py and
grpo_vqa_nothink.py), for the `medr1` and `medr1_nothink` recipes; medlib's own `format`/`accuracy` differ.

- format (think): the whole completion must be `<think>…</think>`, optional whitespace, `<answer>…</answer>`
  (a full regex match, so trailing text fails and a second answer block after the first still passes);
- format (no think): optional leading whitespace, then `<answer>…</answer>` and nothing after it;
- accuracy: 1.0 when math-verify (if installed) finds the parsed completion equal to the parsed solution, else
  when the first `<answer>…</answer>` (one line, stripped) equals the solution's (or the stripped solution):
  no case or punctuation normalisation.
The two are summed unweighted in Med-R1 (TRL's default weights of 1).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import lru_cache

from medlib.evaluation.parsing import completion_text
from medlib.training.rewards.answers import math_verify_available, math_verify_timeout
from medlib.training.rewards.columns import column, text_of

LOGGER = logging.getLogger(__name__)
_THINK_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_NO_THINK_FORMAT = re.compile(r"\s*<answer>.*?</answer>", re.DOTALL)
# Med-R1 searches without DOTALL: an answer spanning lines is not found and the whole text is compared.
_FIRST_ANSWER = re.compile(r"<answer>(.*?)</answer>")


def medr1_format_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In {0, 1}: Med-R1's think format, a full match of `<think>.*?</think>\\s*<answer>.*?</answer>`.

    >>> medr1_format_reward(None, ["<think>a</think><answer>C</answer>", "<answer>C</answer>",
    ...                            "<think>a</think><answer>C</answer><answer>B</answer>", "<think>a</think><answer>C</answer>\\n"])
    [1.0, 0.0, 1.0, 0.0]
    """
    return [1.0 if _THINK_FORMAT.fullmatch(completion_text(c)) else 0.0 for c in completions]


def medr1_format_nothink_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In {0, 1}: Med-R1's no-think format, a full match of `\\s*<answer>.*?</answer>`.

    >>> medr1_format_nothink_reward(None, ["<answer>C</answer>", " <answer>C</answer>", "<answer>C</answer>\\n"])
    [1.0, 1.0, 0.0]
    """
    return [1.0 if _NO_THINK_FORMAT.fullmatch(completion_text(c)) else 0.0 for c in completions]


@lru_cache(maxsize=1)
def accuracy_checker_name() -> str:
    """How medr1_accuracy checks answers here, logged once: math-verify then strings, or strings only."""
    if math_verify_available():
        return "math_verify_then_string"
    LOGGER.warning("medr1_accuracy: math-verify is not installed, so only Med-R1's string comparison runs (Med-R1 "
                   "tries math-verify first; letters and yes/no agree, numbers may not): pip install math-verify")
    return "string"


def _math_verified(content: str, solution: str) -> bool:
    """Med-R1's first test: `verify(parse(content), parse(solution)) > 0`, any error counting as no."""
    from math_verify import parse, verify

    timeout = math_verify_timeout()
    try:
        return float(verify(parse(content, parsing_timeout=timeout), parse(solution, parsing_timeout=timeout),
                            timeout_seconds=timeout)) > 0
    # Med-R1 swallows every math-verify error and falls through to string matching.
    except Exception:  # noqa: BLE001
        return False


def _first_answer(text: str) -> str:
    """Stripped text of the first one-line `<answer>…</answer>`, else the stripped text."""
    found = _FIRST_ANSWER.search(text)
    return found.group(1).strip() if found else text.strip()


def medr1_accuracy_score(content: str, solution: str, use_math_verify: bool) -> float:
    """Med-R1's accuracy of one completion text against one solution."""
    if use_math_verify and _math_verified(content, solution):
        return 1.0
    return 1.0 if _first_answer(content) == _first_answer(solution) else 0.0


def medr1_accuracy_reward(prompts: Sequence, completions: Sequence, **kwargs: object) -> list[float]:
    """In {0, 1}: Med-R1's accuracy (math-verify when installed, then the first answer block compared as is).

    >>> medr1_accuracy_reward(None, ["<answer>C</answer><answer>B</answer>", "<answer>c</answer>", "<answer>C.</answer>",
    ...                              "<answer> C </answer>"], answer=["C"] * 4)
    [1.0, 0.0, 0.0, 1.0]
    """
    solutions = column(kwargs, "answer", len(completions))
    use_math_verify = math_verify_available()
    return [medr1_accuracy_score(completion_text(c), text_of(s), use_math_verify)
            for c, s in zip(completions, solutions, strict=True)]
