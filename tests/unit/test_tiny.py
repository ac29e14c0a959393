"""The tiny offline Qwen-VL checkpoints (medlib.models.tiny) and their processors (medlib.data.processing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

from medlib.data import processing
from medlib.data.processing import PROCESSOR_CLASSES, load_processor
from medlib.models import tiny
from medlib.models.tiny import TAG_TOKENS, build_tiny_model, ensure_tiny_model

ARCHS = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl")
# 112 px: Qwen2/2.5-VL (patch 14) → 8×8 patches → 16 merged tokens; Qwen3-VL (patch 16, factor 32)
# resizes to 96 px within the 112² pixel budget → 6×6 patches → 9 tokens.
IMAGE_TOKENS_AT_112 = {"qwen2_5_vl": 16, "qwen2_vl": 16, "qwen3_vl": 9}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=ARCHS)
def built(request, tmp_path_factory):
    """(arch, folder, model, processor) for one tiny architecture, built and loaded once."""
    arch = request.param
    model_dir = build_tiny_model(tmp_path_factory.mktemp(arch) / "model", arch)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    return arch, model_dir, model, load_processor(str(model_dir))


def grey_image(seed: int = 0, size: int = 112) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def user_turn(image=None, text: str = "question") -> dict:
    image_part = {"type": "image"} if image is None else {"type": "image", "image": image}
    return {"role": "user", "content": [image_part, {"type": "text", "text": text}]}


def assistant_turn(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def test_folder_is_a_complete_checkpoint(built) -> None:
    arch, model_dir, model, processor = built
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "medlib_tiny.json"} <= names
    assert not model_dir.with_name(model_dir.name + ".partial").exists()
    assert model.config.model_type == arch
    assert type(processor).__name__ == PROCESSOR_CLASSES[arch][0]
    marker = json.loads((model_dir / "medlib_tiny.json").read_text())
    assert marker["arch"] == arch and marker["image_size"] == 112
    assert marker["parameters"] == sum(p.numel() for p in model.parameters())
    assert 100_000 < marker["parameters"] < 2_000_000  # "tiny": about 0.6 M


def test_video_free_processor_without_torchvision(built, monkeypatch) -> None:
    _, model_dir, _, processor = built
    if processing.torchvision_usable():
        pytest.skip("torchvision works here; the stock processor is used")
    assert processor.video_processor is None
    # A torchvision that is not installed at all is also "not usable".
    monkeypatch.setattr(processing.importlib.util, "find_spec", lambda name: None)
    assert processing.torchvision_usable() is False


def test_video_free_path_loads_even_where_torchvision_works(built, monkeypatch) -> None:
    arch, model_dir, _, _ = built
    monkeypatch.setattr(processing, "torchvision_usable", lambda: False)
    processor = load_processor(str(model_dir), min_pixels=56 * 56, max_pixels=56 * 56)
    assert processor.video_processor is None
    assert type(processor).__name__ == PROCESSOR_CLASSES[arch][0]
    assert processor.image_processor.size["longest_edge"] == 56 * 56
    assert processor.tokenizer.padding_side == "left"


def test_chat_template_generation_prompt(built) -> None:
    processor = built[3]
    text = processor.apply_chat_template([user_turn()], add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>question<|im_end|>\n"
                    "<|im_start|>assistant\n")


def test_one_image_becomes_the_expected_number_of_image_tokens(built) -> None:
    arch, _, _, processor = built
    text = processor.apply_chat_template([user_turn()], add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[[grey_image()]], return_tensors="pt")
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    image_tokens = int((inputs["input_ids"] == pad_id).sum())
    assert image_tokens == IMAGE_TOKENS_AT_112[arch]
    grid = inputs["image_grid_thw"]
    assert image_tokens == int(grid.prod()) // 4  # spatial merge 2×2
    assert inputs["pixel_values"].shape[0] == int(grid.prod())


def test_generation_runs(built) -> None:
    _, _, model, processor = built
    text = processor.apply_chat_template([user_turn()], add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[[grey_image()]], return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    prompt_length = inputs["input_ids"].shape[1]
    assert prompt_length < output.shape[1] <= prompt_length + 4
    assert torch.equal(output[0, :prompt_length], inputs["input_ids"][0])


@pytest.mark.parametrize("answers", [["<think>I count.</think><answer>2</answer>"], ["yes", "B right"]])
def test_assistant_mask_marks_exactly_the_answers(built, answers) -> None:
    processor = built[3]
    tokenizer = processor.tokenizer
    messages = []
    for number, answer in enumerate(answers):
        messages += [user_turn(grey_image(number), f"question {number}"), assistant_turn(answer)]
    encoded = processor.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
    ids = np.asarray(encoded["input_ids"]).reshape(-1)
    mask = np.asarray(encoded["assistant_masks"]).reshape(-1)
    assert ids.shape == mask.shape
    assert tokenizer.decode(ids[mask == 1]) == "".join(a + "<|im_end|>" for a in answers)
    expected = sum(len(tokenizer.encode(a + "<|im_end|>", add_special_tokens=False)) for a in answers)
    assert int(mask.sum()) == expected
    # Each span ends on <|im_end|> and the newline after it is not supervised.
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ends = np.flatnonzero(np.diff(np.concatenate([mask, [0]])) == -1)
    assert len(ends) == len(answers)
    assert all(ids[end] == im_end for end in ends)
    assert ends[-1] == len(ids) - 2


def test_tag_tokens_are_single_and_survive_skip_special_tokens(built) -> None:
    tokenizer = built[3].tokenizer
    for tag in TAG_TOKENS:
        assert len(tokenizer.encode(tag, add_special_tokens=False)) == 1, tag
    text = "<think>I count.</think><answer>2</answer>"
    ids = tokenizer.encode(text + "<|im_end|><|endoftext|>", add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(ids, skip_special_tokens=False).endswith("<|im_end|><|endoftext|>")


def test_ensure_tiny_model_builds_once(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "tiny"
    assert ensure_tiny_model(out, "qwen2_vl") == out
    marker = out / "medlib_tiny.json"
    first = marker.stat().st_mtime_ns

    def no_rebuild(*args, **kwargs):
        raise AssertionError("ensure_tiny_model rebuilt an existing checkpoint")

    with monkeypatch.context() as patched:
        patched.setattr(tiny, "build_tiny_model", no_rebuild)
        assert ensure_tiny_model(out, "qwen2_vl") == out
    assert marker.stat().st_mtime_ns == first


def test_ensure_tiny_model_rebuilds_when_settings_change(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    ensure_tiny_model(out, "qwen2_vl")
    ensure_tiny_model(out, "qwen2_5_vl")
    assert json.loads((out / "medlib_tiny.json").read_text())["arch"] == "qwen2_5_vl"
    ensure_tiny_model(out, "qwen2_5_vl", seed=3, image_size=56)
    marker = json.loads((out / "medlib_tiny.json").read_text())
    assert (marker["seed"], marker["image_size"]) == (3, 56)


def test_same_seed_same_weights_and_other_seed_differs(tmp_path: Path) -> None:
    weights = {name: load_file(build_tiny_model(tmp_path / name, seed=seed) / "model.safetensors")
               for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    assert weights["a"].keys() == weights["b"].keys() and len(weights["a"]) > 10
    assert all(torch.equal(weights["a"][key], weights["b"][key]) for key in weights["a"])
    assert any(not torch.equal(weights["a"][key], weights["c"][key]) for key in weights["a"])
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_unknown_architecture_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="llava"):
        build_tiny_model(tmp_path / "x", "llava")


@pytest.mark.parametrize(("shape", "billions"), [("3b", 3.755), ("7b", 8.292)])
def test_benchmark_shapes_have_the_published_sizes(shape: str, billions: float) -> None:
    """Qwen2.5-VL-3B/7B-Instruct have 3.75 B / 8.29 B parameters; built on the meta device, no memory."""
    from transformers import AutoModelForImageTextToText

    from medlib.models.tiny import _train_tokenizer, shaped_config

    config = shaped_config(shape, _train_tokenizer(640))
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=0.001)


def test_benchmark_shapes_are_qwen2_5_vl_only(tmp_path) -> None:
    with pytest.raises(ValueError, match="qwen2_5_vl only"):
        build_tiny_model(tmp_path / "m", "qwen3_vl", shape="3b")
