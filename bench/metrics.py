"""Time every lexical report metric on 10,000 report pairs (target: under 30 s on 2 cores), and BERTScore
on a batch to show the model is loaded once. Run: .venv/bin/python bench/metrics.py [n_pairs]"""

from __future__ import annotations

import os
import random
import sys
import time

from medlib.evaluation.metrics import flare_report, text
from medlib.evaluation.metrics.nltk_data import wordnet_available

PHRASES = [
    "the heart size is normal", "no pleural effusion", "small left pleural effusion", "unchanged since prior",
    "increased right lower lobe consolidation", "possible pneumonia", "no pneumothorax", "stable cardiomegaly",
    "nodule measuring 1.2 cm in the right upper lobe", "mild pulmonary edema", "lungs are clear",
]  # fmt: skip


def report_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n (generated, reference) pairs of 3–6 random radiology phrases."""
    rng = random.Random(seed)
    make = lambda: ". ".join(rng.sample(PHRASES, rng.randint(3, 6))).capitalize() + "."  # noqa: E731
    return [make() for _ in range(n)], [make() for _ in range(n)]


def timed(name: str, function, *args) -> float:
    """Run, print the seconds taken, return them."""
    start = time.perf_counter()
    function(*args)
    seconds = time.perf_counter() - start
    print(f"{name:<24} {seconds:7.2f} s")
    return seconds


def main(n: int = 10_000) -> None:
    """Time the lexical metrics on n pairs, then BERTScore twice on a small batch."""
    generated, references = report_pairs(n)
    print(f"{n} report pairs")
    total = 0.0
    total += timed("bleu1-4 (evaluate)", text.corpus_bleu_orders, generated, references)
    total += timed("bleu1-4 (sacrebleu)", text.sacrebleu_orders, generated, references)
    total += timed("rouge-l", text.rouge_l, generated, references)
    if wordnet_available():
        total += timed("meteor", text.meteor, generated, references)
    else:
        print("meteor                   skipped (no WordNet: scripts/install_wordnet.sh)")
    total += timed("temporal f1 (Libra)", text.temporal_f1, generated, references)
    total += timed("flare_report_score", flare_report.flare_report_score, generated, references)
    total += timed("clinical efficacy", flare_report.clinical_efficacy, generated, references)
    total += timed("flare bleu", flare_report.flare_bleu, generated, references)
    print(f"{'all lexical metrics':<24} {total:7.2f} s   (target < 30 s)")
    if text.offline_bertscore_model():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        batch = generated[:256], references[:256]
        first = timed("bertscore 256 (load)", lambda: text.bertscore(*batch, model_type="minilm"))
        second = timed("bertscore 256 (reuse)", lambda: text.bertscore(*batch, model_type="minilm"))
        print(f"model reuse: second call {first / max(second, 1e-9):.1f}x faster than the first")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
