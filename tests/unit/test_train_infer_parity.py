"""Training and inference see exactly the same prompt tokens and pixels; SFT labels cover only the answer."""
from __future__ import annotations

import pytest
import torch
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from medlib import data
from medlib.data import prompts, synthetic
from medlib.data.processing import load_processor
from medlib.evaluation import inference
from medlib.models.tiny import build_tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny processor and four synthetic records of two question types."""
    work = tmp_path_factory.mktemp("parity")
    processor = load_processor(str(build_tiny_model(work / "model")), min_pixels=112 * 112, max_pixels=112 * 112)
    records = data.read_records(synthetic.make_split(work / "data", "train", 4, question_types=["presence", "count"]))
    return processor, records, work / "data"


def collate(processor, records, data_root):
    """Collate SFT rows the way SFTTrainer does on the hf backend (prompt-completion, completion-only loss)."""
    rows = data.sft_rows(records, data_root, image_size=112, style="prompt_completion")
    collator = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    return collator(rows)


def test_inference_prompt_tokens_and_pixels_equal_training(setup):
    processor, records, data_root = setup
    batch = collate(processor, records, data_root)
    generation = inference.generation_inputs(processor, records, data_root, image_size=112,
                                             answer_format="think_answer", system_prompt=None)
    assert torch.equal(batch["pixel_values"], generation["pixel_values"])
    assert torch.equal(batch["image_grid_thw"], generation["image_grid_thw"])
    for row in range(len(records)):
        prompt_positions = (batch["attention_mask"][row] == 1) & (batch["labels"][row] == -100)
        training_prompt = batch["input_ids"][row][prompt_positions].tolist()
        inference_prompt = generation["input_ids"][row][generation["attention_mask"][row] == 1].tolist()
        assert training_prompt == inference_prompt


def test_labels_cover_exactly_the_answer_and_end_of_turn(setup):
    processor, records, data_root = setup
    batch = collate(processor, records, data_root)
    tokenizer = processor.tokenizer
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for row, record in enumerate(records):
        labels = batch["labels"][row]
        supervised = labels[labels != -100].tolist()
        assert image_pad not in supervised
        expected = tokenizer(prompts.target_text(record) + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        assert supervised == expected
