"""ECE, reliability bins and accuracy–coverage against hand-worked cases and straightforward references;
option scoring against an unbatched, unpadded log-probability computation on the tiny model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve

from medlib import data
from medlib.data import synthetic
from medlib.data.processing import load_processor
from medlib.evaluation import calibration, option_scoring


def numpy_ece(confidences, correct, n_bins):
    """ECE the plain way: loop over bins ((m-1)/M, m/M], the first bin closed at 0."""
    confidences, correct = np.asarray(confidences, float), np.asarray(correct, float)
    total = 0.0
    for m in range(n_bins):
        low, high = m / n_bins, (m + 1) / n_bins
        members = (confidences > low) & (confidences <= high) if m else (confidences <= high)
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidences[members].mean())
    return total


def test_ece_hand_worked():
    # Bin (0.5, 0.6]: 0.55 right, 0.55 wrong → |0.5 − 0.55| = 0.05, weight 2/5.
    # Bin (0.9, 1.0]: 0.95, 0.95, 1.0 all right → |1 − 0.9667| = 0.0333, weight 3/5.
    confidences, correct = [0.55, 0.55, 0.95, 0.95, 1.0], [1, 0, 1, 1, 1]
    expected = 2 / 5 * 0.05 + 3 / 5 * (1 - (0.95 + 0.95 + 1.0) / 3)
    assert calibration.expected_calibration_error(confidences, correct, 10) == pytest.approx(expected)
    assert expected == pytest.approx(0.04)


def test_a_value_on_a_bin_edge_goes_to_the_lower_bin():
    bins = calibration.reliability_bins([0.5, 0.6, 0.0], [1, 1, 0], n_bins=10)
    assert [b["count"] for b in bins][:6] == [1, 0, 0, 0, 1, 1]  # 0.0 → first bin, 0.5 → (0.4, 0.5], 0.6 → (0.5, 0.6]


def test_ece_and_bins_match_numpy_and_scikit_learn():
    rng = np.random.default_rng(0)
    confidences = np.round(rng.uniform(0.3, 1.0, 500), 2)  # rounding puts many values on bin edges
    correct = rng.uniform(size=500) < confidences ** 2
    for n_bins in (5, 10, 15):
        assert calibration.expected_calibration_error(confidences, correct, n_bins) == pytest.approx(
            numpy_ece(confidences, correct, n_bins), abs=1e-12)
        accuracy, mean_confidence = calibration_curve(correct, confidences, n_bins=n_bins, strategy="uniform")
        filled = [b for b in calibration.reliability_bins(confidences, correct, n_bins) if b["count"]]
        assert [b["accuracy"] for b in filled] == pytest.approx(accuracy.tolist())
        assert [b["confidence"] for b in filled] == pytest.approx(mean_confidence.tolist())


def test_perfectly_calibrated_and_overconfident():
    assert calibration.expected_calibration_error([0.75] * 4, [1, 1, 1, 0]) == pytest.approx(0.0)
    assert calibration.expected_calibration_error([1.0] * 4, [1, 0, 1, 0]) == pytest.approx(0.5)
    assert math.isnan(calibration.expected_calibration_error([], []))
    with pytest.raises(ValueError, match="within"):
        calibration.expected_calibration_error([1.2], [1])


def test_coverage_curve_hand_worked():
    # Sorted by confidence: right, wrong, right, wrong → accuracies 1, 1/2, 2/3, 1/2.
    curve = calibration.coverage_curve([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    assert curve["accuracy"] == pytest.approx([1, 0.5, 2 / 3, 0.5])
    assert curve["aurc"] == pytest.approx(np.mean([0, 0.5, 1 / 3, 0.5]))
    assert curve["aurc_optimal"] == pytest.approx(np.mean([0, 0, 1 / 3, 0.5]))
    assert curve["area_under_accuracy_coverage"] == pytest.approx(1 - curve["aurc"])
    assert calibration.accuracy_at_coverage(curve, 0.5) == pytest.approx(0.5)


def test_tied_confidences_take_the_expected_value_whatever_the_order():
    first = calibration.coverage_curve([0.5, 0.5, 0.5, 0.5], [1, 1, 0, 0])
    second = calibration.coverage_curve([0.5, 0.5, 0.5, 0.5], [0, 0, 1, 1])
    assert first["accuracy"] == second["accuracy"] == pytest.approx([0.5] * 4)


def test_a_confidence_that_ranks_right_answers_first_reaches_the_optimum():
    curve = calibration.coverage_curve([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0])
    assert curve["aurc"] == pytest.approx(curve["aurc_optimal"])


def test_option_sets():
    presence = {"id": "a", "task": "vqa_closed", "answer": "yes", "question": "q", "images": []}
    assert option_scoring.option_set(presence) == ["yes", "no"]
    assert option_scoring.option_set({**presence, "answer": "No"}) == ["Yes", "No"]
    choice = {**presence, "task": "classification", "answer": "B", "choices": ["cat", "dog", "cow"]}
    assert option_scoring.option_set(choice) == ["A", "B", "C"]
    assert option_scoring.option_set({**choice, "answer": "dog"}) == ["cat", "dog", "cow"]
    assert option_scoring.option_set({**presence, "task": "counting", "answer": "2"}) is None  # no labels seen
    labelled = [{**presence, "id": str(i), "task": "classification", "answer": label, "dataset": "d"}
                for i, label in enumerate(["benign", "malignant", "benign"])]
    assert option_scoring.option_set(labelled[0], option_scoring.label_sets(labelled)) == ["benign", "malignant"]


def count_records(answers, dataset="d"):
    """Counting records with these references (one data set and question type)."""
    return [{"id": str(i), "task": "counting", "answer": a, "dataset": dataset, "question": "q", "images": [],
             "meta": {"question_type": "count"}} for i, a in enumerate(answers)]


def test_counts_over_a_short_range_are_options_sorted_by_value():
    counts = count_records(["3", "10", "0", "3"])
    assert option_scoring.option_set(counts[0], option_scoring.label_sets(counts)) == ["0", "3", "10"]
    one_count = count_records(["2", "2"])
    assert option_scoring.option_set(one_count[0], option_scoring.label_sets(one_count)) is None
    too_many = count_records([str(n) for n in range(option_scoring.MAX_COUNT_OPTIONS + 1)])
    assert option_scoring.option_set(too_many[0], option_scoring.label_sets(too_many)) is None
    # Two spellings of one count, or a count that is not a whole number: no option set rather than a wrong one.
    for answers in (["2", "02", "3"], ["1", "2.5"]):
        records = count_records(answers)
        assert option_scoring.option_set(records[0], option_scoring.label_sets(records)) is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_torch_thread):
    """The random-init tiny model and processor, and six synthetic presence/count records."""
    from transformers import AutoModelForImageTextToText

    from medlib.models.tiny import build_tiny_model

    work = tmp_path_factory.mktemp("options")
    model_dir = build_tiny_model(work / "model")
    processor = load_processor(str(model_dir), min_pixels=112 * 112, max_pixels=112 * 112)
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    records = data.read_records(synthetic.make_split(work / "data", "test", 6, question_types=["presence", "count"]))
    return model, processor, records, work / "data"


def unbatched_log_prob(model, processor, text, images, prompt_text):
    """Sum of log-probabilities of the tokens after the prompt, one sequence, no padding."""
    full = processor(text=[text], images=[images], return_tensors="pt")
    prompt_length = len(processor(text=[prompt_text], images=[images], return_tensors="pt")["input_ids"][0])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(**full).logits[0].float(), dim=-1)
    ids = full["input_ids"][0]
    return sum(float(log_probs[t - 1, ids[t]]) for t in range(prompt_length, len(ids)))


def test_batched_option_scores_equal_unbatched_sequence_log_probs(tiny):
    model, processor, records, root = tiny
    labels = option_scoring.label_sets(records)
    closed = [r for r in records if option_scoring.option_set(r, labels)]
    assert {r["task"] for r in closed} == {"vqa_closed", "counting"}
    raw = {closed[0]["id"]: "<think>I look.</think><answer>maybe</answer>"}  # one generated stem, others templated
    groups, prompts_ = [], []
    for record in closed:
        options = option_scoring.option_set(record, labels)
        texts, source = option_scoring.option_texts(processor, record, options, answer_format="think_answer",
                                                    system_prompt=None, raw=raw.get(record["id"]))
        assert source == ("generated" if record["id"] in raw else "template")
        assert all(t.endswith(f"{o}</answer><|im_end|>\n") for t, o in zip(texts, options))
        images = data.load_record_images(record, root, 112)
        groups.append((texts, images))
        prompts_.append(texts[0][: texts[0].rindex("<answer>") + len("<answer>")])
    batched = option_scoring.score_option_batch(model, processor, groups)
    for (texts, images), prompt_text, scores in zip(groups, prompts_, batched):
        # Options differ from their first token on: the shared stem cancels, so compare after it.
        for text, score in zip(texts, scores):
            assert score == pytest.approx(unbatched_log_prob(model, processor, text, images, prompt_text), abs=2e-4)


def test_score_options_items(tiny):
    model, processor, records, root = tiny
    result = option_scoring.score_options(model, processor, records, root, image_size=112, batch_size=4)
    closed = [r for r in records if r["task"] in ("vqa_closed", "counting")]
    assert len(result["items"]) == len(closed)
    assert result["skipped"] == {}
    for item in result["items"]:
        assert sum(item["probabilities"]) == pytest.approx(1.0)
        assert item["confidence"] == max(item["probabilities"]) >= 1 / len(item["options"])
        assert item["correct"] == (item["predicted"] == item["answer"])
