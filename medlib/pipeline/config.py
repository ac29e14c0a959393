"""Load, merge and validate experiment YAML files against the notebooks' parameters cells."""

from __future__ import annotations

import ast
import difflib
import functools
import io
import logging
import re
import tokenize
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

COMMON = "common"
# The runner's own key: it names the experiment, so no notebook has to declare it.
RUNNER_KEYS = frozenset({"experiment"})
# Blocks that configure the tooling around the notebooks, not a stage; their own module checks
# them (`slurm:` → medlib.pipeline.slurm) and no notebook ever receives them.
TOOL_BLOCKS = frozenset({"slurm"})
_STAGE_FILE = re.compile(r"^(?P<number>\d{2})_(?P<block>[A-Za-z0-9_]+)\.ipynb$")
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")


class ConfigError(ValueError):
    """An experiment file, override or stage selection that cannot be run."""


@dataclass(frozen=True)
class Stage:
    """One numbered notebook: its stem (`20_sft`), params block (`sft`) and path."""

    stem: str
    block: str
    path: Path


@dataclass(frozen=True)
class ParamSpec:
    """One declared notebook parameter: name, annotated type, default source text and help."""

    name: str
    type_name: str
    default: str
    help: str = ""


@dataclass
class Experiment:
    """A loaded experiment file: its name, path, `common` block and stage blocks."""

    name: str
    path: Path
    common: dict[str, Any]
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)


def display_path(path: Path | str) -> str:
    """Path relative to the working directory when it lies below it, else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _suggest(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean X?)` for the closest candidate, or an empty string."""
    matches = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {matches[0]}?)" if matches else ""


def discover_stages(notebooks_dir: Path | str) -> list[Stage]:
    """Numbered notebooks (`NN_name.ipynb`) in a directory, sorted by stem."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise ConfigError(f"{display_path(notebooks_dir)}: notebooks directory not found")
    stages = []
    for path in sorted(notebooks_dir.iterdir()):
        match = _STAGE_FILE.match(path.name)
        if match and path.is_file():
            stages.append(Stage(stem=path.stem, block=match["block"], path=path))
    by_block: dict[str, list[str]] = {}
    for stage in stages:
        by_block.setdefault(stage.block, []).append(stage.stem)
    clashes = [stems for stems in by_block.values() if len(stems) > 1]
    if clashes:
        names = "; ".join(" and ".join(stems) for stems in clashes)
        raise ConfigError(
            f"{display_path(notebooks_dir)}: notebooks share a params block name: {names}"
        )
    return stages


def notebook_parameters(path: Path | str) -> dict[str, ParamSpec]:
    """Parameters declared in a notebook's `parameters` cell, in declaration order."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{display_path(path)}: notebook not found") from None
    return dict(_read_parameters(str(path), stat.st_mtime_ns, stat.st_size))


@functools.cache
def _read_parameters(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, ParamSpec], ...]:
    """Parse once per notebook version; the mtime and size make an edited notebook re-read."""
    # papermill takes ~2 s to import; only pay for it when a notebook is inspected.
    import papermill

    # Inspection logs "Input Notebook: ..." (reads like a run) and "Unable to parse line" for
    # declarations it misses, which _declared_in_cell recovers below.
    logger = logging.getLogger("papermill")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        inspected = papermill.inspect_notebook(path)
    except Exception as error:
        raise ConfigError(f"{display_path(path)}: cannot read its parameters: {error}") from error
    finally:
        logger.setLevel(level)
    specs = {
        name: ParamSpec(
            name=name,
            type_name=str(entry.get("inferred_type_name") or "None"),
            default=str(entry.get("default", "")),
            help=str(entry.get("help") or ""),
        )
        for name, entry in inspected.items()
    }
    # papermill's line regex silently drops some valid declarations (`x: int | None = None`,
    # a default containing `=`); recover them from the cell's syntax tree.
    declared = _declared_in_cell(path)
    ordered = {name: specs.get(name, spec) for name, spec in declared.items()}
    ordered.update({name: spec for name, spec in specs.items() if name not in ordered})
    return tuple(ordered.items())


