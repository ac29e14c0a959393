"""GRPO rollout engines: TRL's eager generate, compiled static-cache decoding, or vLLM.

- `eager`: TRL's own `model.generate` with a dynamic KV cache (TRL turns compilation off).
- `compiled`: a static KV cache and a `torch.compile`d decoding step (transformers' generation
  compiles the one-token forward once and reuses it every step). Pays a one-off compile (≈20 s for
  the tiny model on CPU), then each decoding step skips most Python overhead. transformers+peft
  backend only: Unsloth patches generation itself.
- `vllm`: TRL's vLLM rollouts (`use_vllm`, colocate or server); needs the vllm package and a GPU,
  not exercised by this repository's tests.

`rollout_batch_steps` generates the completions of that many optimizer steps in one batched
`generate` call (TRL's `steps_per_generation`, which counts micro-batches, is that times
`gradient_accumulation_steps`); TRL corrects the later steps' staleness with importance sampling.
"""
from __future__ import annotations

from typing import Any

ROLLOUT_ENGINES = ("eager", "compiled", "vllm")
COMPILED_PAD_MULTIPLE = 64


def rollout_config_fields(engine: str, *, backend: str, rollout_batch_steps: int = 0,
                          gradient_accumulation_steps: int = 1, vllm_mode: str = "colocate",
                          vllm_gpu_memory_utilization: float = 0.3) -> dict[str, Any]:
    """GRPOConfig fields that select the rollout engine and the generation batch."""
    if engine not in ROLLOUT_ENGINES:
        raise ValueError(f"rollout_engine: {engine!r} is not one of {', '.join(ROLLOUT_ENGINES)}")
    if engine == "compiled" and backend == "unsloth":
        raise ValueError("rollout_engine: 'compiled' is for the hf backend; Unsloth patches generation itself "
                         "(use 'eager' with Unsloth, or backend: hf)")
    if rollout_batch_steps < 0:
        raise ValueError(f"rollout_batch_steps: {rollout_batch_steps} must be >= 0 (0: one generation per step)")
    fields: dict[str, Any] = {}
    if engine == "compiled":
        # Prompt lengths rounded up to a multiple of 64: the static cache then rarely has to grow,
        # and each growth is a recompilation of the decoding step.
        fields.update(cache_implementation="static", pad_to_multiple_of=COMPILED_PAD_MULTIPLE)
    if engine == "vllm":
        fields.update(use_vllm=True, vllm_mode=vllm_mode, vllm_gpu_memory_utilization=vllm_gpu_memory_utilization)
    if rollout_batch_steps > 0:
        fields["steps_per_generation"] = rollout_batch_steps * gradient_accumulation_steps
    return fields


def enable_compiled_decoding(trainer: Any) -> None:
    """Let the trainer's `generate` compile its static-cache decoding step, on any device."""
    from transformers import CompileConfig

    config = trainer.generation_config
    if config.cache_implementation != "static":
        raise ValueError("compiled decoding needs GRPOConfig(cache_implementation='static')")
    compile_config = CompileConfig()  # fullgraph off: Qwen-VL's rope-index code may break the graph
    compile_config._compile_all_devices = True  # transformers only auto-compiles on accelerators otherwise
    config.compile_config = compile_config
    config.disable_compile = False
