"""`medlib run --resume` skips a completed stage only while its inputs are the ones it completed with."""

from __future__ import annotations

from pathlib import Path

import nbformat

from medlib.pipeline.runner import read_stage_states, run_experiment
from medlib.pipeline.stage_state import input_fingerprints, stage_digest, stale_reason

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
INFERENCE_PARAMETERS = """\
results_dir: str = "r"  # out
runs_dir: str = "runs/x"  # checkpoints
checkpoints: list = ["sft"]  # what to predict with
"""
COUNTING = 'from pathlib import Path\nwith open(Path(results_dir) / "runs.count", "a") as f: f.write("x")\n'


def test_a_stage_reruns_when_its_upstream_checkpoint_vanished(tmp_path: Path, capsys) -> None:
    """Issue 17 item 10: 40_inference must not be skipped after runs/<exp>/sft was deleted."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = KERNELSPEC
    cell = nbformat.v4.new_code_cell(INFERENCE_PARAMETERS)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [cell, nbformat.v4.new_code_cell(COUNTING)]
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook, tmp_path / "notebooks" / "40_inference.ipynb")
    final = tmp_path / "runs" / "sft" / "final"
    final.mkdir(parents=True)
    (final / "model.safetensors").write_text("weights")
    params = tmp_path / "exp.yaml"
    params.write_text(f"common:\n  experiment: exp\n  results_dir: {tmp_path}/results\n"
                      f"inference:\n  runs_dir: {tmp_path}/runs\n")
    results = tmp_path / "results"

    def run() -> str:
        run_experiment(params, notebooks_dir=tmp_path / "notebooks", log_output=False, resume=True)
        return capsys.readouterr().out

    run()
    assert run().count("completed earlier, skipped") == 1
    (final / "model.safetensors").unlink()
    final.rmdir()
    printed = run()
    assert f"its inputs vanished since it completed: {final}" in printed
    assert (results / "runs.count").read_text() == "xx"
    assert read_stage_states(results)["40_inference"]["inputs"][str(final)] == "missing"


def test_changed_records_make_a_completed_stage_stale(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"id": 1}\n')
    (data / "image.png").write_bytes(b"not counted: records name their images")
    parameters = {"data_dir": str(data), "model_id": "Qwen/Qwen2.5-VL-7B-Instruct", "resume": True}
    recorded = input_fingerprints("sft", parameters, tmp_path)
    assert list(recorded) == [str(data)]  # a hub id has nothing local to fingerprint
    state = {"status": "completed", "params_hash": stage_digest(parameters), "inputs": recorded}
    notebook = tmp_path / "20_sft.ipynb"
    notebook.write_text("{}")
    assert stale_reason(state, parameters, recorded, notebook) is None
    # `resume` decides how a stage starts, not what it produces.
    assert stale_reason(state, {**parameters, "resume": False}, recorded, notebook) is None
    (data / "image.png").write_bytes(b"changed image bytes, same records")
    assert stale_reason(state, parameters, input_fingerprints("sft", parameters, tmp_path), notebook) is None
    (data / "train.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    reason = stale_reason(state, parameters, input_fingerprints("sft", parameters, tmp_path), notebook)
    assert reason == f"its inputs changed since it completed: {data}"
    assert stale_reason(state, {**parameters, "seed": 1}, recorded, notebook) == "its parameters changed"
    assert stale_reason({"status": "running"}, parameters, recorded, notebook) == "recorded as running"


def test_a_local_model_folder_that_vanished_counts_even_though_it_looks_like_a_path(tmp_path: Path) -> None:
    parameters = {"model_id": "runs/tiny/base-model", "runs_dir": "runs/tiny"}
    assert input_fingerprints("sft", parameters, tmp_path) == {"runs/tiny/base-model": "missing"}
