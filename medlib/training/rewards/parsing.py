"""Parsing helpers the rewards need beyond medlib.evaluation.parsing: the judged answer and report sections."""

from __future__ import annotations

import re

from medlib.evaluation.parsing import extract_answer

# Longest text a reward looks at: keeps quadratic steps (LCS, sequence matching) bounded.
MAX_TEXT_CHARS = 8000

_SECTION_HEADER = re.compile(r"(?:^|(?<=\s))(findings|impression)\s*:", re.IGNORECASE)


def answer_content(text: str) -> str | None:
    """Content of the last `<answer>` block; the whole text when it has no tags at all; else None.

    >>> answer_content("<think>x</think><answer> B </answer>"), answer_content(" B "), answer_content("<answer>B")
    ('B', 'B', None)
    """
    if not isinstance(text, str):
        return None
    text = text[:MAX_TEXT_CHARS]
    answer = extract_answer(text)
    if answer is not None:
        return answer
    if "<answer>" in text or "</answer>" in text or "<think>" in text or "</think>" in text:
        return None  # a tagged completion whose answer never closed has no answer
    return text.strip()


def report_sections(text: str) -> dict[str, str]:
    """Map `findings` / `impression` to the stripped text after their first header, up to the next header.

    >>> report_sections("Findings: clear lungs. Impression: normal.")
    {'findings': 'clear lungs.', 'impression': 'normal.'}
    """
    headers = list(_SECTION_HEADER.finditer(text))
    sections: dict[str, str] = {}
    for index, header in enumerate(headers):
        name = header.group(1).lower()
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        sections.setdefault(name, text[header.end() : end].strip())
    return sections
