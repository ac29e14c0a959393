"""Static checks of the source notebooks and the experiment files."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from medlib.pipeline.config import discover_stages, load_experiment, validate_experiment

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PARAMS = sorted((ROOT / "params").glob("*.yaml")) + sorted((ROOT / "params" / "tiny").glob("*.yaml"))
EXPECTED_STAGES = ["10_data_exploration", "20_sft", "30_grpo", "40_inference", "50_metric_analysis"]


def cells(path: Path) -> list[dict]:
    """Return the notebook's cells."""
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    """Return a cell's source as one string."""
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_the_five_stages_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED_STAGES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_annotated_literals_with_help(path: Path):
    tagged = [c for c in cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    text = source(tagged[0])
    for statement in ast.parse(text).body:
        assert isinstance(statement, ast.AnnAssign), f"{path.name}: not `name: type = value`: {ast.unparse(statement)}"
        ast.literal_eval(statement.value)  # raises on anything but a literal
    for line in text.splitlines():
        assert "  # " in line, f"{path.name}: parameter without a help comment: {line}"
        assert "=" not in line.split("  # ", 1)[1], f"{path.name}: '=' in a help comment hides it from papermill"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_sources_are_stripped_and_use_the_project_kernel(path: Path):
    notebook = json.loads(path.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "medlib"
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_starts_with_a_title_and_ends_by_recording(path: Path):
    all_cells = cells(path)
    assert all_cells[0]["cell_type"] == "markdown" and source(all_cells[0]).startswith(f"# {path.stem[:2]} · ")
    last_code = [c for c in all_cells if c["cell_type"] == "code"][-1]
    assert f'results.update_metrics(results_dir, "{path.stem}"' in source(last_code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_do_not_branch_on_the_profile(path: Path):
    for cell in cells(path):
        if cell["cell_type"] == "code" and "parameters" not in cell.get("metadata", {}).get("tags", []):
            for node in ast.walk(ast.parse(source(cell))):
                if isinstance(node, (ast.If, ast.IfExp)):
                    assert "experiment" not in ast.unparse(node.test), f"{path.name}: branches on the experiment"


@pytest.mark.parametrize("path", PARAMS, ids=lambda p: str(p.relative_to(ROOT / "params").with_suffix("")))
def test_every_experiment_file_validates_against_the_notebooks(path: Path):
    stages = discover_stages(ROOT / "notebooks")
    validate_experiment(load_experiment(path), stages)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_the_stage_declaration(path: Path) -> None:
    """Names, types, defaults and help of the cell equal the declaration (`medlib notebook-params --write`)."""
    from medlib.pipeline.declaration import declaration
    from medlib.pipeline.notebook_cells import cell_drift

    block = path.stem.split("_", 1)[1]
    assert cell_drift(path, declaration(block)) == []
