"""The training guards stop each planted silent failure by name, and pass an honest start (`medlib doctor`)."""
from __future__ import annotations

import pytest
import torch

from medlib.data import synthetic
from medlib.training import grpo, guards, sft
from medlib.training.doctor import doctor_stage
from medlib.training.params import GRPOParams, SFTParams


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, one_torch_thread):
    """Synthetic presence/count splits and a tiny model folder shared by every test."""
    work = tmp_path_factory.mktemp("guards")
    synthetic.ensure_dataset(work / "data", sizes={"train": 16, "validation": 4, "test": 4}, seed=0, image_size=112)
    return work


def settings(cls, workdir, **overrides):
    """Stage parameters on the tiny model and the small synthetic set (no evaluation, no checkpoints)."""
    values = dict(experiment="guards", seed=0, data_dir=str(workdir / "data"), image_size=112,
                  runs_dir=str(workdir / "runs"), results_dir=str(workdir / "results"),
                  model_id=str(workdir / "base-model"), tiny_arch="qwen2_5_vl", finetune_mode="lora",
                  per_device_train_batch_size=4, max_steps=1, save_steps=0, resume=False, vision_cache_gib=0.0,
                  gradient_checkpointing=False)
    if cls is SFTParams:
        values.update(eval_steps=0, gradient_accumulation_steps=1)
    else:
        values.update(num_generations=2, max_completion_length=8, max_train_samples=8)
    values.update(overrides)
    return cls(**values)


def test_doctor_passes_an_honest_lora_sft_start(workdir):
    report = doctor_stage("sft", vars(settings(SFTParams, workdir)))
    status = {row["guard"]: row["status"] for row in report}
    assert status == {"trainable_parameters": "pass", "loss_mask": "pass", "image_tokens": "pass",
                      "prompt_parity": "pass"}
    counts = report[0]["values"]
    assert 0 < counts["trainable"] == counts["trainable_lora"] and counts["trainable_vision"] == 0
    mask = next(row for row in report if row["guard"] == "loss_mask")["values"]
    assert 0 < mask["supervised_fraction"] < 0.5
    assert next(row for row in report if row["guard"] == "image_tokens")["values"]["expected"] == [16] * 4


def test_planted_prompt_supervision_stops_sft(workdir, monkeypatch):
    make_trainer = sft.make_sft_trainer

    def supervising_the_prompt(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        collate = trainer.data_collator

        def collator(rows):
            batch = collate(rows)
            batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # the classic bug
            return batch

        trainer.data_collator = collator
        return trainer

    monkeypatch.setattr(sft, "make_sft_trainer", supervising_the_prompt)
    with pytest.raises(guards.GuardFailed, match=r"guard loss_mask failed: .*prompt tokens carry loss"):
        sft.train(settings(SFTParams, workdir))


def test_planted_unfrozen_vision_tower_stops_sft(workdir, monkeypatch):
    build = sft.trainable_model

    def vision_unfrozen(*args, **kwargs):
        model, *rest = build(*args, **kwargs)
        for name, parameter in model.named_parameters():
            if "visual" in name:
                parameter.requires_grad_(True)
        return (model, *rest)

    monkeypatch.setattr(sft, "trainable_model", vision_unfrozen)
    with pytest.raises(guards.GuardFailed, match=r"guard trainable_parameters failed: .*vision tower trains"):
        sft.train(settings(SFTParams, workdir))


def test_planted_image_token_mismatch_stops_sft(workdir, monkeypatch):
    make_trainer = sft.make_sft_trainer

    def cutting_an_image_token(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        collate = trainer.data_collator

        def collator(rows):
            batch = collate(rows)
            image_pad = trainer.processing_class.tokenizer.convert_tokens_to_ids("<|image_pad|>")
            first = int((batch["input_ids"][0] == image_pad).nonzero()[0])
            batch["input_ids"][0, first] = trainer.processing_class.tokenizer.pad_token_id  # as if truncated
            return batch

        trainer.data_collator = collator
        return trainer

    monkeypatch.setattr(sft, "make_sft_trainer", cutting_an_image_token)
    with pytest.raises(guards.GuardFailed, match=r"guard image_tokens failed: .*row 0 has 15 image tokens.*expects 16"):
        sft.train(settings(SFTParams, workdir))


@pytest.fixture(scope="module")
def trained_adapter(workdir):
    """A LoRA adapter on the language model whose weights are not zero (as after SFT)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from medlib.data.processing import load_processor
    from medlib.models import LoraParams, lora_target_regex
    from medlib.models.tiny import ensure_tiny_model

    base = ensure_tiny_model(workdir / "base-model", "qwen2_5_vl", image_size=112, seed=0)
    model = AutoModelForImageTextToText.from_pretrained(str(base), dtype=torch.float32)
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=lora_target_regex(LoraParams()), init_lora_weights=False)
    adapter = workdir / "sft-adapter"
    get_peft_model(model, config).save_pretrained(adapter)
    load_processor(str(base)).save_pretrained(adapter)
    return adapter


def test_doctor_passes_grpo_whose_rollout_model_carries_the_adapter(workdir, trained_adapter):
    report = doctor_stage("grpo", vars(settings(GRPOParams, workdir, init_checkpoint=str(trained_adapter))))
    rollout = next(row for row in report if row["guard"] == "rollout_adapter")
    assert rollout["status"] == "pass" and rollout["values"]["max_logit_difference"] > 1e-6
    assert {row["status"] for row in report} == {"pass"}


def test_planted_adapter_missing_from_rollouts_stops_grpo(workdir, trained_adapter, monkeypatch):
    make_trainer = grpo.make_grpo_trainer

    def rollouts_without_adapter(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        trainer.model.base_model.disable_adapter_layers()  # generation would run on the base weights
        return trainer

    monkeypatch.setattr(grpo, "make_grpo_trainer", rollouts_without_adapter)
    with pytest.raises(guards.GuardFailed, match=r"guard rollout_adapter failed: .*LoRA layers are disabled"):
        grpo.train(settings(GRPOParams, workdir, init_checkpoint=str(trained_adapter)))


def test_full_fine_tuning_with_a_frozen_tensor_fails(workdir):
    from transformers import AutoModelForImageTextToText

    from medlib.models.tiny import ensure_tiny_model

    model = AutoModelForImageTextToText.from_pretrained(str(ensure_tiny_model(workdir / "base-model", "qwen2_5_vl",
                                                                              image_size=112, seed=0)))
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    full = settings(SFTParams, workdir, finetune_mode="full")
    assert guards.check_trainable(model, full)["status"] == "pass"
    next(model.parameters()).requires_grad_(False)
    assert guards.check_trainable(model, full)["status"] == "fail"
