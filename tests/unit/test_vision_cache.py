"""The vision feature cache: identical outputs to recomputing, steps aside while the tower trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from medlib import models
from medlib.data.processing import load_processor
from medlib.models import vision_cache
from medlib.models.tiny import build_tiny_model

SIZE = 56


def _image(x: int, y: int) -> Image.Image:
    """A grey square with one bright block: moving the block permutes the same patches."""
    image = Image.new("RGB", (SIZE, SIZE), (40, 40, 40))
    image.paste((230, 230, 230), (x, y, x + 14, y + 14))
    return image


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def tiny(request, tmp_path_factory) -> tuple:
    """A tiny model with LoRA on the language model (vision frozen) and its processor."""
    path = build_tiny_model(tmp_path_factory.mktemp(request.param) / "m", request.param, image_size=SIZE)
    model, processor, backend = models.load_model(str(path), backend="hf", min_pixels=SIZE**2, max_pixels=SIZE**2)
    model = models.prepare_for_training(model, backend, "lora", models.LoraParams(r=4, lora_alpha=8, lora_dropout=0.0))
    return model, load_processor(str(path), min_pixels=SIZE**2, max_pixels=SIZE**2)


def _batch(processor, images: list[Image.Image]) -> dict:
    """One chat prompt per image, padded together."""
    messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a lesion?"}]}]
                for _ in images]
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    return processor(text=texts, images=[[image] for image in images], return_tensors="pt", padding=True)


def test_cached_features_give_the_same_logits(tiny) -> None:
    model, processor = tiny
    model.eval()
    batches = [_batch(processor, [_image(0, 0), _image(28, 28), _image(0, 0)]),
               _batch(processor, [_image(28, 28), _image(14, 0), _image(0, 0)])]
    with torch.no_grad():
        expected = [model(**batch).logits for batch in batches]
        cache = vision_cache.attach_vision_cache(model)
        try:
            got = [model(**batch).logits for batch in batches] + [model(**batches[0]).logits]
        finally:
            vision_cache.detach_vision_cache(model)
    torch.testing.assert_close(got[0], expected[0])  # equal up to batch-composition rounding
    torch.testing.assert_close(got[1], expected[1])  # equal up to batch-composition rounding
    torch.testing.assert_close(got[2], expected[0])  # equal up to batch-composition rounding
    # Three distinct images: (0,0), (28,28) and (14,0); the block at other places is a different image.
    assert cache.misses == 3 and cache.hits == 6 and len(cache.entries) == 3
    assert "get_image_features" not in vars(vision_cache._vision_owner(model))


def test_the_loss_and_its_gradient_are_unchanged(tiny) -> None:
    model, processor = tiny
    model.train()
    batch = _batch(processor, [_image(0, 28), _image(0, 28)])
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    lora = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in lora]

    plain = loss_and_grads()
    vision_cache.attach_vision_cache(model)
    try:
        loss_and_grads()  # fills the cache
        cached = loss_and_grads()  # served from it
    finally:
        vision_cache.detach_vision_cache(model)
        model.zero_grad()
    torch.testing.assert_close(cached[0], plain[0])
    for got, want in zip(cached[1], plain[1], strict=True):
        torch.testing.assert_close(got, want)


def test_a_trainable_vision_tower_is_never_served_from_the_cache(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "m", image_size=SIZE)
    model, processor, backend = models.load_model(str(path), backend="hf", full_finetuning=True,
                                                  min_pixels=SIZE**2, max_pixels=SIZE**2)
    model = models.prepare_for_training(model, backend, "full", models.LoraParams())
    cache = vision_cache.attach_vision_cache(model)
    batch = _batch(load_processor(str(path), min_pixels=SIZE**2, max_pixels=SIZE**2), [_image(0, 0)])
    model(**batch)
    model(**batch)
    assert cache.bypassed_calls == 2 and cache.hits == cache.misses == 0


def test_least_recently_used_entries_are_evicted() -> None:
    cache = vision_cache.VisionFeatureCache(max_gib=2 * 4096 * 4 / 2**30)  # room for two 4096-float entries
    for name in ("a", "b"):
        cache.put((name,), [torch.zeros(4096)])
    assert cache.get(("a",)) is not None  # "a" is now the most recently used
    cache.put(("c",), [torch.zeros(4096)])
    assert list(cache.entries) == [("a",), ("c",)]
    assert cache.stats()["images"] == 2 and cache.stats()["stored_gib"] == pytest.approx(2 * 4096 * 4 / 2**30)


def test_a_model_without_a_vision_tower_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no Qwen-VL vision tower"):
        vision_cache.attach_vision_cache(torch.nn.Linear(2, 2))


def test_training_runs_without_a_cache_when_none_applies(capsys: pytest.CaptureFixture) -> None:
    assert vision_cache.cache_for_training(torch.nn.Linear(2, 2), max_gib=4.0) is None
    assert "vision feature cache off" in capsys.readouterr().out
    assert vision_cache.cache_for_training(torch.nn.Linear(2, 2), max_gib=0) is None


@pytest.mark.parametrize("split", [True, False])
def test_deepstack_levels_keep_the_layout_the_model_produced(split: bool) -> None:
    """transformers 5.17's Qwen3-VL concatenates the deepstack levels; newer versions split them per image."""
    from types import SimpleNamespace

    pooled = (torch.zeros(2, 3), torch.ones(1, 3))
    level = torch.arange(9.0).reshape(3, 3)
    deepstack = [tuple(torch.split(level, [2, 1]))] if split else [level]
    images = vision_cache._per_image(SimpleNamespace(pooler_output=pooled, deepstack_features=deepstack))
    assert [len(tensors) for tensors in images] == [2, 2]
    torch.testing.assert_close(images[1][1], level[2:])
    rebuilt = vision_cache._fill_output(SimpleNamespace(), images, split)
    if split:
        torch.testing.assert_close(rebuilt.deepstack_features[0][0], level[:2])
    else:
        torch.testing.assert_close(rebuilt.deepstack_features[0], level)
    torch.testing.assert_close(rebuilt.pooler_output[1], pooled[1])


