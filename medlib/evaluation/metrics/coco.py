"""The `coco` convention for report metrics: the pycocoevalcap package as COCO caption evaluation runs it.

Both sides are tokenised by its Stanford PTBTokenizer (lower-cased, punctuation tokens dropped; Java), then
BLEU-1…4 (its own BleuScorer: corpus BLEU, closest reference length), ROUGE-L (LCS F with β = 1.2, mean
over reports), CIDEr-D (σ = 6, document frequencies from the scored references; not bounded by 1) and, on
request, METEOR 1.5 (Java; loading its paraphrase tables takes about a minute). This is the convention of
the report-generation tables on IU-Xray and MIMIC-CXR that use pycocoevalcap.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

BLEU_ORDERS = (1, 2, 3, 4)
NEEDS_JAVA = "needs Java for pycocoevalcap's PTBTokenizer and METEOR (Debian: apt-get install default-jre-headless)"


def java_available() -> bool:
    """Whether a `java` executable is on PATH."""
    return shutil.which("java") is not None


def unavailable_reason() -> str | None:
    """Why the coco convention cannot run here (no pycocoevalcap, no Java), or None when it can."""
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        return "needs the pycocoevalcap package (pip install pycocoevalcap)"
    return None if java_available() else NEEDS_JAVA


@lru_cache(maxsize=1)
def _meteor() -> Any:
    """One METEOR 1.5 Java process per Python process (its start-up loads the paraphrase tables)."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def _tokenized(texts: Sequence[str]) -> dict[int, list[str]]:
    """PTBTokenizer's output for each text, keyed by position (one caption per key)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    return PTBTokenizer().tokenize({i: [{"caption": str(text)}] for i, text in enumerate(texts)})


def coco_scores(predictions: Sequence[str], references: Sequence[str], meteor: bool = False) -> dict:
    """{"coco_bleu1".."coco_bleu4", "coco_rouge_l", "coco_cider", "coco_meteor"} plus per-item ROUGE-L and CIDEr
    ("per_item"); `coco_meteor` is None unless asked for. RuntimeError naming what is missing when it cannot run."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} reports but {len(references)} references; they must pair up")
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(f"coco convention {reason}")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if not predictions:
        return {**{f"coco_bleu{n}": float("nan") for n in BLEU_ORDERS}, "coco_rouge_l": float("nan"),
                "coco_cider": float("nan"), "coco_meteor": None, "per_item": {"coco_rouge_l": [], "coco_cider": []}}
    references_tokens, predictions_tokens = _tokenized(references), _tokenized(predictions)
    bleu, _ = Bleu(4).compute_score(references_tokens, predictions_tokens, verbose=0)
    rouge, rouge_items = Rouge().compute_score(references_tokens, predictions_tokens)
    cider, cider_items = Cider().compute_score(references_tokens, predictions_tokens)
    scores = {f"coco_bleu{n}": float(value) for n, value in zip(BLEU_ORDERS, bleu)}
    scores.update(coco_rouge_l=float(rouge), coco_cider=float(cider), coco_meteor=None)
    if meteor:
        scores["coco_meteor"] = float(_meteor().compute_score(references_tokens, predictions_tokens)[0])
    scores["per_item"] = {"coco_rouge_l": [float(v) for v in rouge_items], "coco_cider": [float(v) for v in cider_items]}
    return scores
