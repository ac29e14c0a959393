"""One backend's part of bench/gpu_check.py, in its own process: batched generation, SFT steps, GRPO steps.

    python bench/gpu_check_child.py unsloth|hf KNOBS_JSON OUT_JSON

The backend is activated before anything imports transformers, TRL or peft (Unsloth must patch them
first; the result records what was imported before it). Each phase is timed with its own peak
memory; a failed phase is recorded with its error and the next one still runs. The result is
rewritten after every phase, so a run stopped by the time budget keeps what it finished.
"""
from __future__ import annotations

import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

CRITICAL = ("transformers", "trl", "peft")  # what Unsloth warns about when imported before it (unsloth/_gpu_init.py)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_gib() -> float | None:
    """Peak GPU memory of the phase (None on CPU, where no per-phase peak exists)."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def _clock():
    """A TrainerCallback that records the wall time at the end of every optimizer step."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            self.ends.append(time.perf_counter())

    return StepClock()


def _step_seconds(clock: Any) -> tuple[float, float | None]:
    """First step's seconds (compilation included) and the mean of the later steps."""
    times = [clock.ends[0] - clock.start] + [b - a for a, b in zip(clock.ends, clock.ends[1:])]
    return times[0], (sum(times[1:]) / len(times[1:]) if len(times) > 1 else None)


def generate(state: dict[str, Any], knobs: dict[str, Any]) -> dict[str, Any]:
    """Greedy batched generation: Unsloth's `for_inference` path, or the hf backend's static-cache compiled decoding."""
    import torch

    from medlib import data, models
    from medlib.evaluation import inference

    model, processor, backend = state["model"], state["processor"], state["backend"]
    records = data.read_records(Path(knobs["data_dir"]) / "test.jsonl")
    models.for_inference(model, backend)
    model.generation_config.min_new_tokens = knobs["new_tokens"]  # every answer the same length: equal work
    options = {"image_size": knobs["image_size"], "batch_size": knobs["gen_batch"], "progress": False,
               "max_new_tokens": knobs["new_tokens"], "checkpoint": "gpu-check",
               "cache_implementation": "auto" if backend == "unsloth" else "static"}
    started = time.perf_counter()
    inference.predict_records(model, processor, records, knobs["data_dir"], **options)  # warm-up: compiles
    _sync()
    first = time.perf_counter() - started
    started = time.perf_counter()
    predictions = inference.predict_records(model, processor, records, knobs["data_dir"], **options)
    _sync()
    seconds = time.perf_counter() - started
    model.generation_config.min_new_tokens = None
    if inference.unsloth_generates(model):
        decoding = "Unsloth generate: its own static cache, compilation off"
    else:
        decoding = "static cache, compiled" if torch.cuda.is_available() else "static cache (compiled on CUDA only)"
    return {"questions": len(records), "new_tokens": knobs["new_tokens"], "first_pass_s": first,
            "timed_pass_s": seconds, "tokens_per_s": len(records) * knobs["new_tokens"] / seconds,
            "decoding": decoding, "texts": [p["raw"] for p in predictions]}


