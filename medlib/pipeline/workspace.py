"""Where each stage reads and writes, and the idempotent set-up every notebook starts with."""
from __future__ import annotations

import os
import platform
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

DATA_SOURCES = ("synthetic", "synthetic_flare2025", "records")
# A training run writes into runs/<exp>/<stage>.incomplete and replaces runs/<exp>/<stage> only once it
# is complete, so a failed or killed run never costs the last good model.
INCOMPLETE_SUFFIX = ".incomplete"
SET_ASIDE_SUFFIX = ".incomplete.old"  # an interrupted run a fresh start did not continue
REPLACED_SUFFIX = ".replaced"  # the previous output for the instant of the swap
RESULT_FILE = "result.json"  # written last by a finished run (medlib.training.launch reads it back)
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
    if data_source == "synthetic_flare2025":  # written in the FLARE 2025 layout, read back through its reader
        from medlib.data.synthetic import ensure_flare_dataset

        return ensure_flare_dataset(data_dir, sizes=synthetic_sizes, seed=seed, image_size=image_size,
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


def staging_dir(stage_dir: str | Path) -> Path:
    """Where a run of the stage writes until it is complete: runs/<exp>/<stage>.incomplete."""
    stage_dir = Path(stage_dir)
    return stage_dir.with_name(stage_dir.name + INCOMPLETE_SUFFIX)


def newest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete `checkpoint-N` (the Trainer writes trainer_state.json last), or None."""
    found = [p for p in Path(folder).glob("checkpoint-*")
             if re.fullmatch(r"checkpoint-\d+", p.name) and (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: int(p.name.split("-")[1])) if found else None


def _swap_into_place(staging: Path, target: Path) -> None:
    """Replace `target` by the complete `staging` folder (two renames; recover_swap finishes a cut-off one)."""
    replaced = target.with_name(target.name + REPLACED_SUFFIX)
    if replaced.exists():
        shutil.rmtree(replaced)
    if target.exists():
        target.rename(replaced)
    staging.rename(target)
    shutil.rmtree(replaced, ignore_errors=True)


def recover_swap(stage_dir: str | Path) -> None:
    """Finish what a kill interrupted: a complete run still in staging, or a swap cut between its renames."""
    stage_dir = Path(stage_dir)
    staging, replaced = staging_dir(stage_dir), stage_dir.with_name(stage_dir.name + REPLACED_SUFFIX)
    if (staging / RESULT_FILE).exists():
        _swap_into_place(staging, stage_dir)
    elif replaced.exists():
        if stage_dir.exists():
            shutil.rmtree(replaced)
        else:
            replaced.rename(stage_dir)


def prepare_staging(stage_dir: str | Path, resume: bool) -> tuple[Path, str]:
    """Set up the stage's staging folder (main process only); return it and a line saying how training starts.

    `resume`: continue an interrupted run from its newest complete checkpoint, else the finished run's
    newest checkpoint (hard-linked, so the finished run stays intact). Without it, start from step 0 and
    set an interrupted run aside (deleted once the new run completes), never deleting anything first.
    """
    stage_dir = Path(stage_dir)
    recover_swap(stage_dir)
    staging = staging_dir(stage_dir)
    interrupted = newest_checkpoint(staging) if staging.exists() else None
    if resume and interrupted is not None:
        return staging, f"continuing the interrupted run in {staging} from {interrupted.name}"
    if staging.exists():
        if interrupted is None:
            shutil.rmtree(staging)  # nothing resumable in it: logs and partial files of a failed start
        else:
            set_aside = stage_dir.with_name(stage_dir.name + SET_ASIDE_SUFFIX)
            shutil.rmtree(set_aside, ignore_errors=True)
            staging.rename(set_aside)
    staging.mkdir(parents=True, exist_ok=True)
    finished = newest_checkpoint(stage_dir) if resume and stage_dir.exists() else None
    if finished is not None:
        # Hard links: no copy of the weights, and the Trainer only ever writes new files.
        shutil.copytree(finished, staging / finished.name, copy_function=_link_or_copy)
        return staging, f"continuing from the finished run's {finished.name} ({stage_dir})"
    why = "resume is off" if not resume else "no checkpoint to continue from"
    aside = f"; the interrupted run was set aside in {stage_dir.name}{SET_ASIDE_SUFFIX}" if interrupted else ""
    return staging, f"training from step 0 ({why}){aside}; {stage_dir} is replaced when this run completes"


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link a file, or copy it where links are not possible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def finish_stage(staging: str | Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Move a complete run from staging into place; the summary (and result.json) name the final paths."""
    from medlib.pipeline.results import atomic_write_json

    staging = Path(staging)
    target = staging.with_name(staging.name.removesuffix(INCOMPLETE_SUFFIX))
    summary = {key: _moved_path(value, staging, target) for key, value in summary.items()}
    atomic_write_json(staging / RESULT_FILE, summary)
    _swap_into_place(staging, target)
    shutil.rmtree(target.with_name(target.name + SET_ASIDE_SUFFIX), ignore_errors=True)
    return summary


def _moved_path(value: Any, old: Path, new: Path) -> Any:
    """A path string below `old` re-rooted at `new`; anything else unchanged."""
    if isinstance(value, str) and (value == str(old) or value.startswith(str(old) + os.sep)):
        return str(new) + value[len(str(old)):]
    return value
