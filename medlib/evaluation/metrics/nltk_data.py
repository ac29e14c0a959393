"""Where nltk finds its offline data (WordNet for METEOR): $NLTK_DATA, else the virtualenv's nltk_data/."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path


def nltk_data_dir() -> Path:
    """The folder scripts/install_wordnet.sh fills: $NLTK_DATA, else <sys.prefix>/nltk_data (.venv/nltk_data)."""
    return Path(os.environ.get("NLTK_DATA") or Path(sys.prefix) / "nltk_data")


def ensure_nltk_path() -> None:
    """Put nltk_data_dir() first on nltk.data.path (once)."""
    import nltk

    folder = str(nltk_data_dir())
    if folder not in nltk.data.path:
        nltk.data.path.insert(0, folder)


@lru_cache(maxsize=1)
def wordnet_available() -> bool:
    """True when nltk can load the WordNet corpus offline."""
    ensure_nltk_path()
    from nltk.corpus import wordnet

    try:
        wordnet.ensure_loaded()
    except LookupError:
        return False
    return True
