"""The CUDA path's fixes, shown on CPU: config values under Unsloth's defaults, precision, import order,
device map, merged saves, row lengths, Unsloth's generate side effects, and the GPU version set's pins.

Unsloth is not installed here (it cannot run without CUDA); where its behaviour matters, the tests
reproduce what its sources do (unsloth 2026.10.9, cited at each place) and check medlib against that.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest
import torch

from medlib import models
from medlib.data import read_records, sft_rows, to_dataset
from medlib.data.synthetic import make_split
from medlib.evaluation import inference
from medlib.models import loading
from medlib.models.tiny import build_tiny_model
from medlib.training import grpo, sft, trl_config
from medlib.training.lengths import check_row_lengths, row_lengths
from medlib.training.params import GRPOParams, SFTParams
from medlib.training.trl_config import trl_fields

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# unsloth/models/rl.py, `replacements`: the defaults of every patched TRL config ...
UNSLOTH_COMMON = {"logging_nan_inf_filter": False, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
                  "weight_decay": 0.001, "seed": 3407, "optim": "adamw_8bit", "learning_rate": 5e-5,
                  "per_device_eval_batch_size": 4, "eval_accumulation_steps": 2, "torch_empty_cache_steps": 250,
                  "logging_steps": 1, "warmup_steps": 0.1, "bf16": False, "fp16": False, "report_to": "none"}
# ... SFT's (`loss_type` "nll") and GRPO's own (None = unset, resolved in the config's __init__).
UNSLOTH_SFT = {"padding_free": None, "loss_type": "nll"}
UNSLOTH_GRPO = {"num_generations": 8, "loss_type": None, "beta": None, "mask_truncated_completions": None,
                "vllm_importance_sampling_correction": False}


def unsloth_like(config_cls: type, defaults: dict, is_grpo: bool) -> type:
    """A TRL config class with Unsloth's defaults and its GRPO sentinel resolution (unsloth/models/rl.py)."""

    class Patched(config_cls):
        def __init__(self, **kwargs):
            for name, value in defaults.items():
                kwargs.setdefault(name, value)
            if is_grpo:
                default_loss = kwargs["loss_type"] is None
                loss = kwargs["loss_type"] = "dapo" if default_loss else kwargs["loss_type"]
                if kwargs["beta"] is None:
                    kwargs["beta"] = 0.0 if loss in ("dapo", "dr_grpo") else 0.001
                if loss == "dr_grpo" and kwargs.get("scale_rewards", "group") in (True, "group"):
                    kwargs["scale_rewards"] = False
                elif loss == "dapo" and not default_loss:  # only an explicit dapo gets the DAPO paper's settings
                    if kwargs["mask_truncated_completions"] is None:
                        kwargs["mask_truncated_completions"] = True
                    if kwargs.get("epsilon_high") is None:
                        kwargs["epsilon_high"] = 0.28
                if kwargs["mask_truncated_completions"] is None:
                    kwargs["mask_truncated_completions"] = False
            super().__init__(**kwargs)

    return Patched


def _configs(monkeypatch, tmp_path: Path, kind: str, **given) -> tuple[dict, dict]:
    """The effective config medlib builds with plain TRL and with Unsloth's patched class."""
    import trl

    name = "SFTConfig" if kind == "sft" else "GRPOConfig"
    plain_cls = getattr(trl, name)
    patched_cls = unsloth_like(plain_cls, {**UNSLOTH_COMMON, **(UNSLOTH_SFT if kind == "sft" else UNSLOTH_GRPO)},
                               kind == "grpo")
    results = []
    for cls in (plain_cls, patched_cls):
        monkeypatch.setattr(trl, name, cls)
        if kind == "sft":
            config = sft.build_sft_config(tmp_path / "sft", backend="hf", **given)
        else:
            config = grpo.build_grpo_config(tmp_path / "grpo", **given)
        results.append(trl_config.effective_config(config, kind))
    return results[0], results[1]


# ---- item 1: every field Unsloth changes is passed explicitly, and the effective config is printed ----


def test_pinned_values_are_trls_own_defaults() -> None:
    """PINNED holds TRL's defaults (TRL 1.15 read from its sources; checked against the TRL installed here)."""
    import dataclasses

    from trl import GRPOConfig, SFTConfig

    for kind, cls in (("sft", SFTConfig), ("grpo", GRPOConfig)):
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        assert {name: defaults[name] for name in trl_config.PINNED[kind]} == trl_config.PINNED[kind]


