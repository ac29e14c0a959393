"""One declaration per stage: the notebook cell, YAML validation, `medlib train` and the TRL configs derive from it."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from medlib.pipeline import declaration
from medlib.pipeline.config import ConfigError, declared_stages, discover_stages, load_experiment, resolved_parameters
from medlib.pipeline.notebook_cells import cell_drift, write_parameters_cell
from medlib.training.command import stage_settings
from medlib.training.params import GRPOParams, SFTParams
from medlib.training.trl_config import trl_fields

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "params" / "tiny.yaml"


def test_every_declared_parameter_has_a_type_and_help() -> None:
    for block in declaration.STAGE_DECLARATIONS:
        for spec in declaration.specs(declaration.declaration(block)).values():
            assert spec.type_name and spec.help, f"{block}.{spec.name}"


def test_same_yaml_gives_the_same_training_settings_through_run_and_train() -> None:
    """`medlib run` resolves from the notebooks folder; `medlib train` from the declarations alone."""
    overrides = ["sft.max_steps=7", "grpo.temperature=0.9"]
    experiment = load_experiment(TINY, overrides)
    through_run = resolved_parameters(experiment, discover_stages(ROOT / "notebooks"))
    for block, stem in (("sft", "20_sft"), ("grpo", "30_grpo")):
        through_train = stage_settings(block, str(TINY), overrides)
        assert through_run[stem] == through_train
        # and both are complete: every declared field, not only those the YAML sets
        cls = declaration.declaration(block)
        assert set(through_train) == {f.name for f in dataclasses.fields(cls)}
    assert through_run["20_sft"]["max_steps"] == 7 and through_run["30_grpo"]["temperature"] == 0.9


def test_runs_and_results_dirs_derive_from_the_experiment_name() -> None:
    resolved = stage_settings("sft", str(TINY), ["common.experiment=other"])
    assert (resolved["runs_dir"], resolved["results_dir"]) == ("runs/other", "results/other")
    explicit = stage_settings("sft", str(TINY), ["common.runs_dir=/scratch/x"])
    assert explicit["runs_dir"] == "/scratch/x" and explicit["results_dir"] == "results/tiny"


def test_unknown_names_are_errors_everywhere() -> None:
    with pytest.raises(ConfigError, match="sft.learnin_rate: unknown parameter.*did you mean learning_rate"):
        stage_settings("sft", str(TINY), ["sft.learnin_rate=1"])
    with pytest.raises(ValueError, match="unknown parameter.*colour"):
        declaration.build(SFTParams, {"colour": "red"})
    from medlib.training import grpo

    with pytest.raises(ValueError, match="unrelated"):
        grpo.settings_from_params({"unrelated": 1})
    # a notebook's globals hold much else: picking the declared names is what the notebook wants
    assert grpo.settings_from({"max_steps": 3, "unrelated": 1}).max_steps == 3


@pytest.mark.parametrize(("override", "message"), [
    ("grpo.keep_best_heldout=true", r"grpo\.keep_best_heldout: needs generation_eval_steps > 0"),
    ("grpo.reward_weights=[1.0]", r"grpo\.reward_weights has 1 values for 2 reward_functions"),
    ("grpo.reward_functions=[format, acuracy]", r"grpo\.reward_functions: unknown reward 'acuracy'"),
    ("grpo.num_generations=5", r"grpo\.num_generations: 5 does not divide the generation batch \(64 completions = "
                               r"per_device_train_batch_size 64 × num_processes 1 × gradient_accumulation_steps 1\)"),
    ("grpo.num_generations=1", r"grpo\.num_generations: needs at least 2"),
    ("grpo.reward_functions=[]", r"grpo\.reward_weights has 2 values for 0 reward_functions"),
    ("grpo.loss_type=dr_grpo", r"grpo\.scale_rewards: loss_type dr_grpo needs scale_rewards: none"),
    ("sft.best_metric=accuracy", r"sft\.best_metric: 'accuracy' is not one of eval_loss, task_accuracy"),
    ("sft.best_metric=task_accuracy", r"sft\.best_metric: task_accuracy needs generation_eval_steps > 0"),
    ("sft.early_stopping_patience=3", r"sft\.early_stopping_patience: stops on eval_loss only"),
    ("sft.save_steps=0", r"sft\.save_steps: early stopping needs save_steps a multiple of eval_steps \(200\), got 0"),
])
def test_settings_that_cannot_work_together_are_refused_when_the_profile_is_read(override: str, message: str) -> None:
    """Refused before any stage runs, naming file and field: not when GRPO starts after an hour of SFT."""
    extra = ["sft.generation_eval_steps=0", "grpo.generation_eval_steps=0"]
    if override.startswith("sft.early"):
        extra += ["sft.best_metric=task_accuracy", "sft.generation_eval_steps=5"]
    if override == "sft.save_steps=0":
        extra += ["sft.early_stopping_patience=2"]
    with pytest.raises(ConfigError, match=r"params/tiny\.yaml: " + message):
        resolved_parameters(load_experiment(TINY, [*extra, override]), discover_stages(ROOT / "notebooks"))
    # the profile itself, and every shipped profile, has none
    for profile in sorted((ROOT / "params").glob("*.yaml")) + sorted((ROOT / "params" / "tiny").glob("*.yaml")):
        resolved_parameters(load_experiment(profile, []), declared_stages())


def test_the_generation_batch_counts_the_processes_that_train() -> None:
    """2 prompts' completions per process make whole groups of 4 on 2 processes, not on 1."""
    assert declaration.conflicts(GRPOParams(per_device_train_batch_size=2, num_generations=4, num_processes=2)) == []
    assert declaration.conflicts(GRPOParams(per_device_train_batch_size=2, num_generations=4, num_processes=1,
                                            rollout_batch_steps=2)) == []
    (line,) = declaration.conflicts(GRPOParams(per_device_train_batch_size=2, num_generations=4, num_processes=1))
    assert line.startswith("num_generations: 4 does not divide the generation batch (2 completions")


