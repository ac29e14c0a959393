"""How the training stages start: backend, seed, the stage folder, and the trainable model."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from medlib.training.params import TrainingParams


def begin_stage(settings: TrainingParams, stage: str) -> tuple[str, dict[str, Path]]:
    """Activate the backend, seed, quiet known warnings, and set up the stage's staging folder.

    The returned paths[stage] and paths[stage + "_final"] point into runs/<exp>/<stage>.incomplete: the run
    trains and saves there, and `medlib.pipeline.workspace.finish_stage` swaps it into place when complete.
    """
    from medlib import models
    from medlib.pipeline import workspace
    from medlib.training import resume_weights
    from medlib.training.launch import is_main_process

    backend = models.activate_backend(settings.backend)
    workspace.seed_everything(settings.seed)
    workspace.quiet_checkpointing_renames()
    resume_weights.install()  # a resumed full fine-tune gets its checkpoint's weights back (transformers#43701)
    paths = workspace.stage_paths(settings.runs_dir)
    # One id per torchrun launch: the other ranks wait until rank 0 has prepared this launch's folder.
    launch = os.environ.get("TORCHELASTIC_RUN_ID", "")
    ready = workspace.staging_dir(paths[stage]).with_name(f".{stage}.prepared")
    if is_main_process():
        ready.unlink(missing_ok=True)
        staging, note = workspace.prepare_staging(paths[stage], settings.resume)
        print(f"[medlib] {stage}: {note}", flush=True)
        ready.write_text(launch)
    else:
        staging = workspace.staging_dir(paths[stage])
        deadline = time.monotonic() + 600
        while not (ready.exists() and ready.read_text() == launch):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ready}: rank 0 did not prepare {staging} within 600 s")
            time.sleep(0.2)
    paths[stage], paths[f"{stage}_final"] = staging, staging / "final"
    return backend, paths


def trainable_model(settings: TrainingParams, model_path: str, backend: str, lora: Any):
    """Load `model_path` and make it trainable as the settings say; (model, processor, backend, counts, cache)."""
    from medlib import models
    from medlib.models.vision_cache import cache_for_training
    from medlib.pipeline import workspace

    pixels = workspace.pixels(settings.image_size)
    model, processor, backend = models.load_model(
        model_path, backend=backend, load_in_4bit=settings.load_in_4bit, max_seq_length=settings.max_seq_length,
        gradient_checkpointing=settings.gradient_checkpointing, full_finetuning=settings.finetune_mode == "full",
        trust_remote_code=settings.trust_remote_code, min_pixels=pixels, max_pixels=pixels)
    model = models.prepare_for_training(model, backend, settings.finetune_mode, lora, seed=settings.seed,
                                        gradient_checkpointing=settings.gradient_checkpointing)
    counts = models.count_parameters(model)
    return model, processor, backend, counts, cache_for_training(model, settings.vision_cache_gib)


def finish_training(trainer: Any, processor: Any, paths: dict[str, Path], stage: str, summary: dict[str, Any], *,
                    merged: bool = False) -> dict[str, Any]:
    """On rank 0: save the final model (and a merged copy), write the summary, swap the completed stage folder in."""
    from medlib import models
    from medlib.pipeline import workspace
    from medlib.pipeline.results import atomic_write_json
    from medlib.training.launch import RESULT_FILE

    if not trainer.is_world_process_zero():
        return summary
    models.save_checkpoint(trainer.model, processor, paths[f"{stage}_final"])
    if merged:
        models.save_checkpoint(trainer.model, processor, paths[stage] / "merged", merged=True)
    atomic_write_json(paths[stage] / RESULT_FILE, summary)
    return workspace.finish_stage(paths[stage], summary)  # replaces runs/<exp>/<stage> now it is complete
