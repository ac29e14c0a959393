"""What every reward reads: TRL's dataset columns (with clear errors) and the judged answer of each completion."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from medlib.evaluation.parsing import completion_text
from medlib.training.rewards.parsing import answer_content

# TRL's reward signature: f(prompts, completions, **columns) -> one float (or None to skip) per completion.
RewardFunction = Callable[..., list]


def column(kwargs: dict, name: str, n_rows: int) -> list:
    """A dataset column TRL passed as a keyword argument; ValueError naming it when it is missing."""
    if name not in kwargs:
        raise ValueError(f"reward needs the dataset column {name!r}; got columns {sorted(kwargs)}")
    values = list(kwargs[name])
    if len(values) != n_rows:
        raise ValueError(f"column {name!r} has {len(values)} rows for {n_rows} completions")
    return values


def optional_column(kwargs: dict, name: str, n_rows: int) -> list:
    """A dataset column, or None for every row when the data set has no such column."""
    return column(kwargs, name, n_rows) if kwargs.get(name) is not None else [None] * n_rows


def choices_of(value: object) -> list[str] | None:
    """A row's choices as a list of strings, or None."""
    return [str(choice) for choice in value] if isinstance(value, (list, tuple)) and value else None


def text_of(value: object) -> str:
    """A reference cell as text ('' for None)."""
    return "" if value is None else str(value)


def judged_answers(completions: Sequence) -> list[str | None]:
    """The judged answer of each completion: the last `<answer>` content, the whole text when untagged, else None."""
    return [answer_content(completion_text(completion)) for completion in completions]
