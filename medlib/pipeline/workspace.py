"""Where each stage reads and writes, and the idempotent set-up every notebook starts with."""
from __future__ import annotations

import os
import platform
import warnings
from pathlib import Path

import torch

DATA_SOURCES = ("synthetic", "records")
SPLITS = ("train", "validation", "test")


def stage_paths(runs_dir: str | Path) -> dict[str, Path]:
    """Return the fixed layout under runs/<experiment>/ that links the stages."""
    runs = Path(runs_dir)
    return {
        "sft": runs / "sft", "sft_final": runs / "sft" / "final",
        "grpo": runs / "grpo", "grpo_final": runs / "grpo" / "final",
        "predictions": runs / "predictions",
    }


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so reruns on the same machine give identical numbers."""
    from transformers import set_seed

    set_seed(seed)


def prepare_data(data_source: str, data_dir: str | Path, *, seed: int, image_size: int,
                 synthetic_sizes: dict[str, int], synthetic_question_types: list[str]) -> dict[str, Path]:
    """Make the records splits available: generate the synthetic set, or check converted records exist."""
    if data_source not in DATA_SOURCES:
        raise ValueError(f"data_source must be one of {DATA_SOURCES}, got {data_source!r}")
    if data_source == "synthetic":
        from medlib.data.synthetic import ensure_dataset

        return ensure_dataset(data_dir, sizes=synthetic_sizes, seed=seed, image_size=image_size,
                              question_types=synthetic_question_types)
    return {split: split_path(data_dir, split) for split in SPLITS if (Path(data_dir) / f"{split}.jsonl").exists()}


def split_path(data_dir: str | Path, split: str) -> Path:
    """Return data_dir/<split>.jsonl, or explain how to create it."""
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no records for split '{split}'. Run notebooks/10_data_exploration.ipynb first "
            f"(synthetic data), or convert your data set into records JSONL files in {data_dir}/")
    return path


def ensure_base_model(model_id: str, tiny_arch: str = "", *, image_size: int = 112, seed: int = 0) -> str:
    """Return the model id to load; with `tiny_arch`, build the tiny offline checkpoint at model_id first."""
    if tiny_arch:
        from medlib.models.tiny import ensure_tiny_model

        return str(ensure_tiny_model(model_id, tiny_arch, image_size=image_size, seed=seed))
    return model_id


def environment_line() -> str:
    """One line for the set-up cell: versions and the device in use."""
    import transformers
    import trl

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU × {os.cpu_count()}"
    return (f"python {platform.python_version()} · torch {torch.__version__} · transformers "
            f"{transformers.__version__} · trl {trl.__version__} · device: {device}")


def pixels(image_size: int) -> int:
    """Pixel budget of a square image side, as min/max pixels for the processor."""
    return image_size * image_size


def quiet_checkpointing_renames() -> None:
    """Silence transformers' per-step FutureWarnings about `gradient_checkpointing` → `activation_checkpointing`.

    medlib keeps the old names on purpose: the GPU version set (transformers 5.17) predates the new ones.
    """
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated and will be removed in v6",
                            category=FutureWarning)
