"""Rollout engine selection: the GRPOConfig fields each engine sets, clear errors, and prompt padding."""

from __future__ import annotations

import pytest

from medlib.training import grpo, rollouts


def test_engines_map_onto_grpo_config_fields() -> None:
    assert rollouts.rollout_config_fields("eager", backend="hf") == {}
    assert rollouts.rollout_config_fields("compiled", backend="hf", rollout_batch_steps=4) == {
        "cache_implementation": "static", "steps_per_generation": 4}


@pytest.mark.parametrize(("engine", "backend", "batch_steps", "message"), [
    ("fast", "hf", 0, "rollout_engine: 'fast'"),
    ("vllm", "unsloth", 0, "rollout_engine: 'vllm' is not offered"),
    ("compiled", "unsloth", 0, "Unsloth patches generation"),
    ("eager", "hf", -1, "rollout_batch_steps: -1"),
])
def test_bad_engine_settings_are_named(engine: str, backend: str, batch_steps: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rollouts.rollout_config_fields(engine, backend=backend, rollout_batch_steps=batch_steps)


def test_config_takes_the_engine_fields(tmp_path) -> None:
    fields = rollouts.rollout_config_fields("compiled", backend="hf", rollout_batch_steps=2)
    config = grpo.build_grpo_config(tmp_path, seed=0, per_device_train_batch_size=4, num_generations=4, **fields)
    assert config.cache_implementation == "static" and config.pad_to_multiple_of is None  # medlib pads itself
    assert config.steps_per_generation == 2 and config.generation_batch_size == 8


def test_compiled_decoding_needs_a_static_cache() -> None:
    from transformers import GenerationConfig

    class Trainer:
        generation_config = GenerationConfig(max_new_tokens=4, disable_compile=True)

    with pytest.raises(ValueError, match="cache_implementation='static'"):
        rollouts.enable_compiled_decoding(Trainer())


def test_settings_come_from_a_notebook_namespace() -> None:
    settings = grpo.settings_from({"rollout_engine": "compiled", "max_steps": 7, "unrelated": 1})
    assert settings.rollout_engine == "compiled" and settings.max_steps == 7


def test_batch_steps_count_optimizer_steps_under_gradient_accumulation(tmp_path) -> None:
    fields = rollouts.rollout_config_fields("eager", backend="hf", rollout_batch_steps=2, gradient_accumulation_steps=3)
    assert fields == {"steps_per_generation": 6}  # TRL counts micro-batches
    config = grpo.build_grpo_config(tmp_path, seed=0, per_device_train_batch_size=4, num_generations=4,
                                    gradient_accumulation_steps=3, **fields)
    # One generation batch = 2 optimizer steps × 3 micro-batches × 4 completions.
    assert config.generation_batch_size == 24


def test_generation_prompts_are_padded_to_the_multiple_and_the_padding_dropped() -> None:
    """TRL 1.15 does not pad generation prompts (1.16 does): medlib's wrapper does it for both."""
    import torch

    seen = {}

    def generate(**kwargs):
        seen.update(kwargs)
        ids = kwargs["input_ids"]
        return torch.cat([ids, torch.full((ids.shape[0], 3), 9)], dim=1)  # prompt + 3 new tokens

    wrapped = rollouts.padded_generate(generate, pad_token_id=0, multiple=8)
    input_ids = torch.tensor([[5, 6, 7], [1, 5, 6]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    out = wrapped(input_ids=input_ids, attention_mask=mask, mm_token_type_ids=torch.ones_like(input_ids),
                  pixel_values=torch.zeros(4, 6))
    assert seen["input_ids"].shape == (2, 8) and seen["attention_mask"][:, :5].sum() == 0
    assert seen["mm_token_type_ids"][:, :5].sum() == 0 and seen["pixel_values"].shape == (4, 6)
    assert torch.equal(out, torch.cat([input_ids, torch.full((2, 3), 9)], dim=1))
    assert wrapped(input_ids=torch.ones(1, 8, dtype=torch.long)).shape == (1, 11)  # already a multiple


def test_padded_prompts_give_the_same_greedy_tokens(tmp_path) -> None:
    """Extra left padding (masked) leaves a real Qwen2.5-VL's greedy tokens unchanged."""
    import torch
    from transformers import AutoModelForImageTextToText

    from medlib.models.tiny import build_tiny_model

    model = AutoModelForImageTextToText.from_pretrained(build_tiny_model(tmp_path / "m", "qwen2_5_vl")).eval()
    torch.manual_seed(0)
    input_ids = torch.randint(10, 200, (2, 7))
    mask = torch.ones_like(input_ids)
    mask[1, :2] = 0
    options = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    plain = model.generate(input_ids=input_ids, attention_mask=mask, **options)
    padded = rollouts.padded_generate(model.generate, pad_token_id=0, multiple=16)(
        input_ids=input_ids, attention_mask=mask, **options)
    assert torch.equal(plain, padded)
