"""`medlib lab`: an experiment's notebooks with its parameters injected, opened in JupyterLab to step through."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat

from medlib.pipeline.config import (
    discover_stages,
    display_path,
    load_experiment,
    notebook_parameters,
    resolved_parameters,
)
from medlib.pipeline.results import atomic_write_text
from medlib.pipeline.runner import results_directory

LAB_FOLDER = "lab"
CWD_TAG = "medlib-lab-cwd"
PREFERRED_KERNEL = "medlib"


@dataclasses.dataclass
class LabFolder:
    """A prepared lab: its folder, the notebooks written or kept, and those kept with other parameters."""

    folder: Path
    written: list[Path]
    kept: list[Path]
    stale: list[Path]


def lab_folder(experiment_common: dict[str, Any], name: str, repo_root: Path) -> Path:
    """<runs_dir>/lab (runs/<experiment>/lab by default): a working folder git ignores, like the checkpoints."""
    runs_dir = Path(str(experiment_common.get("runs_dir") or f"runs/{name}"))
    return ((runs_dir if runs_dir.is_absolute() else repo_root / runs_dir) / LAB_FOLDER).resolve()


def _kernel_name(requested: str | None) -> str:
    """The requested kernel, else the project's `medlib` kernel when registered, else `python3`."""
    if requested:
        return requested
    from jupyter_client.kernelspec import KernelSpecManager

    return PREFERRED_KERNEL if PREFERRED_KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def _cwd_cell(repo_root: Path) -> nbformat.NotebookNode:
    """The first cell: the kernel works in the repository root, the working directory `medlib run` gives papermill."""
    source = (
        "# medlib lab: relative paths in the parameters resolve against the repository root, as under\n"
        "# `medlib run` (papermill runs every notebook there), not against this lab folder.\n"
        "import os\n"
        f"os.chdir({str(repo_root)!r})"
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [CWD_TAG]
    return cell


def _injected(path: Path) -> dict[str, Any] | None:
    """The parameters papermill recorded in a prepared notebook, or None if it is unreadable."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    return notebook.metadata.get("papermill", {}).get("parameters")


def _prepare(stage_path: Path, target: Path, parameters: dict[str, Any], kernel: str, repo_root: Path) -> None:
    """papermill's prepare-only pass (parameters injected, nothing executed), then the working-directory cell."""
    import papermill

    temporary = target.with_name(f".{target.stem}.{os.getpid()}.tmp.ipynb")  # papermill wants .ipynb
    logger = logging.getLogger("papermill")
    level = logger.level
    # Nothing runs here: "Input Notebook: ..." would read like a run, and its "Unable to parse line"
    # warnings are about declarations medlib.pipeline.config recovers from the cell's syntax tree.
    logger.setLevel(max(level, logging.ERROR))
    try:
        papermill.execute_notebook(str(stage_path), str(temporary), parameters=parameters, prepare_only=True,
                                   kernel_name=kernel, cwd=str(repo_root), progress_bar=False)
        notebook = nbformat.read(temporary, as_version=4)
    finally:
        logger.setLevel(level)
        temporary.unlink(missing_ok=True)
    notebook.metadata["papermill"]["output_path"] = str(target)
    notebook.cells.insert(0, _cwd_cell(repo_root))
    atomic_write_text(target, nbformat.writes(notebook) + "\n")


def prepare_lab(params_path: Path | str, *, overrides: Sequence[str] = (), notebooks_dir: Path | str = "notebooks",
                folder: Path | str | None = None, kernel_name: str | None = None, fresh: bool = False) -> LabFolder:
    """Write every stage's notebook with the experiment's resolved parameters into its lab folder.

    The parameters are those `medlib run` passes (same loading, overrides, results_dir default).
    A notebook already there is kept (it may hold the user's work) unless `fresh`; kept notebooks
    whose injected parameters differ from the experiment's now are listed as stale.
    """
    notebooks_dir = Path(notebooks_dir).resolve()
    repo_root = notebooks_dir.parent
    stages = discover_stages(notebooks_dir)
    params_path = Path(params_path)
    if not params_path.is_absolute() and not params_path.exists():
        params_path = repo_root / params_path
    experiment = load_experiment(params_path, overrides)
    # As in medlib.pipeline.runner.run_experiment: results/<experiment> unless common.results_dir says otherwise.
    if any("results_dir" in notebook_parameters(stage.path) for stage in stages):
        common = {**experiment.common, "results_dir": results_directory(experiment, stages)}
        experiment = dataclasses.replace(experiment, common=common)
    resolved = resolved_parameters(experiment, stages)
    target_dir = Path(folder).resolve() if folder else lab_folder(experiment.common, experiment.name, repo_root)
    target_dir.mkdir(parents=True, exist_ok=True)
    kernel = _kernel_name(kernel_name)
    written, kept, stale = [], [], []
    for stage in stages:
        target = target_dir / stage.path.name
        parameters = resolved[stage.stem]
        if target.exists() and not fresh:
            kept.append(target)
            if _injected(target) != json.loads(json.dumps(parameters)):
                stale.append(target)
            continue
        _prepare(stage.path, target, parameters, kernel, repo_root)
        written.append(target)
    return LabFolder(target_dir, written, kept, stale)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `medlib lab PARAMS [--set ...] [--dir D] [--fresh] [--no-open] [--jupyter ARGS...]`."""
    parser = subparsers.add_parser(
        "lab", help="prepare an experiment's notebooks with its parameters and open JupyterLab on them",
        description="Write every notebook with the experiment's resolved parameters injected (papermill's "
        "prepare-only pass, the same parameters `medlib run` uses) into <runs_dir>/lab/, then open JupyterLab "
        "there. Run them top to bottom, in stage order: each does what `medlib run` does for its stage. "
        "Arguments after --jupyter go to `jupyter lab`.")
    parser.add_argument("params", help="experiment file, e.g. params/tiny.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="BLOCK.KEY=VALUE",
                        help="override a parameter (value parsed as YAML); repeatable")
    parser.add_argument("--notebooks-dir", default="notebooks", help="default: %(default)s")
    parser.add_argument("--dir", dest="folder", help="lab folder (default: <runs_dir>/lab, e.g. runs/tiny/lab)")
    parser.add_argument("--kernel", help="Jupyter kernel (default: medlib when registered, else python3)")
    parser.add_argument("--fresh", action="store_true",
                        help="rewrite notebooks already in the lab folder (their outputs and edits are lost)")
    parser.add_argument("--no-open", dest="open", action="store_false", help="prepare only; do not start JupyterLab")
    parser.add_argument("--jupyter", dest="jupyter_args", nargs=argparse.REMAINDER, default=[], metavar="ARGS",
                        help="everything after it goes to `jupyter lab`, e.g. --jupyter --no-browser --port 8890")
    parser.set_defaults(handler=_lab)


def _lab(args: argparse.Namespace) -> int:
    """Handler of `medlib lab`: prepare, report, then become `jupyter lab` in the lab folder."""
    lab = prepare_lab(args.params, overrides=args.overrides, notebooks_dir=args.notebooks_dir, folder=args.folder,
                      kernel_name=args.kernel, fresh=args.fresh)
    where = display_path(lab.folder)
    print(f"[medlib] lab: {len(lab.written)} notebook(s) prepared in {where}"
          + (f", {len(lab.kept)} kept (--fresh rewrites them)" if lab.kept else ""))
    for path in lab.stale:
        print(f"[medlib] lab: {path.name} was prepared with other parameters; --fresh rewrites it")
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={lab.folder}", *args.jupyter_args]
    if not args.open:
        print("[medlib] lab: open it with " + " ".join(shlex.quote(part) for part in command))
        return 0
    sys.stdout.flush()
    # Become JupyterLab, so Ctrl-C and signals reach the server directly.
    os.execv(sys.executable, command)
    return 0  # not reached
