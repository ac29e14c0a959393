"""Libra's evaluate_report (X-iZhang/Libra: libra/eval/radiology_report.py, temporal_f1.py), worked by hand: it
lower-cases and cleans every report, then scores all pairs (empty ones included) with HF evaluate."""

from __future__ import annotations

import pytest

from medlib.evaluation.metrics import libra, scoring, text


def test_libra_lower_cases_and_cleans_before_bleu() -> None:
    scores = libra.libra_scores(["The heart is normal."], ["the heart is normal."])
    assert [scores[f"libra_bleu{n}"] for n in (1, 2, 3, 4)] == [1.0, 1.0, 1.0, 1.0]
    # HF evaluate on the raw text (what medlib reported before): "The" ≠ "the" → BLEU-1 4/5 = 0.8.
    raw = text.corpus_bleu_orders(["The heart is normal."], ["the heart is normal."])
    assert raw[1] == pytest.approx(0.8) and raw[4] == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)


def test_libra_text_is_clean_text_of_the_lower_cased_report() -> None:
    assert libra.libra_text("Heart size: NORMAL -- no\n\neffusion (stable)!") == "heart size: normal no effusion (stable)"


def test_corpus_bleu_counts_the_empty_reference() -> None:
    # Cleaned: "no effusion." / "heart is enlarged" against "no effusion." / "". 13a tokens: 3 + 3 output
    # words, 3 + 0 reference words (ratio 2: no brevity penalty). Clipped matches 3/6, 2/4, 1/2, 0/0.
    scores = libra.libra_scores(["No effusion.", "Heart is enlarged"], ["no effusion.", ""])
    assert [scores[f"libra_bleu{n}"] for n in (1, 2, 3)] == pytest.approx([0.5, 0.5, 0.5])
    assert scores["libra_bleu4"] == 0.0  # no 4-gram anywhere: a zero precision
    # Temporal F1: exact match 2/(2+ε)·… ≈ 1, keywords without reference keywords score ε = 1e-10.
    assert scores["per_item"]["libra_temporal_f1"] == pytest.approx([1.0, 1e-10], abs=1e-12)
    assert scores["libra_rouge_l"] == pytest.approx(0.5)


def test_temporal_f1_of_empty_reports() -> None:
    assert text.temporal_f1_item("", "") == 1.0  # nothing wanted, nothing given
    assert text.temporal_f1_item("New effusion.", "") == 1e-10  # Libra's ε for keywords nobody asked for
    assert text.temporal_f1_item("", "Effusion unchanged.") == pytest.approx(2e-10 / (1 + 1e-10 + 1e-10), rel=1e-6)


def test_score_records_reports_libra_over_empty_references_under_flare() -> None:
    records = [{"id": "1", "task": "report_generation", "dataset": "d", "raw": "No effusion.", "answer": "no effusion."},
               {"id": "2", "task": "report_generation", "dataset": "d", "raw": "Heart is enlarged", "answer": ""}]
    options = scoring.ScoringOptions(coco=False)
    flare_metrics = scoring.score_records(records, "flare", 20, options)["groups"][0]["metrics"]
    robust_metrics = scoring.score_records(records, "robust", 20, options)["groups"][0]["metrics"]
    assert flare_metrics["libra_bleu1"] == pytest.approx(0.5) and robust_metrics["libra_bleu1"] == pytest.approx(1.0)
    assert flare_metrics["libra_temporal_f1"] == pytest.approx((1.0 + 1e-10) / 2)
