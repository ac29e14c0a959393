"""Read a notebook's `parameters` cell (for notebooks without a declaration) and write generated ones."""
from __future__ import annotations

import ast
import functools
import io
import logging
import tokenize
from pathlib import Path

from medlib.pipeline.declaration import ParamSpec, parameters_cell, specs


def notebook_parameters(path: Path | str) -> dict[str, ParamSpec]:
    """Parameters declared in a notebook's `parameters` cell, in declaration order."""
    from medlib.pipeline.config import ConfigError, display_path

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

    from medlib.pipeline.config import ConfigError, display_path

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




def cell_drift(path: Path | str, cls: type) -> list[str]:
    """How a notebook's parameters cell differs from its declaration (name, type, default, help); empty if equal."""
    declared, written = specs(cls), _declared_in_cell(str(Path(path).resolve()))
    problems = [f"{name}: declared but missing from the cell" for name in declared if name not in written]
    problems += [f"{name}: in the cell but not declared" for name in written if name not in declared]
    for name in declared.keys() & written.keys():
        want, have = declared[name], written[name]
        for part in ("type_name", "help"):
            if getattr(want, part) != getattr(have, part):
                problems.append(f"{name}: {part} is {getattr(have, part)!r} in the cell, {getattr(want, part)!r} declared")
        if not _same_value(have.default, want.value):
            problems.append(f"{name}: default is {have.default} in the cell, {want.default} declared")
    if not problems and list(declared) != list(written):
        problems.append("parameters are not in declaration order")
    return problems


def _same_value(source: str, value: object) -> bool:
    """Whether a cell's default source text evaluates to the declared value (and type)."""
    try:
        written = ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return False
    return written == value and type(written) is type(value)


def write_parameters_cell(path: Path | str, cls: type) -> bool:
    """Regenerate a notebook's parameters cell from its declaration; True if the file changed."""
    import json

    path = Path(path)
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cell = next((c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise ValueError(f"{path}: no cell tagged `parameters`")
    source = parameters_cell(cls)
    if "".join(cell["source"]) == source:
        return False
    cell["source"] = source.splitlines(keepends=True)
    text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return True


def add_parser(subparsers) -> None:
    """Register `medlib notebook-params [STAGE ...] [--write | --check]` on the CLI."""
    parser = subparsers.add_parser(
        "notebook-params", help="print or regenerate the notebooks' parameters cells from the stage declarations",
        description="The parameters cell of each notebook is generated from its stage's declaration "
        "(medlib/*/params.py). Without options, print the cells; --write regenerates the notebooks; "
        "--check exits 1 when a notebook differs.")
    parser.add_argument("stages", nargs="*", help="stems or blocks, e.g. 20_sft or sft (default: all)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite the parameters cells in the notebooks")
    action.add_argument("--check", action="store_true", help="exit 1 if a notebook's cell differs from its declaration")
    parser.add_argument("--notebooks", default="notebooks", help="notebooks folder (default: %(default)s)")
    parser.set_defaults(handler=_notebook_params)


def _notebook_params(args) -> int:
    """Handler of `medlib notebook-params`."""
    import sys

    from medlib.pipeline.declaration import STAGE_STEMS, declaration

    wanted = set(args.stages)
    unknown = wanted - set(STAGE_STEMS) - set(STAGE_STEMS.values())
    if unknown:
        print(f"medlib notebook-params: unknown stage(s): {', '.join(sorted(unknown))} "
              f"(known: {', '.join(STAGE_STEMS.values())})", file=sys.stderr)
        return 2
    status = 0
    for block, stem in STAGE_STEMS.items():
        if wanted and block not in wanted and stem not in wanted:
            continue
        cls, path = declaration(block), Path(args.notebooks) / f"{stem}.ipynb"
        if args.write:
            print(f"[medlib] {path}: {'regenerated' if write_parameters_cell(path, cls) else 'up to date'}")
        elif args.check:
            for problem in cell_drift(path, cls):
                print(f"{path}: {problem}", file=sys.stderr)
                status = 1
        else:
            print(f"# {stem} ({cls.__module__}.{cls.__name__})\n{parameters_cell(cls)}\n")
    return status
