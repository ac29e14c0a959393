"""The soft confusion matrix of option probabilities: hand-worked tables, skipped groups, clear errors, the figure."""
from __future__ import annotations

import pytest

from medlib.evaluation import answer_probabilities, figures


def item(answer, probabilities, options=("0", "1", "2"), question_type="count", task="counting"):
    """One option-scoring item."""
    return {"id": f"q{answer}", "task": task, "question_type": question_type, "options": list(options),
            "probabilities": list(probabilities), "answer": answer}


def test_rows_average_the_questions_with_that_right_answer():
    items = [item("0", [0.8, 0.1, 0.1]), item("2", [0.0, 0.5, 0.5]), item("2", [0.0, 0.1, 0.9])]
    table = answer_probabilities.probability_table(items)
    assert table["options"] == ["0", "1", "2"]
    assert table["n"] == [1, 0, 2]
    assert table["matrix"][0] == [0.8, 0.1, 0.1]
    assert table["matrix"][2] == pytest.approx([0.0, 0.3, 0.7])
    assert all(v != v for v in table["matrix"][1])  # no question with right answer 1: NaN, not zeros
    assert table["right_answer_probability"] == pytest.approx((0.8 + 0.5 + 0.9) / 3)
    assert table["chance"] == pytest.approx(1 / 3)


def test_image_blind_rows_are_equal_and_their_right_answer_probability_is_chance():
    flat = [0.25, 0.25, 0.25, 0.25]
    items = [item(str(n), flat, options=("0", "1", "2", "3")) for n in range(4)]
    table = answer_probabilities.probability_table(items)
    assert all(row == flat for row in table["matrix"])
    assert table["right_answer_probability"] == pytest.approx(table["chance"])


def test_a_reference_written_differently_from_its_option_is_matched_as_a_count():
    assert answer_probabilities.reference_option(item("02", [0.1, 0.2, 0.7])) == 2
    assert answer_probabilities.reference_option(item("yes", [0.5, 0.5], options=("Yes", "No"))) is None


def test_tables_per_question_type_and_why_a_type_has_none():
    items = [item("1", [0.2, 0.7, 0.1]), item("yes", [0.9, 0.1], options=("yes", "no"), question_type="presence",
                                                  task="vqa_closed"),
             item("A", [0.6, 0.4], options=("A", "B"), question_type="choice", task="vqa_closed"),
             # Multiple choice with its choice texts as options: they differ between questions of one data set.
             {**item("cat", [0.6, 0.4], options=("cat", "dog"), question_type="animal"), "dataset": "zoo"},
             {**item("cow", [0.6, 0.4], options=("cow", "hen"), question_type="animal"), "dataset": "zoo"}]
    tables, skipped = answer_probabilities.probability_tables(items)
    assert set(tables) == {"count", "presence", "choice"}
    assert skipped == {"animal · zoo": "2 different option sets"}
    figure = figures.answer_probability_maps({"sft": tables})
    assert len([ax for ax in figure.axes if ax.get_visible() and ax.axison]) == 3


def test_data_sets_with_their_own_labels_get_a_table_each():
    items = [{**item("cat", [0.6, 0.4], options=("cat", "dog"), question_type="animal"), "dataset": "pets"},
             {**item("cow", [0.1, 0.9], options=("cow", "hen"), question_type="animal"), "dataset": "farm"}]
    tables, skipped = answer_probabilities.probability_tables(items)
    assert set(tables) == {"animal · pets", "animal · farm"} and skipped == {}
    assert tables["animal · farm"]["n"] == [1, 0]
    assert tables["animal · farm"]["right_answer_probability"] == pytest.approx(0.1)


def test_mixed_option_sets_or_a_reference_outside_its_options_name_the_question():
    with pytest.raises(ValueError, match="q1: options"):
        answer_probabilities.probability_table([item("0", [1, 0, 0]), item("1", [0.5, 0.5], options=("0", "1"))])
    with pytest.raises(ValueError, match="q7: reference '7'"):
        answer_probabilities.probability_table([item("7", [1, 0, 0])])
