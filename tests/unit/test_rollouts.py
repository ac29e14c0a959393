"""Rollout engine selection: the GRPOConfig fields each engine sets, and clear errors."""

from __future__ import annotations

import pytest

from medlib.training import grpo, rollouts


def test_engines_map_onto_grpo_config_fields() -> None:
    assert rollouts.rollout_config_fields("eager", backend="hf") == {}
    assert rollouts.rollout_config_fields("compiled", backend="hf", rollout_batch_steps=4) == {
        "cache_implementation": "static", "pad_to_multiple_of": 64, "steps_per_generation": 4}
    assert rollouts.rollout_config_fields("vllm", backend="unsloth", vllm_mode="server") == {
        "use_vllm": True, "vllm_mode": "server", "vllm_gpu_memory_utilization": 0.3}


@pytest.mark.parametrize(("engine", "backend", "batch_steps", "message"), [
    ("fast", "hf", 0, "rollout_engine: 'fast'"),
    ("compiled", "unsloth", 0, "Unsloth patches generation"),
    ("eager", "hf", -1, "rollout_batch_steps: -1"),
])
def test_bad_engine_settings_are_named(engine: str, backend: str, batch_steps: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rollouts.rollout_config_fields(engine, backend=backend, rollout_batch_steps=batch_steps)


def test_config_takes_the_engine_fields(tmp_path) -> None:
    fields = rollouts.rollout_config_fields("compiled", backend="hf", rollout_batch_steps=2)
    config = grpo.build_grpo_config(tmp_path, seed=0, per_device_train_batch_size=4, num_generations=4, **fields)
    assert config.cache_implementation == "static" and config.pad_to_multiple_of == 64
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