def sft_steps(state: dict[str, Any], knobs: dict[str, Any]) -> dict[str, Any]:
    """LoRA SFT steps through medlib's config and trainer (Unsloth's collator, or TRL's)."""
    from trl import SFTConfig

    from medlib import data, models
    from medlib.models.vision_cache import cache_for_training
    from medlib.training import sft
    from medlib.training.params import SFTParams
    from medlib.training.trl_config import trl_fields

    model, processor, backend = state["model"], state["processor"], state["backend"]
    lora = models.LoraParams(r=16, lora_alpha=32, lora_dropout=0.0)
    model = state["model"] = models.prepare_for_training(model, backend, "lora", lora, gradient_checkpointing=True)
    cache = cache_for_training(model, 4.0)
    batch = knobs["batch_size"]
    records = data.read_records(Path(knobs["data_dir"]) / "train.jsonl")[:batch * knobs["sft_steps"]]
    style = "messages" if backend == "unsloth" else "prompt_completion"
    rows = data.sft_rows(records, knobs["data_dir"], image_size=knobs["image_size"], style=style) * knobs["sft_epochs"]
    dataset = data.to_dataset(rows)
    params = SFTParams(learning_rate=knobs["sft_learning_rate"], lr_scheduler_type="constant", warmup_steps=0.0,
                       max_steps=len(rows) // batch, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                       logging_steps=1, eval_steps=0, save_steps=0, seed=0, report_to="none")
    config = sft.build_sft_config(Path(knobs["out"]) / backend / "sft", backend=backend,
                                  **trl_fields(params, SFTConfig))
    clock = _clock()
    trainer = sft.make_sft_trainer(model, processor, backend, config, dataset, callbacks=[clock])
    tokens = int(trainer.data_collator([dataset[i] for i in range(batch)])["attention_mask"].sum())
    trainer.train()
    _, losses = sft.log_series(trainer.state.log_history, "loss")
    first_step, step = _step_seconds(clock)
    return {"steps": len(clock.ends), "tokens_per_step": tokens, "first_step_s": first_step, "step_s": step,
            "tokens_per_s": tokens / step if step else None, "losses": losses,
            "finite": bool(losses) and all(math.isfinite(x) for x in losses),
            "falling": len(losses) > 1 and losses[-1] < losses[0],
            "vision_cache": cache.stats() if cache else None, "trainer_config": trainer.medlib_config}


def grpo_steps(state: dict[str, Any], knobs: dict[str, Any]) -> dict[str, Any]:
    """GRPO steps with medlib's recipe (GRPOParams defaults: format + accuracy rewards, dapo, no KL)."""
    from trl import GRPOConfig

    from medlib import data, models
    from medlib.models.vision_cache import cache_for_training, detach_vision_cache
    from medlib.training import grpo, rollouts
    from medlib.training.params import GRPOParams
    from medlib.training.trl_config import trl_fields

    model, processor, backend = state["model"], state["processor"], state["backend"]
    lora = models.LoraParams(r=16, lora_alpha=32, lora_dropout=0.0)
    model = state["model"] = models.prepare_for_training(model, backend, "lora", lora, gradient_checkpointing=True)
    detach_vision_cache(model)  # SFT's cache off: GRPO's hit rate is its own
    cache = cache_for_training(model, 4.0)
    engine = knobs["grpo_engine"] if backend == "hf" else "eager"
    params = GRPOParams(max_steps=knobs["grpo_steps"], per_device_train_batch_size=knobs["grpo_batch"],
                        num_generations=knobs["num_generations"], max_completion_length=knobs["max_completion_length"],
                        logging_steps=1, save_steps=0, seed=0, report_to="none", rollout_engine=engine)
    prompts = knobs["grpo_steps"] * knobs["grpo_batch"] // knobs["num_generations"]
    records = data.read_records(Path(knobs["data_dir"]) / "train.jsonl")[:prompts]
    dataset = data.to_dataset(data.grpo_rows(records, knobs["data_dir"], image_size=knobs["image_size"],
                                             answer_format=params.answer_format))
    functions, weights = grpo.reward_setup(params.reward_functions, params.reward_weights, params.reward_recipes)
    engine_fields = rollouts.rollout_config_fields(engine, backend=backend, rollout_batch_steps=params.rollout_batch_steps,
                                                   gradient_accumulation_steps=params.gradient_accumulation_steps)
    config = grpo.build_grpo_config(Path(knobs["out"]) / backend / "grpo",
                                    **{**trl_fields(params, GRPOConfig), "reward_weights": weights, **engine_fields})
    clock = _clock()
    trainer = grpo.make_grpo_trainer(model, processor, config, dataset, functions, callbacks=[clock], backend=backend)
    if engine == "compiled":
        rollouts.enable_compiled_decoding(trainer)
    trainer.train()
    history = trainer.state.log_history
    losses = [float(e["loss"]) for e in history if "loss" in e and "step" in e]
    rewards = {key: [float(e[key]) for e in history if key in e]
               for key in sorted({k for e in history for k in e if k.startswith("rewards/") and k.endswith("/mean")})}
    first_step, step = _step_seconds(clock)
    generated = sum(e["completions/mean_length"] * trainer.args.generation_batch_size for e in history
                    if "completions/mean_length" in e and e.get("step", 0) > 1)
    later = clock.ends[-1] - clock.ends[0] if len(clock.ends) > 1 else None
    return {"steps": len(clock.ends), "rollout_engine": engine, "first_step_s": first_step, "step_s": step,
            "tokens_per_s": generated / later if later else None, "losses": losses,
            "finite": bool(losses) and all(math.isfinite(x) for x in losses), "rewards": rewards,
            "reward": [float(e["reward"]) for e in history if "reward" in e],
            "vision_cache": cache.stats() if cache else None, "trainer_config": trainer.medlib_config}


PHASES = {"generate": generate, "sft": sft_steps, "grpo": grpo_steps}


def main() -> None:
    """Activate the backend first, load the model once, run the phases in order, write the result after each."""
    backend_name, knobs_json, out_json = sys.argv[1:4]
    imported_before = [name for name in CRITICAL if name in sys.modules]
    from medlib.models.loading import activate_backend

    backend = activate_backend(backend_name)  # Unsloth before transformers, TRL and peft
    import torch

    from medlib import models
    from medlib.pipeline import workspace

    knobs = json.loads(knobs_json)
    result: dict[str, Any] = {"backend": backend, "imported_before_backend": imported_before, "phases": {}}
    workspace.seed_everything(0)
    pixels = knobs["image_size"] ** 2
    started = time.perf_counter()
    model, processor, backend = models.load_model(knobs["model"], backend=backend, gradient_checkpointing=True,
                                                  min_pixels=pixels, max_pixels=pixels)
    result["load_s"] = time.perf_counter() - started
    state = {"model": model, "processor": processor, "backend": backend}
    for name in knobs["phases"]:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            row = {"status": "ok", **PHASES[name](state, knobs)}
        except Exception as error:  # recorded, and the next phase still runs: one run shows every failure
            row = {"status": "failed", "error": f"{type(error).__name__}: {error}"[:500],
                   "traceback": traceback.format_exc()[-3000:]}
        row.update(wall_s=time.perf_counter() - started, peak_gib=_peak_gib())
        result["phases"][name] = row
        Path(out_json).write_text(json.dumps(result, indent=1, default=str))
        print(f"[gpu-check] {backend} {name}: {row['status']} in {row['wall_s']:.1f} s", flush=True)


if __name__ == "__main__":
    main()
