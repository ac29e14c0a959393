"""stages.json: each stage's status, the parameters and input fingerprints it completed with, who runs it."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from medlib.pipeline.paths import looks_local
from medlib.pipeline.results import atomic_write_json

STAGES_FILE = "stages.json"
# Parameters that change how a stage starts, not what it produces: they never make a completed stage stale.
HOW_TO_START = frozenset({"resume"})
# Parameters naming files or folders a stage reads, in any stage.
PATH_PARAMETERS = ("data_dir", "model_id", "init_checkpoint", "source_path", "flare_questions")


def stage_digest(parameters: dict[str, Any]) -> str:
    """A short hash of a stage's resolved parameters: a completed stage counts only for these."""
    kept = {key: value for key, value in parameters.items() if key not in HOW_TO_START}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_stage_states(results_path: Path) -> dict[str, Any]:
    """stages.json: stem → {status, params_hash, inputs, updated_utc, ...}; empty when absent or unreadable.

    A stage recorded as `running` by a process of this machine that no longer exists reads as `interrupted`.
    """
    try:
        states = json.loads((Path(results_path) / STAGES_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(states, dict):
        return {}
    host = socket.gethostname()
    for state in states.values():
        if (isinstance(state, dict) and state.get("status") == "running" and state.get("host") == host
                and isinstance(state.get("pid"), int) and not _alive(state["pid"])):
            state["status"] = "interrupted"
            state["reason"] = f"the runner (process {state['pid']}) ended without recording an outcome"
    return states


def mark_stage(results_path: Path, stem: str, status: str, parameters: dict[str, Any],
               **details: Any) -> None:
    """Record a stage's status (running, completed, failed, interrupted) and details in stages.json."""
    states = read_stage_states(results_path)
    states[stem] = {"status": status, "params_hash": stage_digest(parameters),
                    "updated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **details}
    if status == "running":
        states[stem].update(pid=os.getpid(), host=socket.gethostname())
    atomic_write_json(Path(results_path) / STAGES_FILE, states)


def stage_inputs(block: str, parameters: dict[str, Any]) -> list[str]:
    """The files and folders a stage reads: its path parameters and what the earlier stages left in runs_dir."""
    from medlib.pipeline.workspace import stage_paths

    inputs = [str(parameters[name]) for name in PATH_PARAMETERS if parameters.get(name)]
    if not parameters.get("runs_dir"):
        return inputs
    layout = stage_paths(parameters["runs_dir"])
    checkpoints = [str(name) for name in parameters.get("checkpoints") or []]
    if block == "grpo" and not parameters.get("init_checkpoint"):
        inputs.append(str(layout["sft_final"]))
    elif block == "inference":
        named = {"sft": str(layout["sft_final"]), "grpo": str(layout["grpo_final"])}
        inputs += [named[name] for name in checkpoints if name in named]
        inputs += [name for name in checkpoints if name not in named and name != "base"]
    elif block == "metric_analysis":
        inputs += [str(layout["predictions"] / f"{name}.jsonl") for name in checkpoints]
    return inputs


def fingerprint(path: Path) -> str:
    """Size and modification time of a file, or of a folder's top-level files; `missing` when absent.

    A data folder counts by its records files (*.jsonl), not its images; a model folder by its weights.
    """
    if not path.exists():
        return "missing"
    if path.is_file():
        stat = path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    records = sorted(path.glob("*.jsonl"))
    files = records or sorted(p for p in path.iterdir() if p.is_file())
    listing = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def input_fingerprints(block: str, parameters: dict[str, Any], repo_root: Path) -> dict[str, str]:
    """path → fingerprint for every input of the stage (relative paths from the repo root, as notebooks see them)."""
    found = {}
    for name in stage_inputs(block, parameters):
        path = Path(name) if Path(name).is_absolute() else repo_root / name
        # A hub id (model_id: Qwen/...) is not a local path: it has nothing to fingerprint here.
        if looks_local(name, repo_root):
            found[name] = fingerprint(path)
    return found


def stale_reason(state: Any, parameters: dict[str, Any], current_inputs: dict[str, str],
                 notebook: Path) -> str | None:
    """Why a recorded stage must run again (None when its completion still holds)."""
    if not isinstance(state, dict) or state.get("status") != "completed":
        status = state.get("status") if isinstance(state, dict) else None
        return f"recorded as {status}" if status else "not completed before"
    if state.get("params_hash") != stage_digest(parameters):
        return "its parameters changed"
    if not notebook.exists():
        return f"its executed notebook {notebook.name} is gone"
    recorded = state.get("inputs")
    if not isinstance(recorded, dict):
        return "no input fingerprints were recorded"
    changed = [name for name in sorted(set(recorded) | set(current_inputs))
               if recorded.get(name) != current_inputs.get(name)]
    if changed:
        vanished = [name for name in changed if current_inputs.get(name) == "missing"]
        what = "vanished" if vanished == changed else "changed"
        return f"its inputs {what} since it completed: {', '.join(changed)}"
    return None
