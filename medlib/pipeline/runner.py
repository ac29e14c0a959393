"""Run an experiment's notebooks in order with papermill and keep everything in results/."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from medlib.pipeline.config import (
    ConfigError,
    Experiment,
    Stage,
    discover_stages,
    display_path,
    load_experiment,
    notebook_parameters,
    resolved_parameters,
)
from medlib.pipeline.results import atomic_write_json, atomic_write_text, write_environment

RESOLVED_PARAMS_FILE = "params.resolved.yaml"
STAGES_FILE = "stages.json"


class StageFailed(RuntimeError):
    """A stage whose notebook raised; the message names the stage, notebook and failing cell."""

    def __init__(
        self,
        stem: str,
        notebook: Path,
        ename: str,
        evalue: str,
        cell_index: int | None = None,
        exec_count: int | None = None,
        note: str = "",
    ) -> None:
        self.stem = stem
        self.notebook = notebook
        self.ename = ename
        self.evalue = evalue
        self.cell_index = cell_index
        self.exec_count = exec_count
        cell = "" if cell_index is None else f" at cell {cell_index} (In [{exec_count}])"
        super().__init__(
            f"stage {stem} failed{cell}: {ename}: {evalue}; "
            f"see the executed notebook {display_path(notebook)} "
            f"and {display_path(notebook.with_suffix('.html'))}{note}"
        )


def select_stages(
    stages: Sequence[Stage],
    names: Sequence[str] | None = None,
    from_stage: str | None = None,
    where: str = "",
) -> list[Stage]:
    """The stages to run, in notebook order: all, those named (stem or block), or from one on."""
    if names and from_stage:
        raise ConfigError(f"{where}: choose stages or a stage to start from, not both")
    if from_stage:
        first = _find_stage(stages, from_stage, where)
        return list(stages[stages.index(first) :])
    if names:
        wanted = {_find_stage(stages, name, where) for name in names}
        return [stage for stage in stages if stage in wanted]
    return list(stages)


def _find_stage(stages: Sequence[Stage], name: str, where: str) -> Stage:
    """The stage whose stem or block is `name`, else a ConfigError listing the known stages."""
    for stage in stages:
        if name in (stage.stem, stage.block):
            return stage
    known = ", ".join(stage.stem for stage in stages) or "none"
    raise ConfigError(f"{where}: unknown stage {name!r} (known stages: {known})")


def results_directory(experiment: Experiment, stages: Sequence[Stage]) -> str:
    """`common.results_dir` when a notebook declares it and it is set, else results/<name>."""
    configured = experiment.common.get("results_dir") if _declares(stages, "results_dir") else None
    return str(configured) if configured else f"results/{experiment.name}"


def _declares(stages: Sequence[Stage], name: str) -> bool:
    """Whether any stage's notebook declares the parameter `name`."""
    return any(name in notebook_parameters(stage.path) for stage in stages)


def _with_results_dir(experiment: Experiment, results_dir: str) -> Experiment:
    """The experiment with `common.results_dir` set, so notebooks write where the runner does."""
    common = {**experiment.common, "results_dir": results_dir}
    return dataclasses.replace(experiment, common=common)


