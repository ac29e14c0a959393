"""Multi-process training stages: rank helpers and the torchrun launch a notebook makes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"  # rank 0's summary, read back by the launcher


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed launch."""
    return int(os.environ.get("RANK", "0")) == 0


def base_model_for_rank(model_id: str, tiny_arch: str, *, image_size: int, seed: int,
                        timeout_s: float = 600) -> str:
    """The base model path: rank 0 builds a tiny model when asked; the other ranks wait for it."""
    from medlib.models.tiny import MARKER_FILE
    from medlib.pipeline.workspace import ensure_base_model

    if is_main_process() or not tiny_arch:
        return ensure_base_model(model_id, tiny_arch, image_size=image_size, seed=seed)
    deadline = time.monotonic() + timeout_s
    while not (Path(model_id) / MARKER_FILE).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{model_id}: tiny base model not built by rank 0 within {timeout_s} s")
        time.sleep(0.5)
    return model_id


def torchrun_stage(stage: str, settings: dict[str, Any], stage_dir: Path, num_processes: int) -> dict[str, Any]:
    """Run `medlib train STAGE --settings F` in `num_processes` ranks; return rank 0's summary."""
    from medlib.pipeline.results import atomic_write_json

    settings_path = atomic_write_json(stage_dir.with_name(f"{stage}-settings.json"), settings)
    result_path = stage_dir / RESULT_FILE
    result_path.unlink(missing_ok=True)  # never read back a previous run's summary
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
               "-m", "medlib", "train", stage, "--settings", str(settings_path)]
    print("launching:", " ".join(command), flush=True)
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"multi-process {stage} failed (exit {completed.returncode}): {' '.join(command)}")
    return json.loads(result_path.read_text())