@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_unsloths_defaults_change_nothing_medlib_builds(monkeypatch, tmp_path: Path, kind: str) -> None:
    """The same config under Unsloth's patched class as under TRL's: bench-style minimal fields and stage params."""
    from trl import GRPOConfig, SFTConfig

    minimal = {"seed": 0, "max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 2} if kind == "grpo" \
        else {"seed": 0, "max_steps": 2}
    params = trl_fields(GRPOParams(), GRPOConfig) if kind == "grpo" else trl_fields(SFTParams(), SFTConfig)
    for given in (minimal, params):
        plain, patched = _configs(monkeypatch, tmp_path, kind, **given)
        assert patched == plain
    if kind == "grpo":
        assert plain["mask_truncated_completions"] is False and plain["epsilon_high"] == 0.2
        assert plain["optim"] == "adamw_torch_fused" and plain["weight_decay"] == 0.0


def test_without_pinning_unsloths_defaults_would_apply(monkeypatch) -> None:
    """The control: the patched class alone gives adamw_8bit, weight decay and the DAPO extras."""
    from trl import GRPOConfig

    patched = unsloth_like(GRPOConfig, {**UNSLOTH_COMMON, **UNSLOTH_GRPO}, True)
    config = patched(output_dir="x", use_cpu=True, loss_type="dapo", per_device_train_batch_size=8)
    assert (config.optim, config.weight_decay) == ("adamw_8bit", 0.001)
    assert (config.mask_truncated_completions, config.epsilon_high) == (True, 0.28)


def test_dr_grpo_needs_unscaled_rewards(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dr_grpo needs scale_rewards: none"):
        grpo.build_grpo_config(tmp_path, seed=0, loss_type="dr_grpo", num_generations=2, per_device_train_batch_size=2)
    config = grpo.build_grpo_config(tmp_path, seed=0, loss_type="dr_grpo", scale_rewards="none", num_generations=2,
                                    per_device_train_batch_size=2)
    assert config.scale_rewards == "none"


def test_a_field_changed_by_the_config_class_or_trainer_is_reported(monkeypatch, tmp_path: Path, capsys) -> None:
    import trl

    class Rewrites(trl.GRPOConfig):  # stands in for a patched class that overrides an explicit value
        def __post_init__(self):
            super().__post_init__()
            self.mask_truncated_completions = True

    monkeypatch.setattr(trl, "GRPOConfig", Rewrites)
    config = grpo.build_grpo_config(tmp_path, seed=0, num_generations=2, per_device_train_batch_size=2)
    before = trl_config.effective_config(config, "grpo")
    trainer = types.SimpleNamespace(args=types.SimpleNamespace(**{**before, "optim": "adamw_8bit"}))
    report = trl_config.report_start(trainer, config, before, "grpo", "unsloth")
    assert report["changed"] == {"mask_truncated_completions": [False, True], "optim": ["adamw_torch_fused", "adamw_8bit"]}
    out = capsys.readouterr().out
    assert "[medlib] grpo trainer config (unsloth backend): optim=adamw_8bit" in out
    assert "the unsloth trainer changed optim from 'adamw_torch_fused' to 'adamw_8bit'" in out


# ---- item 2: bf16 only where the GPU has it ----


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_precision_follows_the_gpu(monkeypatch, tmp_path: Path, bf16: bool, expected: torch.dtype) -> None:
    import trl

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert loading.resolve_dtype("auto", "cuda") == expected
    assert loading.mixed_precision() == {"bf16": bf16, "fp16": not bf16}
    # fp16 weights cannot be stepped under fp16 mixed precision: hf full fine-tuning keeps fp32 there.
    assert loading.load_dtype("auto", "cuda", "hf", True) == (torch.bfloat16 if bf16 else torch.float32)
    assert loading.load_dtype("auto", "cuda", "unsloth", True) == expected
    seen = {}
    monkeypatch.setattr(trl, "SFTConfig", lambda **kwargs: seen.update(kwargs) or types.SimpleNamespace(**kwargs))
    monkeypatch.setattr(trl_config, "remember_changes", lambda *a: None)
    sft.build_sft_config(tmp_path, backend="unsloth", seed=0)
    assert (seen["bf16"], seen["fp16"], seen["use_cpu"]) == (bf16, not bf16, False)


def test_no_mixed_precision_without_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loading.mixed_precision() == {"bf16": False, "fp16": False}
    assert loading.resolve_dtype("auto", "cpu") == torch.float32


# ---- item 3: after generating, Unsloth's model goes back to training with checkpointing ----


@pytest.mark.parametrize("backend", ["unsloth", "hf"])
def test_generation_eval_restores_unsloths_training_mode(monkeypatch, tmp_path: Path, backend: str) -> None:
    from medlib.evaluation import metrics

    calls = []
    fake = types.ModuleType("unsloth")
    fake.FastVisionModel = types.SimpleNamespace(for_training=lambda model: calls.append(model))
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    monkeypatch.setattr(loading, "unsloth_available", lambda: True)
    monkeypatch.setattr(inference, "predict_records", lambda *a, **k: [])
    monkeypatch.setattr(metrics, "score_predictions", lambda predictions: {"overall": {"accuracy": 0.5}})
    settings = SFTParams(backend=backend, generation_eval_steps=1, best_metric="eval_loss")
    callback = sft.GenerationEvalCallback(processor=None, records=[], settings=settings, best_dir=tmp_path)
    model = torch.nn.Linear(2, 2).train()
    state = types.SimpleNamespace(global_step=1, is_world_process_zero=True, log_history=[])
    callback.on_step_end(None, state, "control", model=model)
    assert calls == ([model] if backend == "unsloth" else []) and model.training
    assert state.log_history == [{"step": 1, "eval_task_accuracy": 0.5}]


# ---- item 5: under Unsloth, inference leaves the cache to Unsloth's generate ----


def test_unsloths_generate_keeps_its_own_cache() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert not inference.unsloth_generates(model)
    model[0]._old_generate = lambda: None  # what FastVisionModel.from_pretrained leaves (unsloth/models/vision.py)
    assert inference.unsloth_generates(model)
    assert inference.resolve_cache("auto", 10_000, "cuda:0", unsloth=True) == ""
    assert inference.resolve_cache("auto", 10_000, "cuda:0") == "static"
    assert inference.resolve_cache("static", 1, "cuda:0", unsloth=True) == "static"


# ---- item 6: Unsloth is imported before transformers, TRL and peft ----

FAKE_UNSLOTH = '''import json, os, sys
with open(os.environ["FAKE_UNSLOTH_REPORT"], "w") as f:
    json.dump([m for m in ("transformers", "trl", "peft") if m in sys.modules], f)
raise SystemExit(0)
'''
CUDA_PRETEND = "import torch\ntorch.cuda.is_available = lambda: True\n"


def _imported_before_unsloth(tmp_path: Path, command: list[str]) -> list[str]:
    """Run `command` with a stand-in unsloth that records what was imported before it, and pretend CUDA."""
    fake = tmp_path / "fake"
    (fake / "unsloth").mkdir(parents=True, exist_ok=True)
    (fake / "unsloth" / "__init__.py").write_text(FAKE_UNSLOTH)
    (fake / "sitecustomize.py").write_text(CUDA_PRETEND)
    report = tmp_path / "imported.json"
    report.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{REPO}", "FAKE_UNSLOTH_REPORT": str(report),
           "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert report.exists(), f"unsloth was never imported: {run.stderr[-2000:]}"
    return json.loads(report.read_text())


def test_the_harness_sees_a_wrong_order(tmp_path: Path) -> None:
    code = ("import sys, types; sys.modules['peft'] = types.ModuleType('peft')  # as if imported first\n"
            "from medlib.models.loading import activate_backend; activate_backend('auto')")
    assert _imported_before_unsloth(tmp_path, [sys.executable, "-c", code]) == ["peft"]


def _first_cell(stem: str) -> str:
    import nbformat

    notebook = nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4)
    return next(c.source for c in notebook.cells
                if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))