def test_medlib_train_checks_the_launchers_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun each rank is one of WORLD_SIZE processes, whatever the profile's num_processes says."""
    import argparse

    from medlib.training import command

    seen = {}
    monkeypatch.setattr(command, "stage_settings", lambda stage, params, overrides: seen.setdefault("o", overrides))
    monkeypatch.setattr(command, "prepare_inputs", lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit):
        command.run_train(argparse.Namespace(settings=None, stage="grpo", params=str(TINY), overrides=["x.y=1"]))
    assert seen["o"] == ["x.y=1", "grpo.num_processes=2"]
    # and the profile check itself then accepts 2 completions a process for groups of 4
    resolved = stage_settings("grpo", str(TINY), ["grpo.per_device_train_batch_size=2", "grpo.num_processes=2"])
    assert resolved["num_processes"] == 2


def test_a_notebooks_edited_settings_are_checked_when_training_starts() -> None:
    """Stepping through 30_grpo in JupyterLab reads the parameters cell, not the profile: run() refuses too."""
    from medlib.training import grpo, sft

    with pytest.raises(ValueError, match="grpo.keep_best_heldout: needs generation_eval_steps > 0"):
        grpo.run(GRPOParams(keep_best_heldout=True, generation_eval_steps=0))
    with pytest.raises(ValueError, match="sft.early_stopping_patience: needs eval_steps > 0"):
        sft.run(SFTParams(early_stopping_patience=2, eval_steps=0))
    assert declaration.conflicts(GRPOParams()) == [] and declaration.conflicts(SFTParams()) == []


def test_grpo_lora_is_a_parameter_shared_with_sft() -> None:
    from medlib.models import lora_params_of

    grpo_settings = declaration.build(GRPOParams, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]})
    lora = lora_params_of(grpo_settings)
    assert (lora.r, lora.lora_alpha, lora.target_modules) == (4, 8, ["q_proj"])
    lora_fields = {f.name for f in dataclasses.fields(type(lora))}
    assert lora_fields <= {f.name for f in dataclasses.fields(SFTParams)}


def test_trl_configs_receive_every_field_of_the_same_name() -> None:
    from trl import GRPOConfig, SFTConfig

    settings = declaration.build(SFTParams, {"learning_rate": 3e-4, "eval_steps": 0, "save_steps": 50,
                                             "weight_decay": 0.01})
    passed = trl_fields(settings, SFTConfig)
    assert passed["learning_rate"] == 3e-4 and passed["weight_decay"] == 0.01
    assert passed["eval_strategy"] == "no" and (passed["save_strategy"], passed["save_steps"]) == ("steps", 50)
    assert "r" not in passed and "data_dir" not in passed
    grpo_passed = trl_fields(declaration.build(GRPOParams, {"beta": 0.04, "loss_type": "dr_grpo"}), GRPOConfig)
    assert (grpo_passed["beta"], grpo_passed["loss_type"]) == (0.04, "dr_grpo")


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda s: s.replace("learning_rate: float = 0.0001", "learning_rate: float = 0.001"), "learning_rate: default"),
    (lambda s: s.replace("learning_rate: float", "learning_rate: int"), "learning_rate: type_name"),
    (lambda s: s.replace("# peak learning rate", "# learning rate"), "learning_rate: help"),
    (lambda s: s.replace("save_merged:", "save_merge:"), "save_merged: declared but missing"),
])
def test_a_drifted_cell_is_detected(tmp_path: Path, edit, expected: str) -> None:
    notebook = tmp_path / "20_sft.ipynb"
    shutil.copy(ROOT / "notebooks" / "20_sft.ipynb", notebook)
    data = json.loads(notebook.read_text())
    cell = next(c for c in data["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = edit("".join(cell["source"])).splitlines(keepends=True)
    notebook.write_text(json.dumps(data))
    assert any(expected in problem for problem in cell_drift(notebook, SFTParams))
    assert write_parameters_cell(notebook, SFTParams) and cell_drift(notebook, SFTParams) == []


def test_declared_stages_need_no_notebooks() -> None:
    assert [s.block for s in declared_stages()] == list(declaration.STAGE_STEMS)
    assert all(s.path is None for s in declared_stages())
