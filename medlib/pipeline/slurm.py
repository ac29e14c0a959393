"""Submit experiments to Slurm: one sbatch job per stage, chained with afterok, requeue-safe."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlib.pipeline.config import (
    ConfigError,
    Experiment,
    Stage,
    discover_stages,
    display_path,
    load_experiment,
    resolved_parameters,
    skipped_stages,
)
from medlib.pipeline.results import atomic_write_json, atomic_write_text

SLURM_BLOCK = "slurm"
# key → (type, sbatch option or None when the key is not an sbatch resource)
RESOURCE_KEYS: dict[str, tuple[type, str | None]] = {
    "partition": (str, "--partition"),
    "account": (str, "--account"),
    "qos": (str, "--qos"),
    "gpus": (int, "--gpus"),
    "cpus": (int, "--cpus-per-task"),
    "mem": (str, "--mem"),
    "time": (str, "--time"),
    "extra": (list, None),
}
SETTING_KEYS: dict[str, type] = {
    "setup": list,           # shell lines run before medlib (module load, conda activate, ...)
    "python": str,           # interpreter with medlib installed; default: the submitting one
    "requeue": bool,         # requeue on preemption, node failure or the time-limit signal
    "signal_seconds": int,   # seconds before the time limit at which the job requeues itself
    "stages": dict,          # per-stage overrides of the resource keys: {sft: {gpus: 4}}
}
DEFAULTS: dict[str, Any] = {"requeue": True, "signal_seconds": 300, "setup": []}


@dataclass(frozen=True)
class StageJob:
    """One stage of one experiment as a Slurm batch job."""

    experiment: str
    stage: Stage
    script_path: Path
    script: str
    log_pattern: str


@dataclass
class Submission:
    """An experiment's chain of stage jobs and, once submitted, their job ids."""

    experiment: str
    params_path: Path
    jobs: list[StageJob]
    job_ids: list[str] = field(default_factory=list)


def slurm_settings(experiment: Experiment, stages: Sequence[Stage]) -> dict[str, Any]:
    """The experiment's `slurm:` block checked (errors name the file and key), defaults filled in."""
    where = display_path(experiment.path)
    block = dict(experiment.blocks.get(SLURM_BLOCK, {}))
    for key, value in block.items():
        if key in RESOURCE_KEYS:
            _check_resource(where, f"{SLURM_BLOCK}.{key}", key, value)
        elif key in SETTING_KEYS:
            _check_type(where, f"{SLURM_BLOCK}.{key}", value, SETTING_KEYS[key])
        else:
            known = ", ".join([*RESOURCE_KEYS, *SETTING_KEYS])
            raise ConfigError(f"{where}: {SLURM_BLOCK}.{key}: unknown Slurm setting (known: {known})")
    if block.get("setup"):
        for index, line in enumerate(block["setup"]):
            _check_type(where, f"{SLURM_BLOCK}.setup[{index}]", line, str)
    names = {name for stage in stages for name in (stage.block, stage.stem)}
    for name, overrides in (block.get("stages") or {}).items():
        if name not in names:
            raise ConfigError(f"{where}: {SLURM_BLOCK}.stages.{name}: no such stage (known: "
                              f"{', '.join(stage.block for stage in stages)})")
        _check_type(where, f"{SLURM_BLOCK}.stages.{name}", overrides, dict)
        for key, value in overrides.items():
            if key not in RESOURCE_KEYS:
                raise ConfigError(f"{where}: {SLURM_BLOCK}.stages.{name}.{key}: not a resource key "
                                  f"(known: {', '.join(RESOURCE_KEYS)})")
            _check_resource(where, f"{SLURM_BLOCK}.stages.{name}.{key}", key, value)
    return {**DEFAULTS, **block}


def _check_type(where: str, key: str, value: Any, expected: type) -> None:
    """Raise a ConfigError naming file and key when `value` is not of `expected` (bool is no int)."""
    if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
        raise ConfigError(f"{where}: {key}: expected {expected.__name__}, got {type(value).__name__} ({value!r})")


def _check_resource(where: str, key: str, name: str, value: Any) -> None:
    """A resource value: its type, non-negative counts, and `extra` as a list of strings."""
    expected = RESOURCE_KEYS[name][0]
    # YAML reads `mem: 64` or `time: 60` as numbers; Slurm takes them as MB / minutes.
    if expected is str and isinstance(value, int) and not isinstance(value, bool):
        return
    _check_type(where, key, value, expected)
    if expected is int and value < 0:
        raise ConfigError(f"{where}: {key}: expected a count >= 0, got {value}")
    if name == "extra":
        for index, line in enumerate(value):
            _check_type(where, f"{key}[{index}]", line, str)