def test_a_cache_is_emptied_while_the_tower_trains_and_bypassed_for_hidden_states(tiny) -> None:
    model, processor = tiny
    batch = _batch(processor, [_image(0, 0)])
    cache = vision_cache.attach_vision_cache(model)
    owner = vision_cache._vision_owner(model)
    try:
        with torch.no_grad():
            model(**batch)
            assert len(cache.entries) == 1
            model(**batch, output_hidden_states=True)  # the cache holds pooled features only
            assert cache.bypassed_calls == 1 and cache.hits == 0
            first = next(owner.visual.parameters())
            first.requires_grad_(True)
            model(**batch)
            assert cache.bypassed_calls == 2 and not cache.entries  # stale once the tower can change
            first.requires_grad_(False)
    finally:
        vision_cache.detach_vision_cache(model)


def test_the_same_image_in_the_towers_dtype_is_one_entry(tmp_path: Path) -> None:
    """Unsloth casts pixel_values to bf16 in generate only: both casts must find the same cached features."""
    path = build_tiny_model(tmp_path / "m", "qwen2_5_vl", image_size=SIZE)
    model, processor, _ = models.load_model(str(path), backend="hf", min_pixels=SIZE**2, max_pixels=SIZE**2)
    model = model.to(torch.bfloat16).requires_grad_(False)  # a frozen tower, as under LoRA
    batch = _batch(processor, [_image(0, 0)])
    pixels, grid = batch["pixel_values"], batch["image_grid_thw"]
    assert pixels.dtype == torch.float32
    # Without the cast the two fingerprints differ: the cache would encode and store the image twice.
    assert vision_cache._fingerprints(pixels, grid) != vision_cache._fingerprints(pixels.to(torch.bfloat16), grid)
    cache = vision_cache.attach_vision_cache(model)
    owner = vision_cache._vision_owner(model)
    with torch.no_grad():
        first = owner.get_image_features(pixels, grid).pooler_output[0]
        again = owner.get_image_features(pixels.to(torch.bfloat16), grid).pooler_output[0]
    assert (cache.misses, cache.hits) == (1, 1)
    assert torch.equal(first, again)
