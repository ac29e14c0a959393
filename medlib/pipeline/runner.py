"""Run an experiment's notebooks in order with papermill and keep everything in results/."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
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
    skipped_stages,
)
from medlib.pipeline.results import (
    RESULTS_DIR_ENV,
    STAGING_DIR_ENV,
    atomic_write_text,
    commit_stage_outputs,
    write_environment,
)
from medlib.pipeline.stage_state import (
    STAGES_FILE,
    input_fingerprints,
    mark_stage,
    read_stage_states,
    stale_reason,
)

__all__ = ["RESOLVED_PARAMS_FILE", "STAGES_FILE", "StageFailed", "KernelDied", "read_stage_states",
           "render_html", "results_directory", "run_experiment", "select_stages"]
RESOLVED_PARAMS_FILE = "params.resolved.yaml"
FAILED_DIR = "failed"  # results/<exp>/failed/<stem>.ipynb: the notebook of a failed attempt


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


class KernelDied(StageFailed):
    """A stage whose kernel died (OOM killer, a signal): where it was, why, and how to resume."""

    def __init__(self, stem: str, notebook: Path, reason: str, cell: str, resume: str) -> None:
        self.reason, self.cell, self.resume = reason, cell, resume
        RuntimeError.__init__(
            self, f"stage {stem}: the kernel died while running {cell}: {reason}. Its outputs so far are in "
            f"{display_path(notebook)}; the previous results of {stem} are unchanged. Resume with: {resume}")
        self.stem, self.notebook, self.ename, self.evalue = stem, notebook, "DeadKernelError", reason
        self.cell_index = self.exec_count = None


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


def resume_command(params_path: Path | str, stages: Sequence[str] | None, from_stage: str | None,
                   overrides: Sequence[str]) -> str:
    """The `medlib run` command line that reruns the same selection, skipping completed stages."""
    parts = ["medlib", "run", str(params_path)]
    if stages:
        parts += ["--stages", ",".join(stages)]
    elif from_stage:
        parts += ["--from", from_stage]
    for override in overrides:
        parts += ["--set", override]
    return shlex.join([*parts, "--resume"])


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
    fresh: bool = False,
) -> Path:
    """Validate the experiment, then execute the selected notebooks; returns the results dir.

    With `resume`, selected stages recorded as completed (same parameters, same inputs) are skipped up to
    the first unfinished one. With `fresh`, every stage that runs starts over (its `resume` parameter off).
    """
    if resume and fresh:
        raise ConfigError("choose --resume (skip completed stages) or --fresh (start over), not both")
    notebooks_dir = Path(notebooks_dir).resolve()
    repo_root = notebooks_dir.parent
    all_stages = discover_stages(notebooks_dir)
    experiment = load_experiment(_locate(params_path, repo_root), overrides)
    where = display_path(experiment.path)
    selected = select_stages(all_stages, stages, from_stage, where)
    left_out = skipped_stages(experiment, all_stages)  # stages this experiment does not have (common.skip_stages)
    for stem in sorted(left_out & {stage.stem for stage in selected}):
        print(f"[medlib] {stem}: left out (common.skip_stages)", flush=True)
    selected = [stage for stage in selected if stage.stem not in left_out]

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
    resume_hint = resume_command(params_path, stages, from_stage, overrides)

    skipping = resume
    for stage in selected:
        parameters = resolved[stage.stem]
        if fresh and ("resume" in parameters or _declares([stage], "resume")):
            parameters = {**parameters, "resume": False}
        # Only the leading completed stages are skipped: once one reruns, later ones see new inputs.
        if skipping:
            state = read_stage_states(results_path).get(stage.stem)
            inputs = input_fingerprints(stage.block, parameters, repo_root)
            reason = stale_reason(state, parameters, inputs, results_path / f"{stage.stem}.ipynb")
            if reason is None:
                print(f"[medlib] {stage.stem}: completed earlier, skipped (--resume)", flush=True)
                continue
            print(f"[medlib] {stage.stem}: running it ({reason})", flush=True)
            skipping = False
        mark_stage(results_path, stage.stem, "running", parameters)
        try:
            _run_stage(stage, parameters, results_path, repo_root, kernel_name, log_output, resume_hint)
        except KernelDied as error:
            mark_stage(results_path, stage.stem, "interrupted", parameters, reason=error.reason, cell=error.cell)
            raise
        except StageFailed as error:
            mark_stage(results_path, stage.stem, "failed", parameters, reason=f"{error.ename}: {error.evalue}")
            raise
        except BaseException as error:  # Ctrl-C, SIGTERM (scancel, preemption): resumable, say so
            mark_stage(results_path, stage.stem, "interrupted", parameters,
                       reason=f"the runner was stopped ({type(error).__name__})")
            raise
        mark_stage(results_path, stage.stem, "completed", parameters,
                   inputs=input_fingerprints(stage.block, parameters, repo_root))
    return results_path


def _run_stage(
    stage: Stage,
    parameters: dict[str, Any],
    results_path: Path,
    repo_root: Path,
    kernel_name: str,
    log_output: bool,
    resume_hint: str,
) -> None:
    """Execute one notebook in a staging folder; on success move it and its files into results_path.

    On failure the executed notebook goes to results/<exp>/failed/ and the stage's previous results
    (notebook, HTML, figures, tables, metrics.json entry) stay as they were.
    """
    # papermill takes ~2 s to import; commands that never run a notebook should not pay it.
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from medlib.pipeline import live

    staging = results_path / f".{stage.stem}.staging"
    shutil.rmtree(staging, ignore_errors=True)  # what a killed runner left
    staging.mkdir(parents=True)
    output = staging / f"{stage.stem}.ipynb"
    print(f"[medlib] {stage.stem}: started", flush=True)
    started = time.perf_counter()
    watch = live.KernelWatch()
    live.watching(watch)
    saved_env = {name: os.environ.get(name) for name in (RESULTS_DIR_ENV, STAGING_DIR_ENV)}
    os.environ.update({RESULTS_DIR_ENV: str(results_path.resolve()), STAGING_DIR_ENV: str(staging.resolve())})
    try:
        papermill.execute_notebook(
            str(stage.path),
            str(output),
            parameters=parameters,
            kernel_name=kernel_name,
            cwd=str(repo_root),
            log_output=log_output,
            progress_bar=False,
            engine_name=live.register_engine(),
        )
    except papermill.PapermillExecutionError as error:
        failed = _keep_failed(stage, output, results_path, started)
        raise StageFailed(
            stage.stem,
            failed,
            error.ename,
            error.evalue,
            cell_index=error.cell_index,
            exec_count=error.exec_count,
            note=f"{_render_note(failed)}; the previous results of {stage.stem} are unchanged",
        ) from error
    except DeadKernelError as error:
        reason = watch.exit_reason()
        cell = _cell_name(watch)
        failed = _keep_failed(stage, output, results_path, started)
        _render_note(failed)
        raise KernelDied(stage.stem, failed, reason, cell, resume_hint) from error
    except CellTimeoutError as error:
        failed = _keep_failed(stage, output, results_path, started)
        raise StageFailed(stage.stem, failed, type(error).__name__, str(error), note=_render_note(failed)) from error
    finally:
        watch.stop()
        live.watching(None)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    render_html(output)
    commit_stage_outputs(staging, results_path)
    shutil.rmtree(staging, ignore_errors=True)
    for old in (results_path / FAILED_DIR).glob(f"{stage.stem}.*"):
        old.unlink()  # this stage's last failure is history now
    elapsed = time.perf_counter() - started
    html = results_path / f"{stage.stem}.html"
    print(f"[medlib] {stage.stem}: finished in {elapsed:.1f} s -> {display_path(html)}", flush=True)


def _cell_name(watch: Any) -> str:
    """`cell 8 (result = sft.run(settings))`: the last cell that started, by index and first line."""
    if watch.cell_index is None:
        return "kernel start-up"
    first = next((line.strip() for line in watch.cell_source.splitlines() if line.strip()), "")
    return f"cell {watch.cell_index} ({first[:80]})"


def _keep_failed(stage: Stage, output: Path, results_path: Path, started: float) -> Path:
    """Move a failed attempt's notebook to results/<exp>/failed/ (HTML rendered beside it); drop its staging."""
    elapsed = time.perf_counter() - started
    print(f"[medlib] {stage.stem}: FAILED after {elapsed:.1f} s", flush=True)
    failed = results_path / FAILED_DIR / f"{stage.stem}.ipynb"
    if output.exists():
        failed.parent.mkdir(exist_ok=True)
        os.replace(output, failed)
    shutil.rmtree(output.parent, ignore_errors=True)
    return failed


def _render_note(failed: Path) -> str:
    """Render the failed notebook's HTML; a note for the error message if that fails too."""
    if not failed.exists():
        return " (no executed notebook was written)"
    # Any rendering error must not replace the stage's own error, which is the news.
    try:
        render_html(failed)
    except Exception as error:  # noqa: BLE001
        return f" (rendering its HTML failed too: {type(error).__name__}: {error})"
    return ""