def stage_resources(settings: dict[str, Any], stage: Stage, num_processes: int = 1) -> dict[str, Any]:
    """The experiment-wide resources with the stage's overrides on top; enough GPUs for its processes."""
    resources = {key: settings[key] for key in RESOURCE_KEYS if key in settings}
    overrides = settings.get("stages") or {}
    for name in (stage.block, stage.stem):
        resources.update(overrides.get(name) or {})
    if num_processes > 1 and not resources.get("gpus"):
        resources["gpus"] = num_processes
    return resources


def sbatch_lines(resources: dict[str, Any]) -> list[str]:
    """`#SBATCH` lines for the resources, `extra` entries verbatim (with or without the prefix)."""
    lines = []
    for key, (_, option) in RESOURCE_KEYS.items():
        value = resources.get(key)
        if option is None or value is None or (key == "gpus" and value == 0):
            continue
        lines.append(f"#SBATCH {option}={value}")
    for line in resources.get("extra") or []:
        lines.append(line if line.startswith("#SBATCH") else f"#SBATCH {line}")
    return lines


def render_script(
    *,
    job_name: str,
    log_pattern: str,
    repo_root: Path,
    command: Sequence[str],
    resources: dict[str, Any],
    settings: dict[str, Any],
    num_processes: int = 1,
    where: str = "sbatch script",
) -> str:
    """The sbatch script of one stage: resources, requeue on signal, live log, resumable command.

    Every value must fit on one line: a line break in a name, path or setting would inject a line.
    """
    from medlib.pipeline.paths import check_single_line

    values = {"job name": job_name, "log": log_pattern, "repo": str(repo_root), "python": command[0],
              **{f"command argument {i}": str(part) for i, part in enumerate(command)},
              **{f"{SLURM_BLOCK}.{key}": str(value) for key, value in resources.items() if key != "extra"},
              **{f"{SLURM_BLOCK}.extra[{i}]": line for i, line in enumerate(resources.get("extra") or [])},
              **{f"{SLURM_BLOCK}.setup[{i}]": line for i, line in enumerate(settings.get("setup") or [])}}
    for field_name, value in values.items():
        check_single_line(value, where, field_name)
    header = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --output={log_pattern}",
              # A requeued run appends to the same log instead of wiping the first attempt's output.
              "#SBATCH --open-mode=append", "#SBATCH --ntasks=1", *sbatch_lines(resources)]
    if settings.get("requeue"):
        header += ["#SBATCH --requeue", f"#SBATCH --signal=B:USR1@{settings['signal_seconds']}"]
    else:
        header.append("#SBATCH --no-requeue")
    run = shlex.join(command)
    if num_processes > 1:
        # One task holding every GPU of the job; the stage itself starts torchrun's ranks.
        step = ["srun", "--ntasks=1", "--nodes=1", "--export=ALL"]
        if resources.get("gpus"):
            step.append(f"--gpus={resources['gpus']}")
        if resources.get("cpus"):
            step.append(f"--cpus-per-task={resources['cpus']}")
        run = f"{shlex.join(step)} {run}"
    body = [
        "set -uo pipefail",
        f"cd {shlex.quote(str(repo_root))}",
        *settings.get("setup", []),
        "export PYTHONUNBUFFERED=1",
        'echo "[medlib] job ${SLURM_JOB_ID:-?} attempt $(( ${SLURM_RESTART_COUNT:-0} + 1 )) on $(hostname) '
        'at $(date -u +%FT%TZ)"',
        "requeue() {",
        '  echo "[medlib] near the time limit: requeueing ${SLURM_JOB_ID}; the next attempt resumes"',
        '  scontrol requeue "${SLURM_JOB_ID}"',
        "}",
        "trap requeue USR1" if settings.get("requeue") else "",
        f"{run} &",
        "child=$!",
        # `wait` returns early when a trapped signal arrives; keep waiting for the real exit.
        'while true; do wait "$child"; status=$?; kill -0 "$child" 2>/dev/null || exit "$status"; done',
    ]
    return "\n".join([*header, "", *[line for line in body if line], ""])


