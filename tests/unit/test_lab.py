"""`medlib lab` preparation: papermill-injected parameters, the working-directory cell, the user's work kept."""
from __future__ import annotations

from pathlib import Path

import nbformat

from medlib.pipeline.lab import CWD_TAG, prepare_lab

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "params" / "tiny.yaml"


def isolated(tmp: Path) -> list[str]:
    """Overrides that keep the run's folders inside `tmp`."""
    return [f"common.runs_dir={tmp}/runs", f"common.data_dir={tmp}/runs/data", f"common.results_dir={tmp}/results"]


def test_lab_prepares_every_stage_keeps_edits_and_rewrites_when_fresh(tmp_path: Path) -> None:
    first = prepare_lab(TINY, overrides=isolated(tmp_path), notebooks_dir=ROOT / "notebooks")
    notebook = first.folder / "20_sft.ipynb"
    assert first.folder == tmp_path / "runs" / "lab" and len(first.written) == 5 and notebook in first.written
    prepared = nbformat.read(notebook, as_version=4)
    assert CWD_TAG in prepared.cells[0].metadata["tags"] and repr(str(ROOT)) in prepared.cells[0].source
    injected = next(cell for cell in prepared.cells if "injected-parameters" in cell.metadata.get("tags", []))
    assert f'runs_dir = "{tmp_path}/runs"' in injected.source and "max_steps = 600" in injected.source
    assert all(not cell.get("outputs") for cell in prepared.cells if cell.cell_type == "code")

    prepared.cells.append(nbformat.v4.new_markdown_cell("my notes"))
    nbformat.write(prepared, notebook)
    again = prepare_lab(TINY, overrides=isolated(tmp_path), notebooks_dir=ROOT / "notebooks")
    assert notebook in again.kept and not again.written and not again.stale and "my notes" in notebook.read_text()

    changed = prepare_lab(TINY, overrides=[*isolated(tmp_path), "sft.max_steps=3"], notebooks_dir=ROOT / "notebooks")
    assert changed.stale == [notebook] and "my notes" in notebook.read_text()

    fresh = prepare_lab(TINY, overrides=[*isolated(tmp_path), "sft.max_steps=3"], notebooks_dir=ROOT / "notebooks",
                        fresh=True)
    assert notebook in fresh.written and "my notes" not in notebook.read_text()
    assert nbformat.read(notebook, as_version=4).metadata.papermill.parameters["max_steps"] == 3
