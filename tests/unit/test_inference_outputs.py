"""Inference bookkeeping: batching, out-of-memory halving, partial files, submissions, review sheets."""
from __future__ import annotations

import json

import pytest
import torch

from medlib.evaluation import inference


def record(i: int, task: str = "vqa_closed", question: str = "q?") -> dict:
    """A minimal record."""
    return {"id": f"r{i}", "dataset": "d", "task": task, "images": [f"images/{i}.png"], "question": question,
            "answer": "yes", "meta": {}}


def write_images(root, count: int) -> None:
    """The images the records name (predict_records skips records whose images cannot be loaded)."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (8, 8)).save(root / "images" / f"{i}.png")


class FakeModel:
    """Stands in for a model: only `eval` is called by predict_records."""

    def eval(self) -> None:
        """No-op."""


def test_batches_group_equal_budgets_and_similar_lengths():
    records = [record(0, "report_generation", "describe"), record(1, question="a much longer question?"),
               record(2, question="short?"), record(3, "report_generation", "describe the image")]
    batches = inference.length_sorted_batches(records, batch_size=8, max_new_tokens=0)
    assert sorted(map(sorted, batches)) == [[0, 3], [1, 2]]
    assert batches[0] == [2, 1]  # shorter question first within the short-answer group
    assert inference.length_sorted_batches(records, batch_size=1, max_new_tokens=16) == [[2], [0], [3], [1]]


def test_out_of_memory_halves_the_batch_and_keeps_every_answer(monkeypatch, tmp_path):
    sizes = []

    def fake_generate(model, processor, batch, data_root, **kwargs):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return [f"<answer>{r['id']}</answer>" for r in batch]

    monkeypatch.setattr(inference, "generate_batch", fake_generate)
    write_images(tmp_path, 7)
    records = [record(i) for i in range(7)]
    predictions = inference.predict_records(FakeModel(), None, records, tmp_path, checkpoint="c", image_size=None,
                                            batch_size=8, progress=False)
    assert [p["raw"] for p in predictions] == [f"<answer>r{i}</answer>" for i in range(7)]
    assert sizes == [7, 3] + [1] * 7  # the smaller size sticks for the rest of the run


def test_other_runtime_errors_are_not_swallowed(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(inference, "generate_batch", broken)
    write_images(tmp_path, 2)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        inference.predict_records(FakeModel(), None, [record(0), record(1)], tmp_path, checkpoint="c",
                                  image_size=None, progress=False)


def test_partial_file_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "p.jsonl.partial"
    path.write_text(json.dumps({"id": "a", "raw": "x"}) + "\n" + '{"id": "b", "ra')
    assert list(inference.read_partial(path)) == ["a"]
    assert path.read_text() == json.dumps({"id": "a", "raw": "x"}) + "\n"


def test_answer_text_prefers_the_answer_tag():
    assert inference.answer_text({"raw": "<think>t</think><answer> B </answer>"}) == "B"
    assert inference.answer_text({"raw": "  plain text "}) == "plain text"


def test_flare_submission_fills_answers_in_question_order():
    questions = [{"TaskType": "Classification", "ImageName": "imagesVal/a.png", "Question": "Which?  A) x B) y",
                  "Answer": ""},
                 {"TaskType": "Report Generation", "ImageName": ["imagesVal/c.png", "imagesVal/p.png"],
                  "Question": "Describe.", "Answer": ""}]
    predictions = [
        {"images": ["imagesVal/c.png", "imagesVal/p.png"], "question": "Describe.", "raw": "Findings: clear."},
        {"images": ["imagesVal/a.png"], "question": "Which? A) x B) y", "raw": "<answer>B</answer>"}]
    filled = inference.flare_submission(questions, predictions)
    assert [q["Answer"] for q in filled] == ["B", "Findings: clear."]
    assert filled[0]["TaskType"] == "Classification"
    with pytest.raises(KeyError, match="question 1"):
        inference.flare_submission(questions, predictions[1:])


def test_review_sheet_has_one_column_per_checkpoint(tmp_path):
    import pandas as pd

    records = [record(0), record(1)]
    predictions = {"base": [{"id": "r0", "raw": ""}, {"id": "r1", "raw": "no"}],
                   "sft": [{"id": "r0", "raw": "<answer>yes</answer>"}, {"id": "r1", "raw": "<answer>no</answer>"}]}
    path = inference.write_review_sheet(tmp_path / "review.xlsx", records, predictions)
    sheet = pd.read_excel(path).fillna("")
    assert list(sheet.columns) == ["id", "ImageName", "Question", "Answer", "base", "sft"]
    assert sheet["sft"].tolist() == ["yes", "no"] and sheet["base"].tolist() == ["", "no"]


def test_auto_cache_is_static_only_for_long_cuda_runs():
    assert inference.resolve_cache("auto", 10_000, "cuda:0") == "static"
    assert inference.resolve_cache("auto", 10, "cuda:0") == ""
    assert inference.resolve_cache("auto", 10_000, "cpu") == ""
    assert inference.resolve_cache("dynamic", 10_000, "cuda:0") == ""
    assert inference.resolve_cache("static", 1, "cpu") == "static"