def plan_experiment(
    params_path: Path | str,
    *,
    notebooks_dir: Path | str = "notebooks",
    stage_names: Sequence[str] | None = None,
    python: str | None = None,
) -> Submission:
    """The stage jobs of one experiment file, scripts rendered, nothing written or submitted."""
    from medlib.pipeline.runner import select_stages

    notebooks_dir = Path(notebooks_dir).resolve()
    repo_root = notebooks_dir.parent
    params_path = Path(params_path).resolve()
    stages = discover_stages(notebooks_dir)
    experiment = load_experiment(params_path, stages=stages)
    resolved = resolved_parameters(experiment, stages)
    settings = slurm_settings(experiment, stages)
    left_out = skipped_stages(experiment, stages)  # no job for a stage the experiment does not have
    selected = [s for s in select_stages(stages, stage_names, where=display_path(params_path)) if s.stem not in left_out]
    runs_dir = _under(repo_root, str(experiment.common.get("runs_dir") or f"runs/{experiment.name}"))
    interpreter = python or settings.get("python") or sys.executable
    jobs = []
    for stage in selected:
        num_processes = int(resolved[stage.stem].get("num_processes", 1) or 1)
        resources = stage_resources(settings, stage, num_processes)
        log_pattern = str(runs_dir / "slurm" / f"{stage.stem}-%j.log")
        command = [interpreter, "-m", "medlib", "run", str(params_path), "--stages", stage.stem,
                   "--resume", "--notebooks-dir", str(notebooks_dir)]
        script = render_script(job_name=f"{experiment.name}:{stage.stem}", log_pattern=log_pattern,
                               repo_root=repo_root, command=command, resources=resources,
                               settings=settings, num_processes=num_processes, where=display_path(params_path))
        jobs.append(StageJob(experiment.name, stage, runs_dir / "slurm" / f"{stage.stem}.sbatch", script,
                             log_pattern))
    return Submission(experiment.name, params_path, jobs)


def _under(root: Path, path: str) -> Path:
    """`path` as given when absolute, else below the repo root (where notebooks run)."""
    return Path(path) if Path(path).is_absolute() else root / path


def submit(submission: Submission, *, sbatch: str = "sbatch") -> list[str]:
    """Write the scripts and submit them in stage order, each after the previous one succeeded."""
    previous: str | None = None
    for job in submission.jobs:
        job.script_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(job.script_path, job.script)
        command = [sbatch, "--parsable"]
        if previous:
            command.append(f"--dependency=afterok:{previous}")
        command.append(str(job.script_path))
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise ConfigError(f"{' '.join(command)} failed (exit {completed.returncode}): "
                              f"{completed.stderr.strip() or completed.stdout.strip()}")
        previous = completed.stdout.strip().split(";")[0]
        submission.job_ids.append(previous)
    folder = submission.jobs[0].script_path.parent if submission.jobs else None
    if folder is not None:
        atomic_write_json(folder / "jobs.json", {
            "experiment": submission.experiment, "params": str(submission.params_path),
            "jobs": [{"stage": job.stage.stem, "job_id": job_id, "script": str(job.script_path),
                      "log": job.log_pattern} for job, job_id in zip(submission.jobs, submission.job_ids)]})
    return submission.job_ids


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `medlib submit PARAMS... [--sweep SWEEP.yaml] [--dry-run]`."""
    parser = subparsers.add_parser(
        "submit", help="submit experiments to Slurm (one job per stage, chained with afterok)",
        description="Write one sbatch script per stage of each experiment (resources from its `slurm:` block) "
        "and submit them chained with --dependency=afterok. Jobs requeue on preemption or near their time "
        "limit and resume from the first unfinished stage; logs stream papermill's live output.")
    parser.add_argument("params", nargs="*", help="experiment files")
    parser.add_argument("--sweep", action="append", default=[], help="sweep file to expand and submit; repeatable")
    parser.add_argument("--stages", type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
                        help="comma-separated stages to submit (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the scripts, write and submit nothing")
    parser.add_argument("--notebooks-dir", default="notebooks", help="default: %(default)s")
    parser.add_argument("--sbatch", default="sbatch", help="sbatch command (default: %(default)s)")
    parser.set_defaults(handler=_submit)


def _submit(args: argparse.Namespace) -> int:
    """Handler of `medlib submit`."""
    from medlib.pipeline.sweep import expand_sweep

    params = [Path(path) for path in args.params]
    for sweep_path in args.sweep:
        params += [point.path for point in expand_sweep(sweep_path, notebooks_dir=args.notebooks_dir)]
    if not params:
        raise ConfigError("medlib submit: give experiment files and/or --sweep SWEEP.yaml")
    plans = [plan_experiment(path, notebooks_dir=args.notebooks_dir, stage_names=args.stages) for path in params]
    for plan in plans:
        if args.dry_run:
            for index, job in enumerate(plan.jobs):
                after = " --dependency=afterok:<previous job>" if index else ""
                print(f"# ---- {display_path(job.script_path)} (sbatch --parsable{after}) ----")
                print(job.script)
            continue
        ids = submit(plan, sbatch=args.sbatch)
        print(f"[medlib] {plan.experiment}: jobs {' → '.join(ids)}; logs in "
              f"{display_path(plan.jobs[0].script_path.parent)}")
    return 0
