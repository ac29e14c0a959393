"""What `medlib score` checks before scoring: an empty file, repeated ids, how many ids --against pairs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from medlib.pipeline.config import ConfigError

SHOWN = 3


def check_predictions(predictions: list[dict[str, Any]], path: str | Path) -> None:
    """ConfigError for a file with no predictions or with an id more than once (it would count twice)."""
    if not predictions:
        raise ConfigError(f"{path}: no predictions in the file")
    repeated = [key for key, count in Counter(str(p["id"]) for p in predictions).items() if count > 1]
    if repeated:
        shown = ", ".join(repr(key) for key in repeated[:SHOWN])
        raise ConfigError(f"{path}: field 'id': {len(repeated)} ids appear more than once ({shown}"
                          f"{' ...' if len(repeated) > SHOWN else ''}); each question must be scored once")


def check_pairing(predictions: list[dict[str, Any]], baseline: list[dict[str, Any]],
                  path: str | Path, against: str | Path) -> str | None:
    """ConfigError when no id pairs; a warning line (None when every id pairs) saying how many do."""
    ours, theirs = {str(p["id"]) for p in predictions}, {str(p["id"]) for p in baseline}
    paired = ours & theirs
    if not paired:
        raise ConfigError(f"--against {against}: no id in common with {path} ({len(ours)} and {len(theirs)} ids); "
                          "a paired comparison needs predictions for the same questions")
    if paired == ours == theirs:
        return None
    return (f"warning: the comparison covers {len(paired)} ids that both files have: {len(ours - theirs)} of "
            f"{len(ours)} in {path} and {len(theirs - ours)} of {len(theirs)} in {against} are unpaired")
