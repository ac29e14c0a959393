"""GRPO rollout engines: TRL's eager generate, or compiled static-cache decoding.

- `eager`: TRL's own `model.generate` with a dynamic KV cache (TRL turns compilation off). On the
  Unsloth backend this is Unsloth's `generate` (a static cache, compilation off).
- `compiled`: a static KV cache and a `torch.compile`d decoding step (transformers' generation
  compiles the one-token forward once and reuses it every step). Pays a one-off compile (≈20 s for
  the tiny model on CPU), then each decoding step skips most Python overhead. transformers+peft
  backend only: Unsloth patches generation itself. medlib left-pads each generation batch to a
  multiple of 64 tokens itself, so the static cache rarely grows (each growth recompiles): TRL 1.15
  (the GPU version set) ignores `pad_to_multiple_of` for generation prompts, 1.16 applies it.

vLLM rollouts are not offered: vLLM is not in either version set, and Unsloth's shared-vLLM path
needs `fast_inference=True` at load, which is not wired for Qwen-VL here; neither could be tested.

`rollout_batch_steps` generates the completions of that many optimizer steps in one batched
`generate` call (TRL's `steps_per_generation`, which counts micro-batches, is that times
`gradient_accumulation_steps`); TRL corrects the later steps' staleness with importance sampling.
"""
from __future__ import annotations

import functools
from typing import Any

ROLLOUT_ENGINES = ("eager", "compiled")
COMPILED_PAD_MULTIPLE = 64


def rollout_config_fields(engine: str, *, backend: str, rollout_batch_steps: int = 0,
                          gradient_accumulation_steps: int = 1) -> dict[str, Any]:
    """GRPOConfig fields that select the rollout engine and the generation batch."""
    if engine == "vllm":
        raise ValueError("rollout_engine: 'vllm' is not offered (vLLM is in neither version set and Unsloth's "
                         "fast_inference path is not wired for Qwen-VL); use eager or compiled")
    if engine not in ROLLOUT_ENGINES:
        raise ValueError(f"rollout_engine: {engine!r} is not one of {', '.join(ROLLOUT_ENGINES)}")
    if engine == "compiled" and backend == "unsloth":
        raise ValueError("rollout_engine: 'compiled' is for the hf backend; Unsloth patches generation itself "
                         "(use 'eager' with Unsloth, or backend: hf)")
    if rollout_batch_steps < 0:
        raise ValueError(f"rollout_batch_steps: {rollout_batch_steps} must be >= 0 (0: one generation per step)")
    fields: dict[str, Any] = {}
    if engine == "compiled":
        fields["cache_implementation"] = "static"
    if rollout_batch_steps > 0:
        fields["steps_per_generation"] = rollout_batch_steps * gradient_accumulation_steps
    return fields


def pad_left(tensor: Any, extra: int, value: int) -> Any:
    """`tensor` (batch × length) with `extra` columns of `value` in front."""
    import torch

    if extra == 0:
        return tensor
    return torch.cat([tensor.new_full((tensor.shape[0], extra), value), tensor], dim=1)


def padded_generate(generate: Any, pad_token_id: int, multiple: int = COMPILED_PAD_MULTIPLE) -> Any:
    """Wrap `generate` so prompts arrive left-padded to a multiple of `multiple`; the output drops that padding.

    Every per-token input (input_ids, attention_mask, mm_token_type_ids, ...) gets the same masked
    columns in front, so positions and tokens are unchanged; TRL slices completions at its own prompt length.
    """
    @functools.wraps(generate)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        input_ids = kwargs.get("input_ids")
        if args or input_ids is None:
            return generate(*args, **kwargs)
        length = input_ids.shape[1]
        extra = -length % multiple
        if extra:
            for name, value in list(kwargs.items()):
                if hasattr(value, "shape") and value.dim() == 2 and value.shape == input_ids.shape:
                    kwargs[name] = pad_left(value, extra, pad_token_id if name == "input_ids" else 0)
        output = generate(**kwargs)
        return output[:, extra:] if extra else output

    wrapper.medlib_padded = True
    return wrapper


def enable_compiled_decoding(trainer: Any) -> None:
    """Let the trainer's `generate` compile its static-cache decoding step, on any device; pad its prompts."""
    from transformers import CompileConfig

    config = trainer.generation_config
    if config.cache_implementation != "static":
        raise ValueError("compiled decoding needs GRPOConfig(cache_implementation='static')")
    compile_config = CompileConfig()  # fullgraph off: Qwen-VL's rope-index code may break the graph
    compile_config._compile_all_devices = True  # transformers only auto-compiles on accelerators otherwise
    config.compile_config = compile_config
    config.disable_compile = False
    model = getattr(trainer, "model", None)
    if model is not None and not getattr(model.generate, "medlib_padded", False):
        model.generate = padded_generate(model.generate, trainer.processing_class.tokenizer.pad_token_id)
