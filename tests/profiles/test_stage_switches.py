"""The two switches profiles use to leave a stage out: `common.skip_stages` and GRPO's `init_checkpoint: base`."""
from __future__ import annotations

from pathlib import Path

import pytest

from medlib.pipeline.config import ConfigError, discover_stages, load_experiment, skipped_stages, validate_experiment

ROOT = Path(__file__).resolve().parents[2]


def experiment(tmp_path: Path, skip: str):
    path = tmp_path / "exp.yaml"
    path.write_text(f"common:\n  experiment: exp\n  skip_stages: {skip}\n")
    return load_experiment(path)


def test_skip_stages_names_stages_by_block_or_stem(tmp_path: Path) -> None:
    stages = discover_stages(ROOT / "notebooks")
    assert skipped_stages(experiment(tmp_path, "[sft, 30_grpo]"), stages) == {"20_sft", "30_grpo"}
    assert skipped_stages(experiment(tmp_path, "[]"), stages) == set()


@pytest.mark.parametrize("skip, message", [("[sfft]", "unknown stage 'sfft'"), ("sft", "expected a list")])
def test_a_bad_skip_stages_is_one_error_naming_the_key(tmp_path: Path, skip: str, message: str) -> None:
    stages = discover_stages(ROOT / "notebooks")
    with pytest.raises(ConfigError, match=rf"exp.yaml: common.skip_stages: .*{message}"):
        validate_experiment(experiment(tmp_path, skip), stages)


def test_init_checkpoint_base_starts_grpo_from_the_built_base_model(tmp_path: Path) -> None:
    from medlib.training.grpo import start_checkpoint
    from medlib.training.params import GRPOParams

    settings = GRPOParams(experiment="exp", model_id=str(tmp_path / "base"), tiny_arch="qwen2_vl", image_size=56,
                          init_checkpoint="base")
    assert start_checkpoint(settings, tmp_path / "sft" / "final") == str(tmp_path / "base")
    assert (tmp_path / "base" / "config.json").exists()  # the tiny base model was built for GRPO (no SFT ran)
    settings.init_checkpoint = ""
    assert start_checkpoint(settings, tmp_path / "sft" / "final") == str(tmp_path / "sft" / "final")
