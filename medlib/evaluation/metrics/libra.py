"""The `libra` convention for report metrics: Libra's `evaluate_report` (X-iZhang/Libra, libra/eval/radiology_report.py).

Libra lower-cases every report, then cleans it (`clean_text`: newlines and dashes to spaces, odd characters
dropped) and scores the cleaned pairs, empty ones included, with HF `evaluate`: corpus BLEU-1…4 (13a
tokens, shortest reference, no smoothing), ROUGE-L (rouge-score, no stemming), METEOR (nltk) and
BERTScore (distilbert-base-uncased there), plus its temporal entity F1 (libra/eval/temporal_f1.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from medlib.evaluation.metrics import text
from medlib.evaluation.metrics.nltk_data import wordnet_available

# The BERTScore model of Libra's evaluate_report.
LIBRA_BERTSCORE_MODEL = "distilbert-base-uncased"


def libra_text(report: object) -> str:
    """A report as Libra scores it: lower-cased first, then `clean_text`.

    >>> libra_text("The heart--is NORMAL.\\n\\nNo effusion!")
    'the heart is normal. no effusion'
    """
    return text.libra_clean(("" if report is None else str(report)).lower())


def libra_scores(predictions: Sequence[str], references: Sequence[str], bertscore_model: str | None = None) -> dict:
    """{"libra_bleu1".."libra_bleu4", "libra_rouge_l", "libra_meteor", "libra_temporal_f1"[, "libra_bertscore_f1"]}
    on Libra-cleaned text, with per-item lists ("per_item") for the bootstrap; METEOR is None without WordNet.

    >>> scores = libra_scores(["The heart is normal."], ["the heart is normal."])
    >>> scores["libra_bleu1"], scores["libra_bleu4"]
    (1.0, 1.0)
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} reports but {len(references)} references; they must pair up")
    generated, wanted = [libra_text(p) for p in predictions], [libra_text(r) for r in references]
    per_item = {
        "libra_rouge_l": text.rouge_l_per_item(generated, wanted),
        "libra_temporal_f1": [text.temporal_f1_item(g, r) for g, r in zip(generated, wanted)],
    }
    scores: dict = {f"libra_bleu{n}": value for n, value in text.corpus_bleu_orders(generated, wanted).items()}
    scores.update({name: sum(values) / len(values) if values else float("nan") for name, values in per_item.items()})
    scores["libra_meteor"] = text.meteor(generated, wanted) if wordnet_available() and generated else None
    if bertscore_model:
        result = text.bertscore(generated, wanted, model_type=bertscore_model)
        scores.update(libra_bertscore_f1=result["f1"], bertscore_settings=result["settings"])
        per_item["libra_bertscore_f1"] = result["f1_per_item"]
    scores["per_item"] = per_item
    return scores
