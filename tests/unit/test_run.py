"""The papermill runner and the `medlib run` command, with real runs of tiny notebooks."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from medlib import cli
from medlib.pipeline.config import ConfigError, discover_stages, load_experiment
from medlib.pipeline.runner import StageFailed, results_directory, run_experiment, select_stages

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

FIRST_PARAMETERS = """\
experiment: str = "default"  # experiment name
results_dir: str = "results/default"  # where results go
message: str = "hello"  # text to write
"""
FIRST_BODY = """\
import os
from pathlib import Path
Path("cwd_seen_by_first.txt").write_text(os.getcwd())
(Path(results_dir) / "first.txt").write_text(f"{experiment}:{message}")
print("first says", message)
"""
SECOND_PARAMETERS = """\
results_dir: str = "results/default"  # where results go
factor: float = 1.0  # a number
"""
SECOND_BODY = """\
from pathlib import Path
(Path(results_dir) / "second.txt").write_text(repr(factor))
"""
FAILING_BODY = """\
value = 1
raise ValueError(f"bad value {value}")
"""


def write_notebook(path: Path, parameters: str, body: str) -> Path:
    """A notebook: title, tagged parameters cell, then one code cell."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = KERNELSPEC
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Stage"),
        cell,
        nbformat.v4.new_code_cell(body),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repo with notebooks/10_first, notebooks/20_second and params/exp.yaml."""
    write_notebook(tmp_path / "notebooks" / "10_first.ipynb", FIRST_PARAMETERS, FIRST_BODY)
    write_notebook(tmp_path / "notebooks" / "20_second.ipynb", SECOND_PARAMETERS, SECOND_BODY)
    params = tmp_path / "params" / "exp.yaml"
    params.parent.mkdir()
    params.write_text(
        "common:\n  experiment: exp\nfirst:\n  message: hi\nsecond:\n  factor: 2\n",
        encoding="utf-8",
    )
    return tmp_path


def test_select_stages_by_stem_block_and_from(repo: Path) -> None:
    stages = discover_stages(repo / "notebooks")
    first, second = stages
    assert select_stages(stages) == [first, second]
    assert select_stages(stages, ["second", "10_first"]) == [first, second]
    assert select_stages(stages, ["20_second"]) == [second]
    assert select_stages(stages, from_stage="second") == [second]
    assert select_stages(stages, from_stage="10_first") == [first, second]
    with pytest.raises(
        ConfigError, match=r"unknown stage 'third' \(known stages: 10_first, 20_second\)"
    ):
        select_stages(stages, ["third"], where="params/exp.yaml")
    with pytest.raises(ConfigError, match="not both"):
        select_stages(stages, ["first"], from_stage="second")


def test_results_directory_defaults_to_results_experiment(repo: Path) -> None:
    stages = discover_stages(repo / "notebooks")
    experiment = load_experiment(repo / "params" / "exp.yaml")
    assert results_directory(experiment, stages) == "results/exp"
    experiment = load_experiment(repo / "params" / "exp.yaml", ["common.results_dir=out/x"])
    assert results_directory(experiment, stages) == "out/x"


def test_run_experiment_executes_renders_and_records(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = run_experiment(
        repo / "params" / "exp.yaml",
        overrides=["second.factor=3"],
        notebooks_dir=repo / "notebooks",
        log_output=False,
    )
    assert results == repo / "results" / "exp"
    for name in ("10_first.ipynb", "10_first.html", "20_second.ipynb", "20_second.html"):
        assert (results / name).stat().st_size > 0, name
    # Notebooks ran with cwd = repo root and received the runner's results_dir.
    assert (repo / "cwd_seen_by_first.txt").read_text() == str(repo)
    assert (results / "first.txt").read_text() == "exp:hi"
    assert (results / "second.txt").read_text() == "3.0"
    resolved = yaml.safe_load((results / "params.resolved.yaml").read_text())
    assert resolved == {
        "10_first": {"experiment": "exp", "results_dir": "results/exp", "message": "hi"},
        "20_second": {"results_dir": "results/exp", "factor": 3.0},
    }
    assert "second.factor=3" in (results / "params.resolved.yaml").read_text()
    assert "python" in json.loads((results / "env.json").read_text())
    executed = nbformat.read(results / "10_first.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "first says hi" in printed
    assert "first says hi" in (results / "10_first.html").read_text()
    log = capsys.readouterr().out
    assert "[medlib] 10_first: started" in log
    assert "[medlib] 20_second: finished in" in log


def test_failing_cell_raises_stage_failed_and_stops_the_chain(repo: Path) -> None:
    write_notebook(repo / "notebooks" / "10_first.ipynb", FIRST_PARAMETERS, FAILING_BODY)
    with pytest.raises(StageFailed) as raised:
        run_experiment(
            repo / "params" / "exp.yaml",
            notebooks_dir=repo / "notebooks",
            log_output=False,
        )
    error = raised.value
    results = repo / "results" / "exp"
    assert error.stem == "10_first"
    assert error.notebook == results / "failed" / "10_first.ipynb"
    assert (error.ename, error.evalue) == ("ValueError", "bad value 1")
    # Cells of the executed notebook: title, parameters, injected parameters, failing cell.
    assert (error.cell_index, error.exec_count) == (3, 3)
    message = str(error)
    assert "stage 10_first failed at cell 3 (In [3]): ValueError: bad value 1" in message
    assert str(results / "failed" / "10_first.ipynb") in message
    assert (results / "failed" / "10_first.html").exists()
    assert not (results / "20_second.ipynb").exists()


STAGE_WITH_RESULTS = """\
from medlib.pipeline import results
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig = plt.figure(); plt.plot([1, 2], [int(message == "bad"), 1])
results.save_figure(fig, results_dir, "10_curve")
(results.ensure_dir(results_dir, "tables") / "10_table.csv").write_text(message)
if message == "bad":
    raise ValueError("bad message")
