"""Expand a sweep file (base experiment + grid of dotted keys) into concrete experiment files."""

from __future__ import annotations

import argparse
import copy
import itertools
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from medlib.pipeline.config import (
    COMMON,
    ConfigError,
    discover_stages,
    display_path,
    load_experiment,
    validate_experiment,
)
from medlib.pipeline.declaration import experiment_dirs
from medlib.pipeline.results import atomic_write_text

SWEEP_KEYS = frozenset({"base", "name", "grid", "set", "out_dir"})
_DOTTED = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class SweepPoint:
    """One expanded experiment: its name, the grid values that define it, and its file."""

    name: str
    values: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file: the base experiment file, fixed overrides and the grid."""

    path: Path
    name: str
    base: Path
    grid: dict[str, list[Any]]
    fixed: dict[str, Any]
    out_dir: Path


def load_sweep(path: Path | str) -> Sweep:
    """Read and check a sweep file; paths in it are relative to the file's folder."""
    path = Path(path)
    where = display_path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: sweep file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: invalid YAML: {error}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with `base:` and `grid:`")
    unknown = sorted(set(spec) - SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: unknown sweep key (known: {', '.join(sorted(SWEEP_KEYS))})")
    if not isinstance(spec.get("base"), str):
        raise ConfigError(f"{where}: base: missing or not a path to an experiment file")
    grid = spec.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(f"{where}: grid: missing or empty (expected `block.key: [values, ...]`)")
    for key, values in grid.items():
        _check_dotted(where, "grid", key)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid.{key}: expected a non-empty list of values")
    fixed = spec.get("set") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"{where}: set: expected a mapping of `block.key: value`")
    for key in fixed:
        _check_dotted(where, "set", key)
    name = spec.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: name: expected a non-empty string")
    out_dir = path.parent / str(spec.get("out_dir") or path.stem)
    return Sweep(path=path, name=name, base=_relative_to(path, spec["base"]), grid=dict(grid),
                 fixed=dict(fixed), out_dir=out_dir)


def _check_dotted(where: str, section: str, key: Any) -> None:
    """Raise unless `key` is `block.key`."""
    if not isinstance(key, str) or not _DOTTED.match(key):
        raise ConfigError(f"{where}: {section}.{key}: expected a dotted `block.key` (e.g. sft.learning_rate)")


def _relative_to(sweep_path: Path, target: str) -> Path:
    """`target` beside the sweep file when it exists there, else as given (relative to the cwd)."""
    beside = sweep_path.parent / target
    return beside if beside.exists() or Path(target).is_absolute() else Path(target)


def value_label(value: Any) -> str:
    """A grid value as a short file-name-safe label: 1e-4 → `1e-4`, 0.0002 → `0.0002`, a/b → `a-b`."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (str, int)):
        text = str(value)
    else:
        text = yaml.safe_dump(value, default_flow_style=True).strip()
    return _UNSAFE.sub("-", text).strip("-") or "empty"


def point_name(base_name: str, values: dict[str, Any]) -> str:
    """`tiny__sft.r-8__sft.learning_rate-1e-4`: the base name, then key-value per grid key."""
    return "__".join([base_name, *(f"{key}-{value_label(value)}" for key, value in values.items())])


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, combination)) for combination in itertools.product(*grid.values())]


def _moved(value: Any, old_root: str, new_root: str) -> Any:
    """A path string below `old_root` re-rooted at `new_root`; anything else unchanged."""
    if not isinstance(value, str) or not old_root:
        return value
    old = PurePosixPath(old_root)
    try:
        rest = PurePosixPath(value).relative_to(old)
    except ValueError:
        return value
    return str(PurePosixPath(new_root) / rest)


def expand_mapping(base: dict[str, Any], name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The base experiment mapping with the grid values set and its own name, runs and results dirs."""
    blocks = copy.deepcopy(base)
    for key, value in values.items():
        block, field = key.split(".")
        if blocks.get(block) is None:
            blocks[block] = {}
        blocks[block][field] = copy.deepcopy(value)
    common = blocks.setdefault(COMMON, {})
    base_common = base.get(COMMON, {})
    # A profile without runs_dir/results_dir uses runs/<experiment> and results/<experiment> (the declaration's rule).
    old_runs, old_results = experiment_dirs(str(base_common.get("experiment", "")), str(base_common.get("runs_dir") or ""),
                                            str(base_common.get("results_dir") or ""))
    runs_dir = str(PurePosixPath(old_runs).parent / name)
    results_dir = str(PurePosixPath(old_results).parent / name)
    # Paths under the base runs dir (data_dir, model_id, ...) move with it: sweep members
    # running at the same time must never write into one another's folders.
    for key in list(common):
        common[key] = _moved(common[key], old_runs, runs_dir)
    common.update(experiment=name, runs_dir=runs_dir, results_dir=results_dir)
    return blocks


def expand_sweep(
    sweep_path: Path | str, *, out_dir: Path | str | None = None, notebooks_dir: Path | str = "notebooks"
) -> list[SweepPoint]:
    """Write one validated experiment file per grid point; return the points in grid order."""
    sweep = load_sweep(sweep_path)
    where = display_path(sweep.path)
    stages = discover_stages(notebooks_dir)
    base_experiment = load_experiment(sweep.base, stages=stages)
    base = yaml.safe_load(sweep.base.read_text(encoding="utf-8"))
    for key, value in sweep.fixed.items():
        block, field = key.split(".")
        base.setdefault(block, {})
        if base[block] is None:
            base[block] = {}
        base[block][field] = value
    target = Path(out_dir) if out_dir is not None else sweep.out_dir
    points = []
    for values in grid_points(sweep.grid):
        name = point_name(base_experiment.name, values)
        points.append(SweepPoint(name=name, values=values, path=target / f"{name}.yaml"))
    names = [point.name for point in points]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{where}: grid: values give the same experiment name twice: {duplicates[0]}")
    for point in points:
        mapping = expand_mapping(base, point.name, point.values)
        header = (f"# generated by `medlib sweep {display_path(sweep.path)}` (sweep {sweep.name}) "
                  f"from {display_path(sweep.base)}\n# grid point: "
                  + ", ".join(f"{key}={value!r}" for key, value in point.values.items()) + "\n")
        atomic_write_text(point.path, header + yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True))
    problems = []
    for point in points:
        try:
            validate_experiment(load_experiment(point.path, stages=stages), stages)
        except ConfigError as error:
            problems.append(str(error))
    if problems:
        for point in points:
            point.path.unlink(missing_ok=True)
        raise ConfigError(f"{where}: expanded experiments are invalid (no files kept):\n" + "\n".join(problems))
    return points


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `medlib sweep SWEEP.yaml [--out DIR]`."""
    parser = subparsers.add_parser(
        "sweep", help="expand a sweep file into one experiment file per grid point",
        description="Expand `base:` + `grid:` (dotted block.key → list of values) into validated experiment files "
        "named <experiment>__<key>-<value>..., each with its own runs_dir and results_dir and runnable alone.")
    parser.add_argument("sweep", help="sweep file, e.g. params/sweeps/lora.yaml")
    parser.add_argument("--out", help="folder for the experiment files (default: beside the sweep file, in <stem>/)")
    parser.add_argument("--notebooks-dir", default="notebooks", help="default: %(default)s")
    parser.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    """Handler of `medlib sweep`: prints one written file per line."""
    for point in expand_sweep(args.sweep, out_dir=args.out, notebooks_dir=args.notebooks_dir):
        print(display_path(point.path))
    return 0