@pytest.mark.parametrize("script", ["bench/sft.py", "bench/inference.py", "bench/gpu_check_child.py", "20_sft"])
def test_unsloth_comes_first(tmp_path: Path, script: str) -> None:
    commands = {
        "bench/sft.py": [sys.executable, script, "--path", "medlib", "--work", str(tmp_path), "--model", "x"],
        "bench/inference.py": [sys.executable, script],
        "bench/gpu_check_child.py": [sys.executable, script, "unsloth", "{}", str(tmp_path / "out.json")],
        # the notebook's first code cell as papermill runs it, after the parameters cell
        "20_sft": [sys.executable, "-c", 'backend = "auto"\n' + _first_cell("20_sft")],
    }
    assert _imported_before_unsloth(tmp_path, commands[script]) == []


def test_every_training_and_inference_notebook_activates_the_backend_first() -> None:
    import ast

    for stem in ("20_sft", "30_grpo", "40_inference"):
        statements = ast.parse(_first_cell(stem)).body
        assert ast.unparse(statements[0]) == "from medlib import models", stem
        assert ast.unparse(statements[1]) == "backend = models.activate_backend(backend)", stem


# ---- item 9: 4-bit loads on this process's GPU ----


def test_quantised_load_uses_the_local_rank(monkeypatch) -> None:
    import transformers

    seen = {}

    class Stop(Exception):
        pass

    def from_pretrained(model_id, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(transformers, "BitsAndBytesConfig", lambda **kwargs: kwargs)
    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", from_pretrained)
    with pytest.raises(Stop):
        loading._load_hf("base", torch.float16, "cuda:1", True, False, None, None)
    assert seen["device_map"] == {"": 1}
    assert seen["quantization_config"]["bnb_4bit_compute_dtype"] == torch.float16  # the dtype the GPU computes in
    assert loading.local_device("cuda") == "cuda:1" and loading.local_device("cpu") == "cpu"


# ---- item 8: a merged 16-bit model, never a re-quantised one ----


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", "qwen2_5_vl")


def _lora_model(tiny_dir: Path):
    model, processor, backend = models.load_model(str(tiny_dir), backend="hf", device="cpu")
    model = models.prepare_for_training(model, backend, "lora", models.LoraParams(r=4, lora_alpha=8, lora_dropout=0.0))
    torch.manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)  # a trained-looking adapter: B is zero at init
    return model, processor


