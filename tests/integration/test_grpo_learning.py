"""GRPO with the tiny profile's recipe, from a tiny SFT checkpoint trained in the fixture: properties, not numbers.

CPU results differ between processors (docs in README), so nothing here pins a value: the format stays learnt,
presence stays above chance, the held-out curve does not end below its start, and GRPO is not worse than the SFT it starts
from beyond the 95% paired-bootstrap CI on held-out questions. (A gain over SFT holds only where SFT left counting
poor, which depends on the seed and the processor: README, "GRPO on the tiny profile".)
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import yaml

from medlib import data, models
from medlib.data import synthetic
from medlib.evaluation import inference, metrics
from medlib.evaluation.metrics import comparisons
from medlib.pipeline import workspace
from medlib.training import grpo, grpo_diagnostics, sft

pytestmark = pytest.mark.slow  # an SFT and the profile's GRPO: minutes on 2 cores

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 112
SFT_STEPS = 600  # as the profile (its other SFT settings are read from it): shorter runs leave presence at chance


def _tiny_grpo_block() -> dict:
    """The `grpo:` block of params/tiny.yaml, whose settings this test holds to its promise."""
    return yaml.safe_load((REPO / "params" / "tiny.yaml").read_text())["grpo"]


def _load(path: Path):
    """Tiny checkpoint prepared for full fine-tuning."""
    model, processor, backend = models.load_model(str(path), backend="hf", full_finetuning=True,
                                                  min_pixels=IMAGE_SIZE**2, max_pixels=IMAGE_SIZE**2)
    return models.prepare_for_training(model, backend, "full", models.LoraParams()), processor


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(root, data dir, SFT checkpoint): full fine-tuning on synthetic presence/count questions."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("grpo")
    workspace.seed_everything(0)
    base = workspace.ensure_base_model(str(root / "base"), "qwen2_5_vl", image_size=IMAGE_SIZE, seed=0)
    for split, n in (("train", 2000), ("validation", 64), ("test", 300)):
        synthetic.make_split(root / "data", split, n, seed=0, image_size=IMAGE_SIZE)
    model, processor = _load(Path(base))
    profile = yaml.safe_load((REPO / "params" / "tiny.yaml").read_text())["sft"]
    config = sft.build_sft_config(root / "sft", backend="hf", seed=0, learning_rate=profile["learning_rate"],
                                  lr_scheduler_type=profile["lr_scheduler_type"], warmup_steps=profile["warmup_steps"],
                                  max_steps=SFT_STEPS, per_device_train_batch_size=profile["per_device_train_batch_size"],
                                  gradient_checkpointing=False, save_strategy="no", logging_steps=50,
                                  disable_tqdm=True)
    rows = data.sft_rows(data.read_records(root / "data" / "train.jsonl"), root / "data", image_size=IMAGE_SIZE)
    trainer = sft.make_sft_trainer(model, processor, "hf", config, data.to_dataset(rows))
    trainer.train()
    models.save_checkpoint(trainer.model, processor, root / "sft_final")
    return root, root / "data", root / "sft_final"


def _predict(checkpoint: Path, data_dir: Path, name: str) -> list[dict]:
    """Greedy predictions of a checkpoint on the test split."""
    model, processor, _ = models.load_model(str(checkpoint), backend="hf", min_pixels=IMAGE_SIZE**2,
                                            max_pixels=IMAGE_SIZE**2)
    return inference.predict_records(model, processor, data.read_records(data_dir / "test.jsonl"), data_dir,
                                     checkpoint=name, image_size=IMAGE_SIZE, batch_size=32, max_new_tokens=24,
                                     progress=False)


def test_the_profile_recipe_learns_without_making_the_sft_model_worse(sft_run: tuple[Path, Path, Path]) -> None:
    root, data_dir, checkpoint = sft_run
    block = _tiny_grpo_block()
    settings = grpo.settings_from_params({
        **block, "experiment": "grpo-test", "seed": 0, "data_dir": str(data_dir), "image_size": IMAGE_SIZE,
        "runs_dir": str(root / "runs"), "results_dir": str(root / "results"), "model_id": str(checkpoint),
        "init_checkpoint": str(checkpoint), "backend": "hf", "resume": False, "report_to": "none"})
    started = time.perf_counter()
    summary = grpo.train(settings)
    seconds = time.perf_counter() - started
    series = grpo_diagnostics.diagnostic_series(summary["log_history"])
    heldout = series["heldout/reward"][1]
    heldout_format = series["heldout/format_valid"][1]
    assert summary["global_step"] == block["max_steps"]
    assert series["heldout/reward"][0][0] == 0 and series["heldout/reward"][0][-1] == block["max_steps"]
    for key in ("frac_reward_zero_std", "entropy", "completions/mean_length"):
        assert key in series, key

    predictions = {"sft": _predict(checkpoint, data_dir, "sft"), "grpo": _predict(Path(summary["checkpoint"]),
                                                                                   data_dir, "grpo")}
    scores = metrics.score_predictions(predictions["grpo"])
    presence = [p for p in predictions["grpo"] if p["task"] == "vqa_closed"]
    presence_ci = metrics.bootstrap_mean_ci([float(metrics.core._is_correct(p)) for p in presence])
    step = comparisons.stepwise_comparisons(predictions, ["sft", "grpo"], n_resamples=500)["grpo_vs_sft"]
    print(f"GRPO {seconds:.0f} s; held-out reward {heldout}; held-out format "
          f"{heldout_format}; presence {presence_ci['value']:.2f} [{presence_ci['low']:.2f}, "
          f"{presence_ci['high']:.2f}]; grpo_vs_sft {step}")
    assert min(heldout_format) >= 0.95 and scores["overall"]["format_valid"] >= 0.95  # the format stays learnt
    assert presence_ci["low"] > 0.5  # presence above chance (0.5)
    # The held-out curve ends where it started or higher. (It may dip first: on an SFT that never learnt
    # counting it fell 0.78 → 0.64 at step 20 and ended at 0.82; the old recipe ended 0.12 below its start.)
    assert heldout[-1] >= heldout[0] - 0.05
    for task, row in step.items():
        assert row["verdict"] != "worse", (task, row)  # not worse than SFT beyond the CI
