"""`medlib report` over fake results folders: leaderboard, CIs, links, provenance, tolerance."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import nbformat
import pytest

from medlib import cli
from medlib.pipeline.leaderboard import build_report, data_fingerprint, params_hash


def analysis(accuracy: float, low: float, high: float) -> dict:
    """A 50_metric_analysis block shaped like the notebook's, for one checkpoint `sft`."""
    group = {"dataset": "synthetic_lesions", "task": "vqa_closed", "primary": "exact_match",
             "metrics": {"exact_match": accuracy},
             "ci": {"exact_match": {"value": accuracy, "low": low, "high": high, "n": 100}}}
    return {"headline": {"image_question_type": "presence",
                         "sft": {"accuracy": accuracy, "format_valid": 1.0, "image_question_accuracy": accuracy}},
            "task_scores": {"sft": {"groups": [group]}}}


def executed_notebook(path: Path, code: str) -> None:
    """An 'executed' notebook with one code cell and its output."""
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(code)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="visible output\n")]
    notebook.cells = [nbformat.v4.new_markdown_cell("# Stage"), cell]
    nbformat.write(notebook, path)


def results_folder(root: Path, name: str, metrics: dict | str, *, data_dir: Path | None = None) -> Path:
    """results/<name>/ with metrics.json, env.json, params.resolved.yaml, stages.json and a notebook."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    (folder / "env.json").write_text(json.dumps({
        "git_commit": "abc123def4567890", "git_dirty": False, "device": "NVIDIA H100", "device_count": 2,
        "packages": {"torch": "2.13.0", "transformers": "5.23.0", "unsloth": None},
        "timestamp_utc": "2026-11-22T00:00:00+00:00"}))
    data_line = f"  data_dir: {data_dir}\n" if data_dir else ""
    (folder / "params.resolved.yaml").write_text(
        f"# header\n10_data_exploration:\n  experiment: {name}\n{data_line}")
    (folder / "stages.json").write_text(json.dumps({"10_data_exploration": {"status": "completed"}}))
    executed_notebook(folder / "10_data_exploration.ipynb", "secret_code_marker = 1\nprint('visible output')")
    (folder / "10_data_exploration.html").write_text("<html>full</html>")
    return folder


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Three experiments: a strong one, a weaker one with its data, one with only stage 10 run."""
    root = tmp_path / "results"
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"id": "a"}\n')
    results_folder(root, "weak", {"50_metric_analysis": analysis(0.6, 0.5, 0.7)}, data_dir=data)
    results_folder(root, "strong", {"50_metric_analysis": analysis(0.9, 0.85, 0.95)})
    results_folder(root, "partial", {"10_data_exploration": {"records": {"train": 1}}})
    results_folder(root, "broken", "{not json")
    (root / "not_an_experiment").mkdir()
    return root


def test_leaderboard_ranks_by_accuracy_with_confidence_intervals(results: Path) -> None:
    paths = build_report(results)
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert [(row["experiment"], row["checkpoint"]) for row in rows] == [("strong", "sft"), ("weak", "sft")]
    assert rows[0]["vqa_closed:exact_match"] == "0.9" and rows[0]["vqa_closed:exact_match_low"] == "0.85"
    assert rows[0]["git_commit"] == "abc123def4567890" and rows[0]["device"] == "NVIDIA H100"
    markdown = paths["markdown"].read_text()
    assert "| strong | sft | 0.900 | 1.000 | 0.900 | 0.900 [0.850, 0.950] | abc123def4 |" in markdown
    assert markdown.index("| strong") < markdown.index("| weak")


def test_index_links_notebooks_code_hidden_versions_and_provenance(results: Path) -> None:
    index = build_report(results)["index"].read_text()
    for name in ("strong", "weak", "partial", "broken"):
        assert f'id="{name}"' in index
    assert 'href="strong/10_data_exploration.html"' in index
    assert 'href="strong/10_data_exploration.noinput.html"' in index
    assert "abc123def4567890" in index and "NVIDIA H100 × 2" in index and "transformers 5.23.0" in index
    assert "no 50_metric_analysis metrics yet" in index and "metrics.json unreadable" in index
    assert "not_an_experiment" not in index
    hidden = (results / "strong" / "10_data_exploration.noinput.html").read_text()
    assert "visible output" in hidden and "secret_code_marker" not in hidden


def test_params_hash_ignores_comments_and_order_but_not_values(tmp_path: Path) -> None:
    one, two, three = (tmp_path / f"{n}.yaml" for n in "abc")
    one.write_text("# a\nsft:\n  r: 8\n  lr: 0.1\n")
    two.write_text("# b\nsft:\n  lr: 0.1\n  r: 8\n")
    three.write_text("sft:\n  r: 16\n  lr: 0.1\n")
    assert params_hash(one) == params_hash(two) != params_hash(three)


def test_data_fingerprint_follows_the_records(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"id": "a"}\n')
    first = data_fingerprint(tmp_path)
    (tmp_path / "train.jsonl").write_text('{"id": "b"}\n')
    assert first and data_fingerprint(tmp_path) not in (None, first)
    assert data_fingerprint(tmp_path / "missing") is None


def test_report_shows_the_data_fingerprint(results: Path) -> None:
    index = build_report(results)["index"].read_text()
    assert data_fingerprint(results.parent / "data") in index


def test_cli_report(results: Path, capsys) -> None:
    assert cli.main(["report", str(results), "--no-render"]) == 0
    assert "index.html" in capsys.readouterr().out
    assert not (results / "strong" / "10_data_exploration.noinput.html").exists()
