"""A kernel that dies (OOM killer, SIGKILL) and what the live output shows: progress and no secrets.

Issue 18 item 3 and issue 17 item 7, on test-only notebooks written into a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from medlib import cli
from medlib.pipeline.live import KernelWatch, ProgressLog
from medlib.pipeline.runner import read_stage_states

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
PARAMETERS = 'results_dir: str = "results/default"  # where results go\n'
SECRET = "hf_NotARealToken_0123456789"


def stage_repo(root: Path, *cells: str) -> Path:
    """notebooks/10_first.ipynb (a parameters cell, then `cells`) and params/exp.yaml; returns the params file."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = KERNELSPEC
    parameters = nbformat.v4.new_code_cell(PARAMETERS)
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, *(nbformat.v4.new_code_cell(source) for source in cells)]
    (root / "notebooks").mkdir(parents=True)
    nbformat.write(notebook, root / "notebooks" / "10_first.ipynb")
    params = root / "exp.yaml"
    params.write_text(f"common:\n  experiment: exp\n  results_dir: {root / 'results'}\n")
    return params


def test_a_dead_kernel_names_stage_cell_cause_and_the_resume_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = stage_repo(tmp_path, "ready = 1", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
                        "never = 1")
    status = cli.main(["run", str(params), "--notebooks-dir", str(tmp_path / "notebooks"), "--quiet"])
    err = capsys.readouterr().err
    assert status == cli.EXIT_INTERRUPTED
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "stage 10_first: the kernel died while running cell 3 (import os, signal)" in err
    assert "killed by signal 9 (SIGKILL" in err and "memory peak" in err
    assert f"Resume with: medlib run {params} --resume" in err
    state = read_stage_states(tmp_path / "results")["10_first"]
    assert state["status"] == "interrupted" and "signal 9" in state["reason"]
    assert (tmp_path / "results" / "failed" / "10_first.ipynb").exists()
    assert not (tmp_path / "results" / "10_first.ipynb").exists()


class FakeKernel:
    """The part of a Popen that KernelWatch reads."""

    def __init__(self, returncode: int) -> None:
        self.returncode, self.pid = returncode, -1

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode


def test_exit_reasons_read_like_what_happened() -> None:
    watch = KernelWatch(process=FakeKernel(-9), peak_mib=2048.0, oom_before=None)
    assert watch.exit_reason().startswith("killed by signal 9 (SIGKILL — the OOM killer")
    assert "memory peak 2,048 MiB" in watch.exit_reason()
    assert KernelWatch(process=FakeKernel(3), oom_before=None).exit_reason() == "exited with status 3"
    assert "signal 15 (SIGTERM" in KernelWatch(process=FakeKernel(-15), oom_before=None).exit_reason()


def test_progress_lines_are_throttled_and_secrets_redacted(caplog: pytest.LogCaptureFixture) -> None:
    log = ProgressLog(interval_s=3600, secrets=[SECRET])
    with caplog.at_level("INFO", logger="papermill"):
        log.text(f"token {SECRET}\n")
        for step in range(1, 201):
            log.text(f"\r{step // 2}%|#   | {step}/200 [00:01<00:01, 99it/s]")
        log.display({"text/html": "<progress value='5' max='9'></progress> [5/9 00:01 &lt; 00:02, Epoch 1/2]",
                     "text/plain": "<IPython.core.display.HTML object>"})
        log.flush()
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "token [redacted]"
    progress = [line for line in lines if line.startswith("progress:")]
    # The first refresh, the full bar, and the Trainer display's state: not one line per refresh.
    assert progress == ["progress: 0%|# | 1/200 [00:01<00:01, 99it/s]", "progress: 100%|# | 200/200 [00:01<00:01, "
                        "99it/s]", "progress: [5/9 00:01 < 00:02, Epoch 1/2]"]


def test_streamed_output_and_errors_of_medlib_run_carry_no_secrets(tmp_path: Path) -> None:
    """A Slurm log is `medlib run`'s stdout and stderr: tokens must not reach it, and tqdm must not flood it."""
    params = stage_repo(tmp_path, "import os, sys, time\nfrom tqdm import tqdm\n"
                        "print('token is', os.environ['HF_TOKEN'])\n"
                        "for _ in tqdm(range(300), file=sys.stderr, mininterval=0, miniters=1):\n"
                        "    time.sleep(0.002)",
                        "raise ValueError('rejected ' + os.environ['HF_TOKEN'])")
    done = subprocess.run([sys.executable, "-m", "medlib", "run", str(params), "--notebooks-dir",
                           str(tmp_path / "notebooks")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_TOKEN": SECRET})
    output = done.stdout + done.stderr
    assert done.returncode == cli.EXIT_STAGE_FAILED, output[-3000:]
    assert SECRET not in output
    assert "token is [redacted]" in output and "ValueError: rejected [redacted]" in output
    assert "Traceback" not in done.stderr
    progress = [line for line in output.splitlines() if line.startswith("progress:")]
    assert 1 <= len(progress) <= 4 and "300/300" in progress[-1], progress
    html = (tmp_path / "results" / "failed" / "10_first.html").read_text()
    assert SECRET not in html and "[redacted]" in html
