"""Load, merge and validate experiment YAML files against each stage's parameter declaration."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medlib.pipeline import declaration
from medlib.pipeline.coercion import TypeMismatch, _type_name, coerce
from medlib.pipeline.declaration import ParamSpec
from medlib.pipeline.notebook_cells import notebook_parameters

COMMON = "common"
# The runner's own keys: `experiment` names it, `skip_stages` lists stages the experiment does not have
# (Med-R1: no SFT, GRPO from the base model); no notebook declares or receives them.
SKIP_STAGES = "skip_stages"
RUNNER_KEYS = frozenset({"experiment", SKIP_STAGES})
# Blocks that configure the tooling around the notebooks, not a stage; their own module checks
# them (`slurm:` → medlib.pipeline.slurm) and no notebook ever receives them.
TOOL_BLOCKS = frozenset({"slurm"})
_STAGE_FILE = re.compile(r"^(?P<number>\d{2})_(?P<block>[A-Za-z0-9_]+)\.ipynb$")
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")


class ConfigError(ValueError):
    """An experiment file, override or stage selection that cannot be run."""


@dataclass(frozen=True)
class Stage:
    """One numbered notebook: its stem (`20_sft`), params block (`sft`) and path (None: declared, no notebook)."""

    stem: str
    block: str
    path: Path | None = None


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


def declared_stages() -> list[Stage]:
    """medlib's own stages from their declarations alone (what `medlib train` needs: no notebooks)."""
    return [Stage(stem=stem, block=block) for block, stem in declaration.STAGE_STEMS.items()]


def stage_specs(stage: Stage) -> dict[str, ParamSpec]:
    """A stage's parameters: its declaration, or a user notebook's parameters cell when it has none."""
    cls = declaration.declaration(stage.block)
    if cls is not None:
        return declaration.specs(cls)
    if stage.path is None:
        raise ConfigError(f"{stage.stem}: no parameter declaration and no notebook")
    return notebook_parameters(stage.path)


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
    from medlib.pipeline.paths import check_experiment_name  # it imports ConfigError from here

    check_experiment_name(name, where)  # the name becomes results/<name>/: no `..`, `/` or newline
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


def skipped_stages(experiment: Experiment, stages: Sequence[Stage]) -> set[str]:
    """Stems of the stages `common.skip_stages` leaves out (named by stem or block); ConfigError if unknown."""
    problems = _skip_problems(experiment, stages)
    if problems:
        raise ConfigError("\n".join(problems))
    named = set(experiment.common.get(SKIP_STAGES) or [])
    return {stage.stem for stage in stages if {stage.stem, stage.block} & named}


def _skip_problems(experiment: Experiment, stages: Sequence[Stage]) -> list[str]:
    """One problem line for a `common.skip_stages` that is not a list of known stage names."""
    names = experiment.common.get(SKIP_STAGES) or []
    where = f"{display_path(experiment.path)}: {COMMON}.{SKIP_STAGES}"
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return [f"{where}: expected a list of stage names, got {names!r}"]
    known = [name for stage in stages for name in (stage.block, stage.stem)]
    return [f"{where}: unknown stage {name!r} (known: {', '.join(s.block for s in stages)}){_suggest(name, known)}"
            for name in names if name not in known]


def stage_parameters(experiment: Experiment, stage: Stage) -> dict[str, Any]:
    """Every parameter of one stage for this experiment (defaults, `common`, the stage block), type-checked."""
    params, problems = _merge(experiment, stage)
    if problems:
        raise ConfigError("\n".join(problems))
    return params


def _merge(experiment: Experiment, stage: Stage) -> tuple[dict[str, Any], list[str]]:
    """Every parameter of one stage: declared defaults, then `common`, then the stage block, type-checked."""
    specs = stage_specs(stage)
    where = display_path(experiment.path)
    block = experiment.blocks.get(stage.block, {})
    source = display_path(stage.path) if stage.path else stage.stem
    problems = [f"{where}: {stage.block}.{key}: unknown parameter for {source}{_suggest(key, specs)}"
                for key in block if key not in specs]
    cls = declaration.declaration(stage.block)
    merged = declaration.defaults(cls) if cls is not None else {}
    for scope, values in ((COMMON, experiment.common), (stage.block, block)):
        for key, value in values.items():
            if key not in specs:
                continue
            try:
                merged[key] = coerce(value, specs[key].type_name)
            except TypeMismatch as mismatch:
                problems.append(f"{where}: {scope}.{key}{mismatch.where}: {mismatch}")
    if cls is not None and not problems:
        # Construct it: derived values (runs_dir, results_dir) are filled in exactly as training sees them.
        built = declaration.build(cls, merged, where=where)
        # Settings that cannot work together are refused here, not when their stage starts after earlier ones ran.
        problems.extend(f"{where}: {stage.block}.{line}" for line in declaration.conflicts(built))
        merged = dataclasses.asdict(built)
    ordered = {key: merged[key] for key in specs if key in merged}
    return ordered, problems


def _resolve_all(
    experiment: Experiment, stages: Sequence[Stage]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Merged parameters of every stage and every problem in the experiment."""
    problems = _unknown_blocks(experiment, stages) + _skip_problems(experiment, stages)
    declared = {name for stage in stages for name in stage_specs(stage)}
    where = display_path(experiment.path)
    notebooks = "the stages"
    for key in experiment.common:
        if key not in declared and key not in RUNNER_KEYS:
            problems.append(
                f"{where}: {COMMON}.{key}: not a parameter of any of {notebooks}{_suggest(key, declared)}"
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


