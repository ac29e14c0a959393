"""Sweep files expand into validated, independently runnable experiment files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medlib import cli
from medlib.pipeline.config import ConfigError, discover_stages, load_experiment, validate_experiment
from medlib.pipeline.sweep import expand_sweep, grid_points, point_name, value_label

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def write_sweep(folder: Path, grid: dict, **extra) -> Path:
    """A sweep over params/tiny.yaml in `folder`."""
    path = folder / "lora.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "params" / "tiny.yaml"), "grid": grid, **extra}, sort_keys=False))
    return path


def test_value_labels_are_short_and_file_name_safe() -> None:
    assert value_label("1e-4") == "1e-4"
    assert value_label(0.0002) == "0.0002"
    assert value_label(16) == "16"
    assert value_label(True) == "true"
    assert value_label("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen-Qwen2.5-VL-3B-Instruct"
    assert value_label([1, 2]) == "1-2"


def test_grid_points_cover_every_combination_in_order() -> None:
    points = grid_points({"sft.r": [8, 16], "sft.learning_rate": ["1e-4", "2e-4"]})
    assert points == [
        {"sft.r": 8, "sft.learning_rate": "1e-4"}, {"sft.r": 8, "sft.learning_rate": "2e-4"},
        {"sft.r": 16, "sft.learning_rate": "1e-4"}, {"sft.r": 16, "sft.learning_rate": "2e-4"},
    ]
    assert point_name("tiny", points[0]) == "tiny__sft.r-8__sft.learning_rate-1e-4"


def test_expansion_writes_valid_experiments_with_their_own_dirs(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"sft.learning_rate": ["1e-4", 0.002], "grpo.temperature": [1.0]},
                        set={"sft.max_steps": 7})
    points = expand_sweep(sweep, notebooks_dir=NOTEBOOKS)
    assert [point.name for point in points] == [
        "tiny__sft.learning_rate-1e-4__grpo.temperature-1", "tiny__sft.learning_rate-0.002__grpo.temperature-1"]
    stages = discover_stages(NOTEBOOKS)
    for point in points:
        assert point.path.parent == tmp_path / "lora"
        experiment = load_experiment(point.path, stages=stages)
        validate_experiment(experiment, stages)
        common = experiment.common
        assert experiment.name == point.name
        assert common["runs_dir"] == f"runs/{point.name}" and common["results_dir"] == f"results/{point.name}"
        # Paths that lived under the base runs dir move with it, so parallel members never share them.
        assert common["data_dir"] == f"runs/{point.name}/data"
        assert common["model_id"] == f"runs/{point.name}/base-model"
        assert experiment.blocks["sft"]["max_steps"] == 7
        assert experiment.blocks["grpo"]["temperature"] == 1.0
    assert load_experiment(points[0].path).blocks["sft"]["learning_rate"] == "1e-4"
    assert load_experiment(points[1].path).blocks["sft"]["learning_rate"] == 0.002
    # The base's other settings are copied, not referenced: the file stands alone.
    assert load_experiment(points[0].path).blocks["sft"]["finetune_mode"] == "full"


def test_the_shipped_example_sweep_expands_into_valid_experiments(tmp_path: Path) -> None:
    """The README's `medlib sweep params/sweeps/lora.yaml`: four LoRA variants of the FLARE 2025 profile."""
    points = expand_sweep(ROOT / "params" / "sweeps" / "lora.yaml", out_dir=tmp_path, notebooks_dir=NOTEBOOKS)
    assert [point.name for point in points] == [
        f"flare2025_qwen25vl7b__sft.r-{r}__sft.learning_rate-{lr}" for r in (8, 16) for lr in ("1e-4", "2e-4")]
    stages = discover_stages(NOTEBOOKS)
    for point in points:
        validate_experiment(load_experiment(point.path, stages=stages), stages)


def test_an_invalid_grid_key_names_the_key_and_keeps_no_files(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"sft.learnig_rate": [0.1, 0.2]})
    with pytest.raises(ConfigError, match=r"sft\.learnig_rate.*did you mean learning_rate"):
        expand_sweep(sweep, notebooks_dir=NOTEBOOKS)
    assert not list((tmp_path / "lora").glob("*.yaml"))


@pytest.mark.parametrize(("grid", "message"), [
    ({"learning_rate": [1]}, "grid.learning_rate: expected a dotted"),
    ({"sft.r": 8}, "grid.sft.r: expected a non-empty list"),
    ({}, "grid: missing or empty"),
    ({"sft.r": [8, "8"]}, "same experiment name twice"),
])
def test_malformed_sweeps_name_file_and_field(tmp_path: Path, grid: dict, message: str) -> None:
    sweep = write_sweep(tmp_path, grid)
    with pytest.raises(ConfigError, match=message) as failure:
        expand_sweep(sweep, notebooks_dir=NOTEBOOKS)
    assert "lora.yaml" in str(failure.value)


def test_cli_sweep_prints_the_written_files(tmp_path: Path, capsys) -> None:
    sweep = write_sweep(tmp_path, {"sft.max_steps": [3, 4]})
    assert cli.main(["sweep", str(sweep), "--out", str(tmp_path / "out"),
                     "--notebooks-dir", str(NOTEBOOKS)]) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(line).name for line in printed] == ["tiny__sft.max_steps-3.yaml", "tiny__sft.max_steps-4.yaml"]
    assert all(Path(line).exists() for line in printed)