def test_unsloth_models_save_through_unsloths_merged_16bit(tmp_path: Path) -> None:
    calls = []

    class Saved:
        def save_pretrained_merged(self, out_dir, processor, save_method):
            calls.append((out_dir, save_method))

    processor = types.SimpleNamespace(save_pretrained=lambda out_dir: None)
    assert loading.merge_method(Saved()) == "unsloth_merged_16bit"
    models.save_checkpoint(Saved(), processor, tmp_path / "merged", merged=True)
    assert calls == [(str(tmp_path / "merged"), "merged_16bit")]


def test_a_quantised_peft_model_merges_into_a_16bit_reload(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    model, processor = _lora_model(tiny_dir)
    assert loading.merge_method(model) == "peft_merge"
    model.get_base_model().is_loaded_in_4bit = True  # peft's merge would re-quantise such a base
    assert loading.merge_method(model) == "reload_16bit"
    models.save_checkpoint(model, processor, tmp_path / "merged", merged=True)
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    reloaded = dict(AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").named_parameters())
    base = dict(AutoModelForImageTextToText.from_pretrained(tiny_dir).named_parameters())
    expected = dict(model.merge_and_unload().named_parameters())
    name = next(k for k in reloaded if k.endswith("layers.0.self_attn.q_proj.weight"))
    assert reloaded[name].dtype == torch.bfloat16
    torch.testing.assert_close(reloaded[name].float(), expected[name], atol=2e-2, rtol=2e-2)
    assert not torch.allclose(expected[name], base[name], atol=0.1)  # the adapter is in it


# ---- item 10: rows longer than max_seq_length are an error on every backend ----


@pytest.fixture(scope="module")
def rows(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("data")
    records = read_records(make_split(root, "train", 3, seed=0, image_size=112))
    return records, root


def test_row_lengths_count_image_tokens_exactly(tiny_dir: Path, rows) -> None:
    records, root = rows
    _, processor, _ = models.load_model(str(tiny_dir), backend="hf", device="cpu", min_pixels=112**2, max_pixels=112**2)
    dataset = to_dataset(sft_rows(records, root, image_size=112, style="messages"))
    row = dataset[0]
    text = processor.apply_chat_template(row["messages"], tokenize=False)
    actual = processor(text=[text], images=[row["images"]], return_tensors="pt")["input_ids"].shape[1]
    assert row_lengths(dataset, processor)[0] == actual
    longest = check_row_lengths(dataset, processor, 10_000, stage="sft")
    with pytest.raises(ValueError, match=rf"sft: \d training row\(s\) longer than max_seq_length 20 tokens; the "
                                         rf"longest, row \d, has {longest} .*raise sft.max_seq_length"):
        check_row_lengths(dataset, processor, 20, stage="sft")


def test_max_seq_length_reaches_the_loader_and_the_model(monkeypatch, tiny_dir: Path) -> None:
    from medlib.training import settings as stage_settings

    seen = {}

    class Stop(Exception):
        pass

    def load_model(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(models, "load_model", load_model)
    with pytest.raises(Stop):
        stage_settings.trainable_model(SFTParams(max_seq_length=1234), str(tiny_dir), "hf", models.LoraParams())
    assert seen["max_seq_length"] == 1234
    monkeypatch.undo()
    model, _, _ = models.load_model(str(tiny_dir), backend="hf", device="cpu", max_seq_length=77)
    assert model.max_seq_length == 77  # make_sft_trainer / make_grpo_trainer check rows against it


# ---- items 11 and 13: the GPU version set installs as one ----


def test_python_and_the_gpu_sets_torch_torchvision_pair() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"  # TRL 1.15 and 1.16 need it
    pins = dict(re.fullmatch(r"([\w-]+)==([\d.]+)", spec).groups() for spec in project["optional-dependencies"]["gpu"]
                if re.fullmatch(r"([\w-]+)==([\d.]+)", spec))
    torch_minor = int(pins["torch"].split(".")[1])
    assert pins["torchvision"].startswith(f"0.{torch_minor + 15}.")  # torchvision 0.(m+15) is torch 2.m's pair
    environment = (REPO / "environment.yml").read_text()
    for name in ("torch", "torchvision", "trl", "unsloth"):
        assert re.search(rf"- {name}=={re.escape(pins[name])}\s", environment), name
