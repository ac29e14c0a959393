"""Slurm scripts from experiment files (dry run), the `slurm:` block's checks, chaining and resume."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from medlib import cli
from medlib.pipeline.config import ConfigError, discover_stages, load_experiment, resolved_parameters
from medlib.pipeline.runner import StageFailed, read_stage_states, run_experiment
from medlib.pipeline.slurm import plan_experiment, submit

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

SLURM_EXPERIMENT = """\
common:
  experiment: demo
  runs_dir: {tmp}/runs/demo
  results_dir: {tmp}/results/demo
sft:
  num_processes: 4
slurm:
  partition: gpu
  account: lab42
  cpus: 8
  mem: 64G
  time: "04:00:00"
  extra: ["--constraint=h100", "#SBATCH --exclusive"]
  setup: ["source .venv/bin/activate"]
  stages:
    data_exploration: {{gpus: 0, cpus: 2, time: "00:30:00"}}
    inference: {{gpus: 1}}
"""


def experiment_file(tmp_path: Path, text: str = SLURM_EXPERIMENT) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(text.format(tmp=tmp_path))
    return path


def test_the_slurm_block_is_no_stage_and_never_reaches_a_notebook(tmp_path: Path) -> None:
    stages = discover_stages(NOTEBOOKS)
    experiment = load_experiment(experiment_file(tmp_path), stages=stages)
    resolved = resolved_parameters(experiment, stages)
    assert all("partition" not in params and "slurm" not in params for params in resolved.values())


def test_dry_run_scripts_chain_stages_with_their_resources(tmp_path: Path) -> None:
    plan = plan_experiment(experiment_file(tmp_path), notebooks_dir=NOTEBOOKS)
    scripts = {job.stage.block: job.script for job in plan.jobs}
    assert list(scripts) == ["data_exploration", "sft", "grpo", "inference", "metric_analysis"]
    data = scripts["data_exploration"]
    assert "#SBATCH --cpus-per-task=2" in data and "#SBATCH --time=00:30:00" in data and "--gpus" not in data
    assert "#SBATCH --partition=gpu" in data and "#SBATCH --account=lab42" in data
    assert "#SBATCH --constraint=h100" in data and "#SBATCH --exclusive" in data
    assert "#SBATCH --requeue" in data and "#SBATCH --signal=B:USR1@300" in data and "trap requeue USR1" in data
    assert f"--output={tmp_path}/runs/demo/slurm/10_data_exploration-%j.log" in data
    assert "--open-mode=append" in data and "source .venv/bin/activate" in data
    assert "-m medlib run" in data and "--stages 10_data_exploration --resume" in data
    # num_processes 4 → four GPUs and the stage under srun (its notebook starts torchrun).
    sft = scripts["sft"]
    assert "#SBATCH --gpus=4" in sft and "#SBATCH --cpus-per-task=8" in sft
    assert "srun --ntasks=1 --nodes=1 --export=ALL --gpus=4 --cpus-per-task=8 " in sft
    assert "srun" not in scripts["grpo"].split("trap")[1] and "#SBATCH --gpus=1" in scripts["inference"]


def test_cli_dry_run_prints_scripts_and_writes_nothing(tmp_path: Path, capsys) -> None:
    params = experiment_file(tmp_path)
    assert cli.main(["submit", str(params), "--dry-run", "--stages", "sft,inference",
                     "--notebooks-dir", str(NOTEBOOKS)]) == 0
    out = capsys.readouterr().out
    assert out.count("#!/bin/bash") == 2 and "--dependency=afterok:<previous job>" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("line", "message"), [
    ("  gpu: 4\n", "slurm.gpu: unknown Slurm setting"),
    ("  cpus: four\n", "slurm.cpus: expected int"),
    ("  requeue: 1\n", "slurm.requeue: expected bool"),
    ("  extra: [1]\n", r"slurm.extra\[0\]: expected str"),
    ("  stages: {{sfft: {{gpus: 1}}}}\n", "slurm.stages.sfft: no such stage"),
    ("  stages: {{sft: {{setup: [x]}}}}\n", "slurm.stages.sft.setup: not a resource key"),
])
def test_bad_slurm_settings_name_file_and_key(tmp_path: Path, line: str, message: str) -> None:
    params = experiment_file(tmp_path, "common:\n  experiment: demo\nslurm:\n" + line)
    with pytest.raises(ConfigError, match=message) as failure:
        plan_experiment(params, notebooks_dir=NOTEBOOKS)
    assert "demo.yaml" in str(failure.value)


def test_submit_chains_each_stage_after_the_previous_one(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "sbatch"
    fake.write_text(f'#!/bin/bash\necho "$@" >> {calls}\necho $(( $(wc -l < {calls}) + 100 ))";cluster"\n')
    fake.chmod(0o755)
    plan = plan_experiment(experiment_file(tmp_path), notebooks_dir=NOTEBOOKS, stage_names=["sft", "grpo", "inference"])
    assert submit(plan, sbatch=str(fake)) == ["101", "102", "103"]
    lines = calls.read_text().splitlines()
    assert lines[0] == f"--parsable {tmp_path}/runs/demo/slurm/20_sft.sbatch"
    assert lines[1] == f"--parsable --dependency=afterok:101 {tmp_path}/runs/demo/slurm/30_grpo.sbatch"
    assert lines[2].startswith("--parsable --dependency=afterok:102 ")
    jobs = json.loads((tmp_path / "runs/demo/slurm/jobs.json").read_text())
    assert [job["job_id"] for job in jobs["jobs"]] == ["101", "102", "103"]
    assert (tmp_path / "runs/demo/slurm/30_grpo.sbatch").read_text() == plan.jobs[1].script


def test_a_failing_sbatch_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "sbatch"
    fake.write_text("#!/bin/bash\necho 'sbatch: error: invalid partition' >&2\nexit 1\n")
    fake.chmod(0o755)
    plan = plan_experiment(experiment_file(tmp_path), notebooks_dir=NOTEBOOKS, stage_names=["sft"])
    with pytest.raises(ConfigError, match="invalid partition"):
        submit(plan, sbatch=str(fake))


def _notebook(path: Path, parameters: str, body: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = KERNELSPEC
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(notebook, path)


def test_resume_skips_completed_stages_up_to_the_first_unfinished_one(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    counter = 'from pathlib import Path\nwith open(Path(results_dir) / "{stem}.count", "a") as f: f.write("x")\n'
    _notebook(notebooks / "10_first.ipynb", 'results_dir: str = "r"  # out\nlevel: int = 1  # a knob',
              counter.format(stem="first"))
    _notebook(notebooks / "20_second.ipynb", 'results_dir: str = "r"  # out\nflag: str = ""  # fail when it exists',
              counter.format(stem="second") + "if Path(flag).exists(): raise RuntimeError('killed')\n")
    flag = tmp_path / "fail"
    flag.touch()
    params = tmp_path / "exp.yaml"
    params.write_text(f"common:\n  experiment: exp\n  results_dir: {tmp_path}/results\nsecond:\n  flag: {flag}\n")
    results = tmp_path / "results"

    def counts() -> tuple[int, int]:
        return tuple(len((results / f"{stem}.count").read_text()) for stem in ("first", "second"))

    with pytest.raises(StageFailed):
        run_experiment(params, notebooks_dir=notebooks, log_output=False)
    states = read_stage_states(results)
    assert states["10_first"]["status"] == "completed" and states["20_second"]["status"] == "failed"
    flag.unlink()
    run_experiment(params, notebooks_dir=notebooks, log_output=False, resume=True)
    assert counts() == (1, 2)
    run_experiment(params, notebooks_dir=notebooks, log_output=False, resume=True)
    assert counts() == (1, 2)
    # Changed parameters make a completed stage count as unfinished, and everything after it reruns.
    assert cli.main(["run", str(params), "--resume", "--quiet", "--set", "first.level=2",
                     "--notebooks-dir", str(notebooks)]) == 0
    assert counts() == (2, 3)
    # Without --resume every stage runs.
    run_experiment(params, notebooks_dir=notebooks, log_output=False, overrides=["first.level=2"])
    assert counts() == (3, 4)
