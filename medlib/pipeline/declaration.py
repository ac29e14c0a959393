"""One typed declaration per stage: `param()` fields, their specs, strict construction and the notebook cell.

Each stage's parameters are a dataclass (as TRL's `TrlParser` reads its configs): the notebook's
`parameters` cell, YAML validation, `medlib train` and the TRL/peft configs all derive from it.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, TypeVar

ParamsT = TypeVar("ParamsT")

# Stage params block → "module:class" of its declaration (imported lazily: no torch at validation time).
STAGE_DECLARATIONS: dict[str, str] = {
    "data_exploration": "medlib.data.params:DataExplorationParams",
    "sft": "medlib.training.params:SFTParams",
    "grpo": "medlib.training.params:GRPOParams",
    "inference": "medlib.evaluation.params:InferenceParams",
    "metric_analysis": "medlib.evaluation.params:MetricAnalysisParams",
}
# The notebook stem of each declared block (notebooks/<stem>.ipynb).
STAGE_STEMS: dict[str, str] = {
    "data_exploration": "10_data_exploration", "sft": "20_sft", "grpo": "30_grpo",
    "inference": "40_inference", "metric_analysis": "50_metric_analysis",
}


def param(default: Any, help: str) -> Any:
    """A declared parameter: its default (lists/dicts copied per instance) and one line of help."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def retune(base: type, name: str, default: Any, help: str | None = None) -> Any:
    """A stage's own default for a parameter its base declares; the help stays the base's unless given."""
    declared = next(f for f in dataclasses.fields(base) if f.name == name)
    return param(default, help or declared.metadata["help"])


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: name, annotated type, default source text, help, and the default value."""

    name: str
    type_name: str
    default: str
    help: str = ""
    value: Any = None


def declaration(block: str) -> type | None:
    """The dataclass declaring a stage block's parameters, or None for an undeclared (user) notebook."""
    target = STAGE_DECLARATIONS.get(block)
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def literal(value: Any) -> str:
    """Python source for a default, strings in double quotes (the style of the parameters cells)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _default(declared: dataclasses.Field) -> Any:
    """A field's default value (a fresh copy for mutable defaults)."""
    if declared.default is not MISSING:
        return declared.default
    if declared.default_factory is not MISSING:
        return declared.default_factory()
    raise TypeError(f"parameter {declared.name} has no default")


def specs(cls: type) -> dict[str, ParamSpec]:
    """Name → spec of every field of a declaration, in declaration order."""
    out = {}
    for declared in dataclasses.fields(cls):
        value = _default(declared)
        type_name = declared.type if isinstance(declared.type, str) else getattr(declared.type, "__name__", "")
        out[declared.name] = ParamSpec(declared.name, type_name, literal(value), declared.metadata.get("help", ""), value)
    return out


def defaults(cls: type) -> dict[str, Any]:
    """Name → default value of every declared parameter."""
    return {name: spec.value for name, spec in specs(cls).items()}


def parameters_cell(cls: type) -> str:
    """The notebook `parameters` cell for a declaration: `name: type = default  # help`, one per line."""
    lines = [f"{s.name}: {s.type_name} = {s.default}  # {s.help}" for s in specs(cls).values()]
    return "\n".join(lines)


def build(cls: type[ParamsT], values: Mapping[str, Any], *, where: str = "parameters") -> ParamsT:
    """Construct a declaration from a mapping; unknown names are an error naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown parameter(s) for {cls.__name__}: {', '.join(unknown)}")
    return cls(**dict(values))


def conflicts(params: Any) -> list[str]:
    """'field: why' lines for settings of one declaration that cannot work together (its `conflicts()`, if any)."""
    check = getattr(params, "conflicts", None)
    return list(check()) if callable(check) else []


def refuse_conflicts(params: Any, block: str) -> None:
    """ValueError listing every conflict among a stage's settings, each named `block.field`."""
    found = conflicts(params)
    if found:
        raise ValueError("\n".join(f"{block}.{line}" for line in found))


def pick(cls: type[ParamsT], namespace: Mapping[str, Any]) -> ParamsT:
    """Construct a declaration from the names it declares in a namespace (a notebook's globals)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in namespace.items() if k in names})


def experiment_dirs(experiment: str, runs_dir: str = "", results_dir: str = "") -> tuple[str, str]:
    """`runs/<experiment>` and `results/<experiment>` unless a profile names other folders."""
    return runs_dir or f"runs/{experiment}", results_dir or f"results/{experiment}"