results.update_metrics(results_dir, "10_first", {"message": message})
"""


def test_a_failed_stage_leaves_the_previous_results_intact(repo: Path) -> None:
    """Issue 17 item 1: a failing rerun must not replace the good notebook, figures, tables or metrics."""
    write_notebook(repo / "notebooks" / "10_first.ipynb", FIRST_PARAMETERS, STAGE_WITH_RESULTS)
    params = repo / "params" / "exp.yaml"
    results = run_experiment(params, stages=["10_first"], notebooks_dir=repo / "notebooks", log_output=False)
    kept = {path.relative_to(results): path.read_bytes() for path in sorted(results.rglob("*"))
            if path.is_file() and path.name not in ("env.json", "params.resolved.yaml", "stages.json")}
    assert {"10_first.ipynb", "10_first.html", "figures/10_curve.png", "tables/10_table.csv",
            "metrics.json"} <= {str(path) for path in kept}
    with pytest.raises(StageFailed, match="the previous results of 10_first are unchanged"):
        run_experiment(params, stages=["10_first"], overrides=["first.message=bad"],
                       notebooks_dir=repo / "notebooks", log_output=False)
    after = {path.relative_to(results): path.read_bytes() for path in sorted(results.rglob("*"))
             if path.is_file() and path.name not in ("env.json", "params.resolved.yaml", "stages.json")
             and path.parts[len(results.parts)] != "failed"}
    assert after == kept
    assert (results / "failed" / "10_first.ipynb").exists()
    assert not list(results.glob(".*staging"))
    # The next success replaces them and clears the failure.
    run_experiment(params, stages=["10_first"], overrides=["first.message=again"],
                   notebooks_dir=repo / "notebooks", log_output=False)
    assert (results / "tables" / "10_table.csv").read_text() == "again"
    assert json.loads((results / "metrics.json").read_text())["10_first"] == {"message": "again"}
    assert not list((results / "failed").iterdir())


def test_cli_runs_from_a_stage_with_overrides(repo: Path) -> None:
    status = cli.main(
        [
            "run",
            str(repo / "params" / "exp.yaml"),
            "--from",
            "20_second",
            "--set",
            "second.factor=0.5",
            "--notebooks-dir",
            str(repo / "notebooks"),
            "--quiet",
        ]
    )
    results = repo / "results" / "exp"
    assert status == 0
    assert (results / "second.txt").read_text() == "0.5"
    assert (results / "20_second.html").exists()
    assert not (results / "10_first.ipynb").exists()
    # The resolved parameters always cover every stage.
    assert set(yaml.safe_load((results / "params.resolved.yaml").read_text())) == {
        "10_first",
        "20_second",
    }


def test_cli_reports_config_errors_without_traceback(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = [
        "run",
        str(repo / "params" / "exp.yaml"),
        "--notebooks-dir",
        str(repo / "notebooks"),
    ]
    status = cli.main([*arguments, "--set", "second.factor=many", "--set", "first.mesage=x"])
    assert status == 1
    err = capsys.readouterr().err
    assert "second.factor: expected float, got str ('many')" in err
    assert "first.mesage: unknown parameter" in err
    assert "(did you mean message?)" in err
    assert "Traceback" not in err
    assert cli.main([*arguments, "--stages", "first,third"]) == 1
    assert "unknown stage 'third'" in capsys.readouterr().err
    assert not (repo / "results").exists()


def test_cli_reports_stage_failed(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing_run(*args: object, **kwargs: object) -> Path:
        raise StageFailed(
            "20_second", repo / "results" / "exp" / "20_second.ipynb", "KeyError", "'x'", 3, 4
        )

    monkeypatch.setattr(cli, "run_experiment", failing_run)
    assert cli.main(["run", "params/exp.yaml"]) == cli.EXIT_STAGE_FAILED
    err = capsys.readouterr().err
    assert err.startswith("medlib run: error: stage 20_second failed at cell 3 (In [4]): KeyError")
    assert "20_second.ipynb" in err


def test_parser_splits_stages_and_collects_overrides() -> None:
    args = cli.build_parser().parse_args(
        ["run", "p.yaml", "--stages", "sft, inference", "--set", "a.b=1", "--set", "c.d=2"]
    )
    assert args.stages == ["sft", "inference"]
    assert args.overrides == ["a.b=1", "c.d=2"]
    assert args.from_stage is None
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "p.yaml", "--stages", "a", "--from", "b"])


def test_fresh_turns_resume_off_for_the_stages_that_run(repo: Path) -> None:
    """`medlib run --fresh`: start over (the notebooks' `resume` parameter off), without touching the YAML."""
    parameters = 'results_dir: str = "results/default"  # out\nresume: bool = True  # continue a killed run\n'
    write_notebook(repo / "notebooks" / "20_second.ipynb", parameters,
                   'from pathlib import Path\n(Path(results_dir) / "resume.txt").write_text(str(resume))\n')
    params, notebooks = repo / "params" / "exp.yaml", repo / "notebooks"
    params.write_text("common:\n  experiment: exp\nfirst:\n  message: hi\n", encoding="utf-8")
    results = run_experiment(params, stages=["second"], notebooks_dir=notebooks, log_output=False, fresh=True)
    assert (results / "resume.txt").read_text() == "False"
    run_experiment(params, stages=["second"], notebooks_dir=notebooks, log_output=False)
    assert (results / "resume.txt").read_text() == "True"
