"""`medlib lab` end to end: JupyterLab on a prepared shrunk tiny profile, "Run All Cells" clicked in Chromium."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
from browser_support import ROOT, TINY, free_port, isolated, medlib_command, serving, with_set

# The tiny profile shrunk to seconds: the notebook's mechanics in the browser are under test, not learning.
SHRUNK = ["data_exploration.synthetic_sizes={train: 48, validation: 16, test: 16}",
          "sft.max_steps=6", "sft.eval_steps=3", "sft.max_eval_samples=8", "sft.logging_steps=2",
          "sft.per_device_train_batch_size=8"]
RUN_TIMEOUT_S = 420


def lab_settings(folder: Path) -> dict[str, str]:
    """Environment for a JupyterLab of its own: every cell in the page (no windowing), no news or update checks."""
    settings = folder / "settings"
    for plugin, values in {"notebook-extension/tracker": {"windowingMode": "none"},
                           "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}
                           }.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return {"JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(folder / "runtime"), "JUPYTER_DATA_DIR": str(folder / "data")}


def run_all_in_browser(page, url: str, code_cells: int) -> None:
    """Open a notebook, wait for its kernel, click Run ▸ Run All Cells and wait until the kernel has stopped."""
    panel = ".jp-NotebookPanel:not(.lm-mod-hidden)"
    page.goto(url)
    page.wait_for_function(f"() => document.querySelectorAll('{panel} .jp-CodeCell').length === {code_cells}",
                           timeout=90_000)
    # The status bar names the notebook's kernel once its session is connected and idle.
    page.wait_for_function("() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
                           ".some(item => /\\(medlib\\) \\| Idle/.test(item.textContent))", timeout=180_000)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    quiet_polls = 0
    while quiet_polls < 3:  # idle, with nothing queued, three polls in a row
        assert not page.locator(".jp-Dialog").is_visible(), page.locator(".jp-Dialog").inner_text()
        assert time.monotonic() < deadline, f"Run All did not finish in {RUN_TIMEOUT_S} s"
        prompts = page.eval_on_selector_all(f"{panel} .jp-CodeCell .jp-InputPrompt",
                                            "cells => cells.map(cell => cell.textContent.trim())")
        status = page.get_attribute(f"{panel} .jp-Notebook-ExecutionIndicator", "data-status")
        started = any(prompt not in ("[ ]:", "") for prompt in prompts)
        quiet_polls = quiet_polls + 1 if status == "idle" and started and not any("*" in p for p in prompts) else 0
        page.wait_for_timeout(1000)
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.title.startsWith('●')", timeout=30_000)


def test_make_lab_then_run_all_runs_the_sft_notebook(page, tmp_path: Path, monkeypatch) -> None:
    from medlib.training.command import prepare_inputs, stage_settings

    # Paths relative to the repository root, as in params/tiny.yaml: they resolve only if the lab kernel
    # works where `medlib run` runs papermill, not in the lab folder.
    monkeypatch.chdir(ROOT)
    overrides = isolated(Path(os.path.relpath(tmp_path, ROOT))) + SHRUNK
    prepare_inputs(str(TINY), overrides)  # the synthetic records notebook 10 would write
    port = free_port()
    jupyter = ["--no-browser", "--ip=127.0.0.1", f"--port={port}", "--IdentityProvider.token=",
               "--ServerApp.password=", "--allow-root", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    command = medlib_command("lab", str(TINY), *with_set(overrides), "--jupyter", *jupyter)
    with serving(command, f"http://127.0.0.1:{port}/api/status", tmp_path / "lab.log",
                 env=lab_settings(tmp_path / "jupyter")):
        lab = tmp_path / "runs" / "lab"
        assert sorted(path.name for path in lab.glob("*.ipynb")) == [
            "10_data_exploration.ipynb", "20_sft.ipynb", "30_grpo.ipynb", "40_inference.ipynb",
            "50_metric_analysis.ipynb"]
        prepared = nbformat.read(lab / "20_sft.ipynb", as_version=4)
        # The parameters `medlib train sft` (and so `medlib run`) gives the stage, injected as papermill does.
        assert prepared.metadata.papermill.parameters == json.loads(json.dumps(
            stage_settings("sft", str(TINY), overrides)))
        assert [cell.metadata.get("tags", []) for cell in prepared.cells[:4] if cell.cell_type == "code"][:3] == [
            ["medlib-lab-cwd"], ["parameters"], ["injected-parameters"]]
        code_cells = sum(cell.cell_type == "code" for cell in prepared.cells)
        run_all_in_browser(page, f"http://127.0.0.1:{port}/lab/tree/20_sft.ipynb?reset", code_cells)

        loss_cell = page.locator(".jp-CodeCell", has_text="20_sft_loss")
        figure = loss_cell.locator(".jp-OutputArea-output img")
        figure.scroll_into_view_if_needed()
        assert figure.is_visible()
        assert figure.evaluate("img => img.complete && img.naturalWidth > 200")
        loss_cell.screenshot(path=str(tmp_path / "lab_loss_cell.png"))

    executed = nbformat.read(lab / "20_sft.ipynb", as_version=4)
    errors = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert not errors, f"{errors[0].ename}: {errors[0].evalue}" if errors else ""
    unexecuted = [index for index, cell in enumerate(executed.cells)
                  if cell.cell_type == "code" and cell.execution_count is None]
    assert not unexecuted, f"cells never ran: {unexecuted}"
    (loss,) = [cell for cell in executed.cells if "20_sft_loss" in cell.source]
    assert any("image/png" in output.get("data", {}) for output in loss.outputs)
    # What `medlib run` would have left for this stage: the figure and the stage's metrics block.
    results = tmp_path / "results"
    assert (results / "figures" / "20_sft_loss.png").stat().st_size > 0
    assert json.loads((results / "metrics.json").read_text())["20_sft"]["global_step"] == 6
    assert (tmp_path / "runs" / "sft" / "final").is_dir()
