"""Write results (metrics, environment, figures) atomically into a results directory."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import platform
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
# While `medlib run` executes a stage, writes into its results dir go to a staging folder that the runner
# moves into place only when the stage succeeds: a failed stage leaves the previous results as they were.
RESULTS_DIR_ENV = "MEDLIB_RESULTS_DIR"
STAGING_DIR_ENV = "MEDLIB_RESULTS_STAGING"
ENVIRONMENT_FILE = "env.json"
TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "papermill",
    "unsloth",
)


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write bytes so that readers see the old file or the complete new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory as the target so os.replace stays a rename on one file system.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """Plain-JSON copy of a value: numpy/torch scalars and arrays to Python, NaN and inf to None."""
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__.split(".")[0] in ("numpy", "torch") and hasattr(value, "tolist"):
        return json_safe(value.tolist())
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


def atomic_write_json(path: Path | str, obj: Any) -> Path:
    """Write a JSON-safe copy of `obj` (indented, UTF-8) atomically."""
    text = json.dumps(json_safe(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def output_dir(results_dir: Path | str) -> Path:
    """Where files for `results_dir` are written: the stage's staging folder under `medlib run`, else itself."""
    staging, real = os.environ.get(STAGING_DIR_ENV), os.environ.get(RESULTS_DIR_ENV)
    if staging and real and Path(results_dir).resolve() == Path(real).resolve():
        return Path(staging)
    return Path(results_dir)


def update_metrics(results_dir: Path | str, stage: str, metrics: Mapping[str, Any]) -> Path:
    """Set `metrics.json[stage] = metrics`, keeping the other stages' entries."""
    return _update_metrics_file(output_dir(results_dir) / METRICS_FILE, stage, metrics)


def _update_metrics_file(path: Path, stage: str, metrics: Mapping[str, Any]) -> Path:
    """Set one stage's entry of a metrics.json file, refusing to overwrite a file that is not a JSON object."""
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON, refusing to overwrite: {error}") from error
        if not isinstance(existing, dict):
            raise ValueError(f"{path}: expected a JSON object, refusing to overwrite")
    existing[stage] = json_safe(dict(metrics))
    return atomic_write_json(path, existing)


def commit_stage_outputs(staging: Path | str, results_dir: Path | str) -> None:
    """Move a finished stage's files from its staging folder into results_dir; merge its metrics.json entries."""
    staging, results_dir = Path(staging), Path(results_dir)
    metrics = staging / METRICS_FILE
    if metrics.exists():
        for stage, entry in json.loads(metrics.read_text(encoding="utf-8")).items():
            _update_metrics_file(results_dir / METRICS_FILE, stage, entry)
        metrics.unlink()
    for source in sorted(staging.rglob("*")):
        if source.is_file():
            target = results_dir / source.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)


def _git(repo_dir: Path, *args: str) -> str | None:
    """Stdout of a read-only git command in `repo_dir`, or None when it fails."""
    try:
        completed = subprocess.run(
            # --no-optional-locks: never take index.lock beside someone else's git command.
            ["git", "--no-optional-locks", "-C", str(repo_dir), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout if completed.returncode == 0 else None


def git_state(repo_dir: Path | str) -> dict[str, Any]:
    """HEAD commit and whether tracked files differ from it; None values outside a git repo."""
    commit = _git(Path(repo_dir), "rev-parse", "--verify", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = _git(Path(repo_dir), "status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit.strip(),
        "git_dirty": None if status is None else bool(status.strip()),
    }


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, None when absent; nothing is imported."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict[str, Any]:
    """CUDA availability, device name ("cpu" without CUDA) and device count, via torch if present."""
    if importlib.util.find_spec("torch") is None:
        return {"cuda_available": False, "device": "cpu", "device_count": 0}
    import torch

    if not torch.cuda.is_available():
        return {"cuda_available": False, "device": "cpu", "device_count": 0}
    return {
        "cuda_available": True,
        "device": torch.cuda.get_device_name(0),
        "device_count": torch.cuda.device_count(),
        "cuda_version": torch.version.cuda,
    }


def environment_info(repo_dir: Path | str | None = None) -> dict[str, Any]:
    """Python, platform, package versions, git state of `repo_dir` (default cwd), device, time."""
    return {
        "timestamp_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        **git_state(Path.cwd() if repo_dir is None else repo_dir),
        **device_info(),
    }


def write_environment(results_dir: Path | str, repo_dir: Path | str | None = None) -> Path:
    """Write env.json (see environment_info) into the results directory."""
    return atomic_write_json(Path(results_dir) / ENVIRONMENT_FILE, environment_info(repo_dir))


def save_figure(fig: Any, results_dir: Path | str, name: str) -> Path:
    """Save a matplotlib figure as results_dir/figures/<name>.png (dpi 120, tight box)."""
    stem = name.removesuffix(".png")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(output_dir(results_dir) / "figures" / f"{stem}.png", buffer.getvalue())


def ensure_dir(results_dir: Path | str, name: str) -> Path:
    """Return results_dir/<name>, created if missing (tables/, figures/ ...)."""
    path = output_dir(results_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    return path
