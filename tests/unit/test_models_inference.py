"""Backends, LoRA targeting, checkpoints (medlib.models) and batched generation (medlib.evaluation.inference)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText

from medlib import models
from medlib.data import load_record_images, prompts, read_records
from medlib.data.synthetic import make_split
from medlib.evaluation import inference
from medlib.models import LoraParams, lora_target_regex, prepare_for_training, save_checkpoint
from medlib.models.tiny import build_tiny_model

LANGUAGE_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
PREDICTION_KEYS = {"id", "task", "dataset", "checkpoint", "raw", "parsed", "parse_error", "answer"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2_5_vl", "qwen2_5_vl")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, list[dict], list[dict]]:
    """(data root, 24 train records, 8 test records whose questions all differ in length)."""
    root = tmp_path_factory.mktemp("data")
    kinds = ("presence", "count", "side")
    train = read_records(make_split(root, "train", 24, seed=1, question_types=kinds))
    test = read_records(make_split(root, "test", 8, seed=1, question_types=kinds))
    for number, record in enumerate(test):
        record["question"] += " Please answer." * number
    return root, train, test


@pytest.fixture
def fresh(tiny_dir):
    """A newly loaded (model, processor) that a test may modify."""
    model, processor, backend = models.load_model(str(tiny_dir), backend="hf", device="cpu")
    assert backend == "hf"
    return model, processor


@pytest.fixture(scope="module")
def trained(tiny_dir, data):
    """The tiny model after 30 full fine-tuning steps, so greedy outputs depend on the prompt."""
    root, train, _ = data
    model, processor, _ = models.load_model(str(tiny_dir), backend="hf", device="cpu")
    texts = [processor.apply_chat_template(prompts.training_messages(r), tokenize=False) for r in train]
    images = [load_record_images(r, root, 112) for r in train]
    processor.tokenizer.padding_side = "right"
    batches = [processor(text=texts[i:i + 8], images=images[i:i + 8], return_tensors="pt", padding=True)
               for i in range(0, len(texts), 8)]
    processor.tokenizer.padding_side = "left"
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    losses = []
    for step in range(30):
        batch = batches[step % len(batches)]
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2
    return model.eval(), processor


def linear_names(model, scope: str, leaves: set[str] | None = None) -> set[str]:
    return {name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and scope in name
            and (leaves is None or name.rsplit(".", 1)[-1] in leaves)}


def matched(model, regex: str) -> set[str]:
    return {name for name, _ in model.named_modules() if re.fullmatch(regex, name)}


# ---- backends --------------------------------------------------------------------------------------


def test_auto_backend_is_hf_without_unsloth(monkeypatch) -> None:
    if models.unsloth_available():
        pytest.skip("Unsloth is usable here")
    assert models.resolve_backend("auto") == "hf"
    assert models.resolve_backend("hf") == "hf"
    assert models.activate_backend("hf") == "hf"
    monkeypatch.setattr(models.loading, "unsloth_available", lambda: True)
    assert models.resolve_backend("auto") == "unsloth"


def test_unsloth_without_cuda_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(models.loading, "unsloth_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"needs CUDA and the unsloth package.*'hf'"):
        models.resolve_backend("unsloth")


def test_unknown_backend_is_named() -> None:
    with pytest.raises(ValueError, match="'vllm'"):
        models.resolve_backend("vllm")


def test_dtype_and_device(monkeypatch) -> None:
    assert models.resolve_dtype("auto", "cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert models.resolve_dtype("auto", "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # T4, V100
    assert models.resolve_dtype("auto", "cuda:1") == torch.float16
    assert models.resolve_dtype("float16") == torch.float16
    assert models.resolve_device("cpu") == "cpu"


# ---- LoRA targets ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen2_vl", "qwen3_vl"])
def arch_model(request, tmp_path_factory):
    model_dir = build_tiny_model(tmp_path_factory.mktemp(request.param) / "m", request.param)
    return AutoModelForImageTextToText.from_pretrained(model_dir)


def test_default_lora_targets_the_language_model_only(arch_model) -> None:
    expected = linear_names(arch_model, ".language_model.", LANGUAGE_TARGETS)
    assert len(expected) == 2 * len(LANGUAGE_TARGETS)  # two decoder layers
    assert matched(arch_model, lora_target_regex(LoraParams())) == expected
    vision = linear_names(arch_model, ".visual.blocks.")
    assert vision and not vision & matched(arch_model, lora_target_regex(LoraParams()))


def test_vision_switch_adds_the_vision_blocks(arch_model) -> None:
    language = linear_names(arch_model, ".language_model.", LANGUAGE_TARGETS)
    vision = linear_names(arch_model, ".visual.blocks.")
    assert len(vision) >= 8  # qkv, proj and the MLP of two blocks
    both = LoraParams(finetune_vision_layers=True)
    assert matched(arch_model, lora_target_regex(both)) == language | vision
    only_vision = LoraParams(finetune_vision_layers=True, finetune_language_layers=False)
    assert matched(arch_model, lora_target_regex(only_vision)) == vision


def test_lora_module_switches(arch_model) -> None:
    attention = LoraParams(finetune_mlp_modules=False)
    assert matched(arch_model, lora_target_regex(attention)) == linear_names(
        arch_model, ".language_model.", {"q_proj", "k_proj", "v_proj", "o_proj"})
    explicit = LoraParams(target_modules=["v_proj"])
    assert matched(arch_model, lora_target_regex(explicit)) == linear_names(arch_model, ".language_model.", {"v_proj"})
    with pytest.raises(ValueError, match="targets nothing"):
        lora_target_regex(LoraParams(finetune_attention_modules=False, finetune_mlp_modules=False))
    with pytest.raises(ValueError, match="targets nothing"):
        lora_target_regex(LoraParams(finetune_language_layers=False))


# ---- training modes and checkpoints ----------------------------------------------------------------


def test_lora_trains_only_language_model_adapters(fresh) -> None:
    model, _ = fresh
    peft_model = prepare_for_training(model, "hf", "lora", LoraParams(r=4, lora_alpha=8))
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 2 * len(LANGUAGE_TARGETS)  # lora_A and lora_B per target, two layers
    assert all("lora_" in name and ".language_model." in name for name in trainable)
    counts = models.count_parameters(peft_model)
    assert 0 < counts["trainable"] < counts["total"] / 10
    # An adapter model (GRPO after SFT) is kept as it is.
    assert prepare_for_training(peft_model, "hf", "lora", LoraParams()) is peft_model


def test_full_and_none_modes(fresh) -> None:
    model, _ = fresh
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    assert prepare_for_training(model, "hf", "none", LoraParams()) is model
    assert models.count_parameters(model)["trainable"] == 0
    full = prepare_for_training(model, "hf", "full", LoraParams())
    counts = models.count_parameters(full)
    assert counts["trainable"] == counts["total"] > 0
    with pytest.raises(ValueError, match="'qlora'"):
        prepare_for_training(model, "hf", "qlora", LoraParams())


def logits_of(model, processor, root: Path, records: list[dict]) -> torch.Tensor:
    inputs = inference.generation_inputs(processor, records, root, image_size=112, answer_format="plain",
                                         system_prompt=None)
    with torch.no_grad():
        return model(**inputs).logits


def test_lora_checkpoint_round_trip(fresh, tiny_dir, data, tmp_path: Path) -> None:
    model, processor = fresh
    root, _, test = data
    peft_model = prepare_for_training(model, "hf", "lora", LoraParams(r=4, lora_alpha=8)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # lora_B starts at zero: give the adapter an effect worth saving
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    before = logits_of(peft_model, processor, root, test[:2])
    with peft_model.disable_adapter():
        base = logits_of(peft_model, processor, root, test[:2])
    assert not torch.allclose(before, base, atol=1e-3)

    adapter_dir = save_checkpoint(peft_model, processor, tmp_path / "adapter")
    names = {p.name for p in adapter_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= names
    assert "model.safetensors" not in names
    assert models.is_adapter_dir(adapter_dir)
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_dir)

    reloaded, reloaded_processor, _ = models.load_model(str(adapter_dir), backend="hf", device="cpu")
    assert hasattr(reloaded, "peft_config")
    torch.testing.assert_close(logits_of(reloaded.eval(), reloaded_processor, root, test[:2]), before)

    merged_dir = save_checkpoint(peft_model, processor, tmp_path / "merged", merged=True)
    assert not models.is_adapter_dir(merged_dir) and (merged_dir / "model.safetensors").exists()
    merged, merged_processor, _ = models.load_model(str(merged_dir), backend="hf", device="cpu")
    torch.testing.assert_close(logits_of(merged.eval(), merged_processor, root, test[:2]), before,
                               atol=1e-4, rtol=1e-4)


# ---- inference -------------------------------------------------------------------------------------


def test_batched_greedy_generation_equals_one_at_a_time(trained, data) -> None:
    model, processor = trained
    root, _, test = data
    assert len({len(r["question"]) for r in test}) == len(test)  # left padding differs in every row

    def raws(batch_size: int) -> list[str]:
        predictions = inference.predict_records(model, processor, test, root, checkpoint="tiny", image_size=112,
                                                batch_size=batch_size, max_new_tokens=24, progress=False)
        assert [p["id"] for p in predictions] == [r["id"] for r in test]
        return [p["raw"] for p in predictions]

    single = raws(1)
    assert len(set(single)) > 1, single  # outputs depend on the prompt, so the comparison means something
    assert raws(8) == single
    assert raws(3) == single


def test_prediction_from_fills_the_contract(data) -> None:
    record = data[2][0]
    assert record["task"] == "vqa_closed"
    good = inference.prediction_from(record, "<think>I see one.</think><answer>Yes</answer>", "ckpt-1")
    assert PREDICTION_KEYS <= set(good)
    assert (good["id"], good["task"], good["dataset"], good["checkpoint"], good["answer"]) == (
        record["id"], "vqa_closed", record["dataset"], "ckpt-1", record["answer"])
    assert (good["parsed"], good["parse_error"]) == ("yes", None)
    bad = inference.prediction_from(record, "perhaps", "ckpt-1")
    assert bad["parsed"] is None and isinstance(bad["parse_error"], str) and bad["parse_error"]
    assert bad["raw"] == "perhaps"


def test_predictions_round_trip(data, tmp_path: Path) -> None:
    test = data[2]
    predictions = [inference.prediction_from(test[0], "<answer>no</answer>", "c"),
                   inference.prediction_from(test[1], "drei — ✓\nzwei", "c"),
                   inference.prediction_from(test[2], "", "c")]
    path = inference.write_predictions(tmp_path / "runs" / "predictions.jsonl", predictions)
    assert inference.read_predictions(path) == predictions
    assert len(path.read_text().splitlines()) == 3