def _locate(path: Path | str, repo_root: Path) -> Path:
    """A path as given when it exists, else relative to the repo root."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return repo_root / path


def _resolved_yaml(
    experiment: Experiment, resolved: dict[str, dict[str, Any]], overrides: Sequence[str]
) -> str:
    """params.resolved.yaml text: a provenance header, then stem → parameters."""
    header = f"# experiment {experiment.name}, resolved from {display_path(experiment.path)}\n"
    if overrides:
        header += "# overrides: " + " ".join(overrides) + "\n"
    return header + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True)


def render_html(notebook_path: Path, *, exclude_input: bool = False) -> Path:
    """Scrub secrets, shrink images and cut huge outputs in the executed notebook, then render its HTML."""
    from medlib.pipeline.rendering import render_publishable

    return render_publishable(notebook_path, exclude_input=exclude_input)


def _stage_digest(parameters: dict[str, Any]) -> str:
    """A short hash of a stage's resolved parameters: a completed stage counts only for these."""
    text = json.dumps(parameters, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_stage_states(results_path: Path) -> dict[str, Any]:
    """stages.json: stem → {status, params_hash, updated_utc}; empty when absent or unreadable."""
    try:
        states = json.loads((results_path / STAGES_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return states if isinstance(states, dict) else {}


def _mark_stage(results_path: Path, stem: str, status: str, parameters: dict[str, Any]) -> None:
    """Record a stage's status (running, completed, failed) in stages.json."""
    states = read_stage_states(results_path)
    states[stem] = {"status": status, "params_hash": _stage_digest(parameters),
                    "updated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(results_path / STAGES_FILE, states)


def _completed(results_path: Path, stem: str, parameters: dict[str, Any]) -> bool:
    """Whether the stage completed with these parameters and its executed notebook is still there."""
    state = read_stage_states(results_path).get(stem, {})
    return (isinstance(state, dict) and state.get("status") == "completed"
            and state.get("params_hash") == _stage_digest(parameters)
            and (results_path / f"{stem}.ipynb").exists())


def run_experiment(
    params_path: Path | str,
    *,
    stages: Sequence[str] | None = None,
    from_stage: str | None = None,
    overrides: Sequence[str] = (),
    notebooks_dir: Path | str = "notebooks",
    kernel_name: str = "python3",
    log_output: bool = True,
    resume: bool = False,
) -> Path:
    """Validate the experiment, then execute the selected notebooks; returns the results dir.

    With `resume`, selected stages recorded as completed (same parameters) are skipped up to the first unfinished one.
    """
    notebooks_dir = Path(notebooks_dir).resolve()
    repo_root = notebooks_dir.parent
    all_stages = discover_stages(notebooks_dir)
    experiment = load_experiment(_locate(params_path, repo_root), overrides)
    where = display_path(experiment.path)
    selected = select_stages(all_stages, stages, from_stage, where)

    results_dir = results_directory(experiment, all_stages)
    if _declares(all_stages, "results_dir"):
        experiment = _with_results_dir(experiment, results_dir)
    resolved = resolved_parameters(experiment, all_stages)
    results_path = Path(results_dir)
    if not results_path.is_absolute():
        results_path = repo_root / results_path
    results_path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        results_path / RESOLVED_PARAMS_FILE, _resolved_yaml(experiment, resolved, overrides)
    )
    write_environment(results_path, repo_dir=repo_root)

    skipping = resume
    for stage in selected:
        parameters = resolved[stage.stem]
        # Only the leading completed stages are skipped: once one reruns, later ones see new inputs.
        skipping = skipping and _completed(results_path, stage.stem, parameters)
        if skipping:
            print(f"[medlib] {stage.stem}: completed earlier, skipped (--resume)", flush=True)
            continue
        _mark_stage(results_path, stage.stem, "running", parameters)
        try:
            _run_stage(stage, parameters, results_path, repo_root, kernel_name, log_output)
        except StageFailed:
            _mark_stage(results_path, stage.stem, "failed", parameters)
            raise
        _mark_stage(results_path, stage.stem, "completed", parameters)
    return results_path


def _run_stage(
    stage: Stage,
    parameters: dict[str, Any],
    results_path: Path,
    repo_root: Path,
    kernel_name: str,
    log_output: bool,
) -> None:
    """Execute one notebook into results_path and render it; raise StageFailed if it fails."""
    # papermill takes ~2 s to import; commands that never run a notebook should not pay it.
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    output = results_path / f"{stage.stem}.ipynb"
    print(f"[medlib] {stage.stem}: started", flush=True)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(stage.path),
            str(output),
            parameters=parameters,
            kernel_name=kernel_name,
            cwd=str(repo_root),
            log_output=log_output,
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as error:
        note = _render_after_failure(stage, output, started)
        raise StageFailed(
            stage.stem,
            output,
            error.ename,
            error.evalue,
            cell_index=error.cell_index,
            exec_count=error.exec_count,
            note=note,
        ) from error
    except (DeadKernelError, CellTimeoutError) as error:
        note = _render_after_failure(stage, output, started)
        raise StageFailed(
            stage.stem, output, type(error).__name__, str(error), note=note
        ) from error
    html = render_html(output)
    elapsed = time.perf_counter() - started
    print(f"[medlib] {stage.stem}: finished in {elapsed:.1f} s -> {display_path(html)}", flush=True)


def _render_after_failure(stage: Stage, output: Path, started: float) -> str:
    """Render the failed notebook's HTML; a note for the error message if that fails too."""
    elapsed = time.perf_counter() - started
    print(f"[medlib] {stage.stem}: FAILED after {elapsed:.1f} s", flush=True)
    if not output.exists():
        return " (no executed notebook was written)"
    # Any rendering error must not replace the stage's own error, which is the news.
    try:
        render_html(output)
    except Exception as error:  # noqa: BLE001
        return f" (rendering its HTML failed too: {type(error).__name__}: {error})"
    return ""
