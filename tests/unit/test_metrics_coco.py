"""The `coco` convention: pycocoevalcap as COCO caption evaluation runs it (PTBTokenizer, BLEU, ROUGE-L, CIDEr-D,
METEOR), worked by hand where the numbers are small; needs Java (CI installs default-jre-headless)."""

from __future__ import annotations

import pytest

from medlib.evaluation.metrics import coco, scoring

needs_java = pytest.mark.skipif(coco.unavailable_reason() is not None, reason=str(coco.unavailable_reason()))


@needs_java
def test_identical_reports_with_disjoint_words() -> None:
    # Tokens are lower-cased and punctuation dropped, so case and the full stop do not matter. CIDEr-D: each
    # n-gram occurs in one of the two references, idf = log(2 / 1) > 0, identical tf-idf vectors → cosine 1 at
    # every order, × 10 → 10 per report. BLEU is 1 up to the scorer's 1e-9 smoothing.
    scores = coco.coco_scores(["The heart is normal.", "No pleural effusion seen"],
                              ["the heart is normal", "no pleural effusion seen."])
    assert [scores[f"coco_bleu{n}"] for n in (1, 2, 3, 4)] == pytest.approx([1.0] * 4, abs=1e-6)
    assert scores["coco_rouge_l"] == 1.0 and scores["per_item"]["coco_cider"] == pytest.approx([10.0, 10.0])
    assert scores["coco_meteor"] is None  # only on request


@needs_java
def test_a_single_report_has_no_cider() -> None:
    # With one reference every n-gram has document frequency 1 of 1: idf log(1/1) = 0, so CIDEr is 0.
    assert coco.coco_scores(["the heart is normal"], ["the heart is normal"])["coco_cider"] == 0.0


@needs_java
def test_rouge_l_uses_beta_1_2_and_bleu_the_closest_reference_length() -> None:
    scores = coco.coco_scores(["heart normal", "lungs clear"], ["the heart is normal", "lungs clear"])
    # Report 1: LCS 2, precision 1, recall 0.5 → (1 + 1.44) · 1 · 0.5 / (0.5 + 1.44 · 1) = 1.22 / 1.94.
    assert scores["per_item"]["coco_rouge_l"] == pytest.approx([1.22 / 1.94, 1.0])
    # BLEU-1: 4 of 4 words match; brevity penalty exp(1 − 6/4).
    assert scores["coco_bleu1"] == pytest.approx(2.718281828459045 ** (1 - 6 / 4), rel=1e-6)


@needs_java
def test_ptb_tokenizer_convention_is_kept() -> None:
    tokens = coco._tokenized(["Heart size 1.5 cm, stable (unchanged)."])
    assert tokens == {0: ["heart size 1.5 cm stable -lrb- unchanged -rrb-"]}  # its bracket tokens stay


@needs_java
def test_score_records_names_the_coco_convention() -> None:
    records = [{"id": str(i), "task": "report_generation", "dataset": "d", "raw": raw, "answer": ref}
               for i, (raw, ref) in enumerate([("No effusion.", "no effusion"), ("Heart normal.", "Heart is normal.")])]
    group = scoring.score_records(records, n_resamples=20)["groups"][0]
    assert {"coco_bleu4", "coco_rouge_l", "coco_cider"} <= set(group["metrics"]) and "coco_cider" in group["ci"]
    rows = scoring.report_convention_rows({"groups": [group]})
    assert [row["convention"] for row in rows] == ["flare", "libra", "sacrebleu", "coco"]


def test_without_java_the_convention_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coco.shutil, "which", lambda name: None)
    assert "default-jre-headless" in coco.unavailable_reason()
    records = [{"id": "1", "task": "report_generation", "dataset": "d", "raw": "Normal.", "answer": "Normal."}]
    metrics = scoring.score_records(records, n_resamples=10)["groups"][0]["metrics"]
    assert "Java" in metrics["coco_unavailable"] and "coco_bleu4" not in metrics
    with pytest.raises(RuntimeError, match="Java"):
        coco.coco_scores(["a"], ["a"])


@pytest.mark.slow
@needs_java
def test_meteor_on_request() -> None:
    scores = coco.coco_scores(["the heart is normal", "lungs are clear"], ["the heart is normal", "lungs clear"],
                              meteor=True)
    assert 0.0 < scores["coco_meteor"] <= 1.0
