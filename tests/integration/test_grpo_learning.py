"""The real TRL GRPOTrainer on the tiny model, from a tiny SFT checkpoint trained in the fixture."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import yaml

from medlib import data, models
from medlib.data import synthetic
from medlib.pipeline import workspace
from medlib.training import grpo, sft

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 112
SFT_STEPS = 150
WINDOW = 10  # logged steps averaged at each end of the run


def _tiny_grpo_block() -> dict:
    """The `grpo:` block of params/tiny.yaml, whose settings this test holds to its promise."""
    return yaml.safe_load((REPO / "params" / "tiny.yaml").read_text())["grpo"]


def _load(path: Path):
    """Tiny checkpoint prepared for full fine-tuning."""
    model, processor, backend = models.load_model(str(path), backend="hf", full_finetuning=True,
                                                  min_pixels=IMAGE_SIZE**2, max_pixels=IMAGE_SIZE**2)
    return models.prepare_for_training(model, backend, "full", models.LoraParams()), processor


@pytest.fixture(scope="module")
def sft_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """(data dir, SFT checkpoint, seconds): full fine-tuning on synthetic presence/count questions."""
    started = time.perf_counter()
    root = tmp_path_factory.mktemp("grpo")
    workspace.seed_everything(0)
    torch.set_num_threads(1)
    base = workspace.ensure_base_model(str(root / "base"), "qwen2_5_vl", image_size=IMAGE_SIZE, seed=0)
    synthetic.make_split(root / "data", "train", 800, seed=0, image_size=IMAGE_SIZE)
    records = data.read_records(root / "data" / "train.jsonl")
    model, processor = _load(Path(base))
    config = sft.build_sft_config(root / "sft", backend="hf", seed=0, learning_rate=2e-3, lr_scheduler_type="cosine",
                                  warmup_steps=0.05, max_steps=SFT_STEPS, per_device_train_batch_size=16,
                                  gradient_checkpointing=False, save_strategy="no", logging_steps=50,
                                  disable_tqdm=True)
    rows = data.sft_rows(records[:-400], root / "data", image_size=IMAGE_SIZE)
    trainer = sft.make_sft_trainer(model, processor, "hf", config, data.to_dataset(rows))
    trainer.train()
    models.save_checkpoint(trainer.model, processor, root / "sft_final")
    return root / "data", root / "sft_final", time.perf_counter() - started


def test_grpo_raises_the_mean_total_reward(sft_checkpoint: tuple[Path, Path, float], tmp_path: Path) -> None:
    data_dir, checkpoint, sft_seconds = sft_checkpoint
    block = _tiny_grpo_block()
    started = time.perf_counter()
    model, processor = _load(checkpoint)
    records = data.read_records(data_dir / "train.jsonl")[-400:]  # prompts SFT did not see
    dataset = data.to_dataset(data.grpo_rows(records, data_dir, image_size=IMAGE_SIZE))
    functions, weights = grpo.reward_setup(block["reward_functions"], block["reward_weights"],
                                           block.get("reward_recipes"))
    config = grpo.build_grpo_config(
        tmp_path / "grpo", seed=0, reward_weights=weights, learning_rate=block["learning_rate"],
        lr_scheduler_type=block.get("lr_scheduler_type", "constant"), max_steps=block["max_steps"],
        per_device_train_batch_size=block["per_device_train_batch_size"], num_generations=block["num_generations"],
        max_completion_length=block["max_completion_length"], temperature=block["temperature"], beta=block["beta"],
        gradient_checkpointing=False, logging_steps=1, save_strategy="no", disable_tqdm=True)
    trainer = grpo.make_grpo_trainer(model, processor, config, dataset, functions)
    trainer.train()
    series = grpo.reward_series(trainer.state.log_history)
    totals = series[grpo.TOTAL_REWARD_KEY][1]
    first, last = sum(totals[:WINDOW]) / WINDOW, sum(totals[-WINDOW:]) / WINDOW
    print(f"SFT {sft_seconds:.0f} s, GRPO {time.perf_counter() - started:.0f} s; "
          f"mean total reward first {first:.3f} → last {last:.3f}")
    assert len(totals) == block["max_steps"]
    assert {f"rewards/{f.__name__}/mean" for f in functions} <= set(series)
    assert last > first