def _declared_in_cell(path: str) -> dict[str, ParamSpec]:
    """Top-level assignments in the first cell tagged `parameters` (empty if unparseable)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    cell = next(
        (c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])),
        None,
    )
    if cell is None:
        return {}
    source = cell.source
    try:
        tree = ast.parse(source)
        comments = {
            token.start[0]: token.string.lstrip("#").strip()
            for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT
        }
    except (SyntaxError, tokenize.TokenError):
        return {}
    declared = {}
    for statement in tree.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            name, type_name = statement.target.id, ast.unparse(statement.annotation)
        elif (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            name, type_name = statement.targets[0].id, "None"
        else:
            continue
        default = ast.unparse(statement.value) if statement.value is not None else ""
        help_text = comments.get(statement.end_lineno or statement.lineno, "")
        declared[name] = ParamSpec(name, type_name, default, help_text)
    return declared


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate mapping keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_experiment(
    path: Path | str,
    overrides: Sequence[str] = (),
    *,
    stages: Sequence[Stage] | None = None,
) -> Experiment:
    """Read an experiment file and apply `block.key=value` overrides; with `stages`, check blocks."""
    path = Path(path)
    where = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: experiment file not found") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: invalid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of blocks, got {_type_name(data)}")
    blocks: dict[str, dict[str, Any]] = {}
    for block, content in data.items():
        if not isinstance(block, str):
            raise ConfigError(f"{where}: {block!r}: block names must be strings")
        if content is None:
            content = {}
        if not isinstance(content, dict):
            raise ConfigError(f"{where}: {block}: expected a mapping, got {_type_name(content)}")
        bad_keys = [key for key in content if not isinstance(key, str)]
        if bad_keys:
            raise ConfigError(f"{where}: {block}.{bad_keys[0]!r}: parameter names must be strings")
        blocks[block] = dict(content)
    for override in overrides:
        block, key, value = _parse_override(where, override)
        blocks.setdefault(block, {})[key] = value
    common = blocks.pop(COMMON, None)
    if common is None:
        raise ConfigError(f"{where}: {COMMON}: missing block (it must name the experiment)")
    name = common.get("experiment")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: {COMMON}.experiment: missing or not a non-empty string")
    experiment = Experiment(name=name, path=path, common=common, blocks=blocks)
    if stages is not None:
        problems = _unknown_blocks(experiment, stages)
        if problems:
            raise ConfigError("\n".join(problems))
    return experiment


def _parse_override(where: str, override: str) -> tuple[str, str, Any]:
    """Split `block.key=value` and parse the value as YAML."""
    target, equals, raw_value = override.partition("=")
    block, dot, key = target.strip().partition(".")
    if not equals or not dot or not _IDENTIFIER.match(block) or not _IDENTIFIER.match(key):
        raise ConfigError(
            f"{where}: override {override!r}: expected block.key=value (e.g. sft.max_steps=5)"
        )
    try:
        value = yaml.safe_load(raw_value)
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: override {override!r}: invalid YAML value: {error}") from None
    return block, key, value


def _unknown_blocks(experiment: Experiment, stages: Sequence[Stage]) -> list[str]:
    """One problem line per block that names no notebook stage."""
    known = [stage.block for stage in stages]
    where = display_path(experiment.path)
    return [
        f"{where}: {block}: no notebook stage has this block"
        f" (known: {', '.join(known) or 'none'}){_suggest(block, known)}"
        for block in experiment.blocks
        if block not in known and block not in TOOL_BLOCKS
    ]


def stage_parameters(experiment: Experiment, stage: Stage) -> dict[str, Any]:
    """Common keys the stage's notebook declares, then its block on top, type-checked."""
    params, problems = _merge(experiment, stage)
    if problems:
        raise ConfigError("\n".join(problems))
    return params


def _merge(experiment: Experiment, stage: Stage) -> tuple[dict[str, Any], list[str]]:
    """Merged, coerced parameters of one stage and the problems found on the way."""
    specs = notebook_parameters(stage.path)
    where = display_path(experiment.path)
    block = experiment.blocks.get(stage.block, {})
    problems = []
    for key in block:
        if key not in specs:
            problems.append(
                f"{where}: {stage.block}.{key}: unknown parameter for "
                f"{display_path(stage.path)}{_suggest(key, specs)}"
            )
    merged = {}
    for scope, values in ((COMMON, experiment.common), (stage.block, block)):
        for key, value in values.items():
            if key not in specs:
                continue
            try:
                merged[key] = coerce(value, specs[key].type_name)
            except TypeMismatch as mismatch:
                problems.append(f"{where}: {scope}.{key}{mismatch.where}: {mismatch}")
    ordered = {key: merged[key] for key in specs if key in merged}
    return ordered, problems


