"""Atomic writes, metrics merging, environment and figure recording."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from medlib.pipeline import results
from medlib.pipeline.results import (
    TRACKED_PACKAGES,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    environment_info,
    json_safe,
    save_figure,
    update_metrics,
    write_environment,
)


def test_atomic_write_creates_parents_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out.txt"
    assert atomic_write_text(path, "first") == path
    atomic_write_text(path, "second ✓")
    assert path.read_text(encoding="utf-8") == "second ✓"
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]
    atomic_write_bytes(tmp_path / "raw.bin", b"\x00\x01")
    assert (tmp_path / "raw.bin").read_bytes() == b"\x00\x01"


def test_atomic_write_respects_umask(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    path = atomic_write_text(tmp_path / "shared.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_failed_replace_keeps_old_file_and_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = atomic_write_text(tmp_path / "metrics.json", "old")

    def failing_replace(source: object, target: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_unserialisable_json_keeps_old_file(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "data.json", {"a": 1})
    with pytest.raises(TypeError, match="cannot write object"):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_json_safe_converts_numpy_nan_and_containers(tmp_path: Path) -> None:
    value = {
        "f": np.float32(0.5),
        "i": np.int64(3),
        "b": np.bool_(True),
        "a": np.arange(3),
        "nan": float("nan"),
        "inf": np.float64("inf"),
        "t": (1, 2),
        "p": tmp_path,
        1: "int key",
    }
    safe = json_safe(value)
    assert safe == {
        "f": 0.5,
        "i": 3,
        "b": True,
        "a": [0, 1, 2],
        "nan": None,
        "inf": None,
        "t": [1, 2],
        "p": str(tmp_path),
        "1": "int key",
    }
    assert type(safe["i"]) is int
    assert type(safe["b"]) is bool


def test_update_metrics_merges_stages(tmp_path: Path) -> None:
    results = tmp_path / "results" / "exp"
    path = update_metrics(results, "20_sft", {"loss": np.float64(0.25), "steps": np.int32(5)})
    assert path == results / "metrics.json"
    update_metrics(results, "40_inference", {"accuracy": math.nan, "per_task": {"vqa": 0.5}})
    update_metrics(results, "20_sft", {"loss": 0.125})
    assert json.loads(path.read_text()) == {
        "20_sft": {"loss": 0.125},
        "40_inference": {"accuracy": None, "per_task": {"vqa": 0.5}},
    }
    assert "NaN" not in path.read_text()


def test_update_metrics_refuses_to_overwrite_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json: not valid JSON"):
        update_metrics(tmp_path, "20_sft", {"loss": 1.0})
    assert (tmp_path / "metrics.json").read_text() == "{not json"


def test_environment_info_outside_a_git_repo(tmp_path: Path) -> None:
    info = environment_info(tmp_path)
    assert info["python"].count(".") == 2
    assert info["cpu_count"] >= 1
    assert set(info["packages"]) == set(TRACKED_PACKAGES)
    assert info["packages"]["papermill"]
    assert info["git_commit"] is None
    assert info["git_dirty"] is None
    assert isinstance(info["cuda_available"], bool)
    assert info["device"] == "cpu" or info["cuda_available"]
    assert info["timestamp_utc"].endswith("+00:00")
    json.dumps(info)


def test_write_environment_writes_env_json(tmp_path: Path) -> None:
    path = write_environment(tmp_path / "results", repo_dir=tmp_path)
    assert path.name == "env.json"
    assert json.loads(path.read_text())["git_commit"] is None


def test_save_figure_writes_png_under_figures(tmp_path: Path) -> None:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path, "loss")
    assert path == tmp_path / "figures" / "loss.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert save_figure(fig, tmp_path, "loss.png") == path
    assert [p.name for p in path.parent.iterdir()] == ["loss.png"]


def test_git_state_reports_commit_and_dirty_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"rev-parse": "abc123\n", "status": " M medlib/run.py\n"}
    monkeypatch.setattr(results, "_git", lambda repo_dir, command, *args: answers[command])
    assert results.git_state(".") == {"git_commit": "abc123", "git_dirty": True}
    answers["status"] = ""
    assert results.git_state(".")["git_dirty"] is False
