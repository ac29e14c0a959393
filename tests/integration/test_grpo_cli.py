"""`medlib train grpo` in one process, with compiled static-cache rollouts generated two steps at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from medlib import models
from medlib.data import synthetic
from medlib.models.tiny import build_tiny_model
from medlib.training import rollouts

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def test_train_grpo_with_compiled_batched_rollouts(tmp_path: Path) -> None:
    build_tiny_model(tmp_path / "base-model")
    synthetic.ensure_dataset(tmp_path / "data", sizes={"train": 32, "validation": 4, "test": 4})
    grpo = {"init_checkpoint": tmp_path / "base-model", "max_steps": 4, "per_device_train_batch_size": 8,
            "num_generations": 4, "max_completion_length": 8, "logging_steps": 1, "max_train_samples": 32,
            "rollout_engine": "compiled", "rollout_batch_steps": 2}
    common = {"runs_dir": tmp_path / "runs", "data_dir": tmp_path / "data", "model_id": tmp_path / "base-model"}
    items = [f"common.{k}={v}" for k, v in common.items()] + [f"grpo.{k}={v}" for k, v in grpo.items()]
    command = [sys.executable, "-m", "medlib", "train", "grpo", "params/tiny.yaml",
               *[a for i in items for a in ("--set", i)]]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[medlib] grpo: 4 steps" in done.stdout
    summary = json.loads((tmp_path / "runs" / "grpo" / "result.json").read_text())
    assert summary["global_step"] == 4 and summary["rollout_engine"] == "compiled"
    profile_rewards = yaml.safe_load((ROOT / "params" / "tiny.yaml").read_text())["grpo"]["reward_functions"]
    assert {f"rewards/{name}/mean" for name in profile_rewards} | {"reward"} <= set(summary["rewards"])
    generated_at = [e["step"] for e in summary["log_history"] if "completions/mean_length" in e]
    assert generated_at == [1, 3]  # one generation batch serves two optimizer steps
    assert (tmp_path / "runs" / "grpo" / "final" / "model.safetensors").exists()


class _Holder:
    """Stands in for a trainer: the one attribute enable_compiled_decoding reads."""

    def __init__(self, generation_config) -> None:
        self.generation_config = generation_config


def test_compiled_decoding_matches_eager_greedy_tokens(tmp_path: Path) -> None:
    from transformers import GenerationConfig

    model, processor, _ = models.load_model(str(build_tiny_model(tmp_path / "m")), backend="hf")
    torch.manual_seed(0)
    input_ids = torch.randint(10, 200, (3, 12))
    common = {"max_new_tokens": 10, "do_sample": False, "pad_token_id": processor.tokenizer.pad_token_id,
              "eos_token_id": None}
    eager = model.generate(input_ids=input_ids, generation_config=GenerationConfig(**common, disable_compile=True))
    holder = _Holder(GenerationConfig(**common, cache_implementation="static", disable_compile=True))
    rollouts.enable_compiled_decoding(holder)
    assert holder.generation_config.disable_compile is False
    compiled = model.generate(input_ids=input_ids, generation_config=holder.generation_config)
    assert torch.equal(eager, compiled)


def test_keep_best_heldout_ends_on_the_starting_weights_when_no_step_beats_them(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    base = build_tiny_model(tmp_path / "base-model")
    synthetic.ensure_dataset(tmp_path / "data", sizes={"train": 16, "validation": 4, "test": 4})
    # A random-init model answers nothing in format, so every held-out step scores 0: a tie, and the earliest
    # step (0, the starting checkpoint) is the one kept although the weights moved.
    grpo = {"init_checkpoint": base, "max_steps": 3, "per_device_train_batch_size": 8, "num_generations": 4,
            "max_completion_length": 8, "logging_steps": 1, "max_train_samples": 16, "learning_rate": 0.01,
            "generation_eval_steps": 2, "generation_eval_samples": 4, "keep_best_heldout": True}
    common = {"runs_dir": tmp_path / "runs", "data_dir": tmp_path / "data", "model_id": base}
    items = [f"common.{k}={v}" for k, v in common.items()] + [f"grpo.{k}={v}" for k, v in grpo.items()]
    command = [sys.executable, "-m", "medlib", "train", "grpo", "params/tiny.yaml",
               *[a for i in items for a in ("--set", i)]]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "keep_best_heldout ends on step 0" in done.stdout
    run = tmp_path / "runs" / "grpo"
    summary = json.loads((run / "result.json").read_text())
    assert [e["heldout/reward"] for e in summary["log_history"] if "heldout/reward" in e] == [0.0, 0.0, 0.0]
    assert summary["heldout_best"] == {"step": 0, "heldout_reward": 0.0, "last_step": 3,
                                       "last_heldout_reward": 0.0, "restored": True}
    assert max(e.get("grad_norm", 0.0) for e in summary["log_history"]) > 0  # training did move the weights
    start, final = load_file(str(base / "model.safetensors")), load_file(str(run / "final" / "model.safetensors"))
    assert set(start) == set(final) and all(torch.equal(start[k], final[k]) for k in start)
    assert not (run / "heldout_best.safetensors").exists() and not (run / "heldout_best.json").exists()