def _resolve_all(
    experiment: Experiment, stages: Sequence[Stage]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Merged parameters of every stage and every problem in the experiment."""
    problems = _unknown_blocks(experiment, stages)
    declared = {name for stage in stages for name in notebook_parameters(stage.path)}
    where = display_path(experiment.path)
    notebooks = display_path(stages[0].path.parent) if stages else "the notebooks"
    for key in experiment.common:
        if key not in declared and key not in RUNNER_KEYS:
            problems.append(
                f"{where}: {COMMON}.{key}: not a parameter of any notebook in "
                f"{notebooks}{_suggest(key, declared)}"
            )
    resolved = {}
    for stage in stages:
        resolved[stage.stem], stage_problems = _merge(experiment, stage)
        problems.extend(stage_problems)
    # A common key declared by several notebooks would otherwise repeat the same line.
    return resolved, list(dict.fromkeys(problems))


def validate_experiment(experiment: Experiment, stages: Sequence[Stage]) -> None:
    """Raise one ConfigError listing every problem of the experiment, one per line."""
    _, problems = _resolve_all(experiment, stages)
    if problems:
        raise ConfigError("\n".join(problems))


def resolved_parameters(
    experiment: Experiment, stages: Sequence[Stage]
) -> dict[str, dict[str, Any]]:
    """Stem → merged, validated parameters for every stage (as saved in params.resolved.yaml)."""
    resolved, problems = _resolve_all(experiment, stages)
    if problems:
        raise ConfigError("\n".join(problems))
    return resolved


class TypeMismatch(TypeError):
    """A value that does not fit a declared type; `where` locates it inside the value."""

    def __init__(self, expected: str, value: Any, where: str = "") -> None:
        super().__init__(f"expected {expected}, got {_type_name(value)} ({value!r})")
        self.where = where


def _type_name(value: Any) -> str:
    """YAML-minded name of a value's type."""
    return "null" if value is None else type(value).__name__


def coerce(value: Any, type_name: str) -> Any:
    """Check a value against a declared type name, converting int or numeric str to float."""
    if type_name in ("", "None"):
        return value
    try:
        annotation = ast.parse(type_name, mode="eval").body
    except SyntaxError:
        return value
    return _coerce(value, annotation, "")


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}
_CONTAINERS = {"list": list, "List": list, "dict": dict, "Dict": dict}


def _annotation_name(node: ast.expr) -> str | None:
    """`Optional` for both `Optional` and `typing.Optional`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _alternatives(node: ast.expr) -> list[ast.expr] | None:
    """Members of `A | B` or `Union[A, B]`, or None for anything else."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return (_alternatives(node.left) or [node.left]) + (
            _alternatives(node.right) or [node.right]
        )
    if isinstance(node, ast.Subscript) and _annotation_name(node.value) == "Union":
        items = node.slice
        return list(items.elts) if isinstance(items, ast.Tuple) else [items]
    return None


def _is_none(node: ast.expr) -> bool:
    """Whether an annotation node is `None`."""
    return isinstance(node, ast.Constant) and node.value is None


def _coerce(value: Any, node: ast.expr, where: str) -> Any:
    """Recursive check of `value` against an annotation node."""
    expected = ast.unparse(node)
    if _is_none(node):
        if value is None:
            return None
        raise TypeMismatch("null", value, where)
    alternatives = _alternatives(node)
    if isinstance(node, ast.Subscript) and _annotation_name(node.value) == "Optional":
        alternatives = [node.slice, ast.Constant(None)]
    if alternatives is not None:
        if value is None and any(_is_none(option) for option in alternatives):
            return None
        options = [option for option in alternatives if not _is_none(option)]
        if len(options) == 1:
            return _coerce(value, options[0], where)
        for option in options:
            try:
                return _coerce(value, option, where)
            except TypeMismatch:
                continue
        raise TypeMismatch(expected, value, where)
    if isinstance(node, ast.Subscript):
        return _coerce_container(value, node, where)
    name = _annotation_name(node)
    if name in _SCALARS:
        return _coerce_scalar(value, name, where)
    if name in _CONTAINERS:
        if isinstance(value, _CONTAINERS[name]):
            return value
        raise TypeMismatch(expected, value, where)
    # Types we cannot check from YAML (Any, Path, ...) pass through unchanged.
    return value


def _coerce_scalar(value: Any, name: str, where: str) -> Any:
    """int, float, str or bool, where bool is never a number and 1e-4 may come as a string."""
    if name == "bool" or isinstance(value, bool):
        if name == "bool" and isinstance(value, bool):
            return value
        raise TypeMismatch(name, value, where)
    if name == "int" and isinstance(value, int):
        return value
    if name == "float":
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads `1e-4` without a dot as a string.
            try:
                return float(value)
            except ValueError:
                pass
    if name == "str" and isinstance(value, str):
        return value
    raise TypeMismatch(name, value, where)


def _coerce_container(value: Any, node: ast.Subscript, where: str) -> Any:
    """`list[X]` / `dict[K, V]` checked element by element; other generics pass through."""
    name = _annotation_name(node.value)
    if name not in _CONTAINERS:
        return value
    if not isinstance(value, _CONTAINERS[name]):
        raise TypeMismatch(ast.unparse(node), value, where)
    items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if isinstance(value, list):
        return [_coerce(item, items[0], f"{where}[{index}]") for index, item in enumerate(value)]
    if len(items) != 2:
        return value
    return {
        _coerce(key, items[0], f"{where}.{key}"): _coerce(item, items[1], f"{where}.{key}")
        for key, item in value.items()
    }
