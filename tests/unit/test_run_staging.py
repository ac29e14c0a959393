"""Training output is built in runs/<exp>/<stage>.incomplete and swapped into place only when complete."""

from __future__ import annotations

import json
from pathlib import Path

from medlib.pipeline import workspace


def finished_run(folder: Path, marker: str, steps: tuple[int, ...] = ()) -> Path:
    """A completed stage folder: final/ weights, result.json and complete checkpoints."""
    (folder / "final").mkdir(parents=True)
    (folder / "final" / "model.safetensors").write_text(marker)
    (folder / "result.json").write_text(json.dumps({"marker": marker}))
    for step in steps:
        checkpoint(folder, step)
    return folder


def checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    """checkpoint-N with weights, and trainer_state.json when the Trainer finished writing it."""
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_text(f"step {step}")
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_a_failed_run_leaves_the_finished_output_in_place(tmp_path: Path) -> None:
    """Issue 17 item 1: starting a run (resume off) must not delete the previous model."""
    sft = finished_run(tmp_path / "sft", "good", steps=(20,))
    staging, note = workspace.prepare_staging(sft, resume=False)
    assert staging == tmp_path / "sft.incomplete" and staging.is_dir() and "from step 0" in note
    (staging / "checkpoint-3").mkdir()  # the new run fails here
    assert (sft / "final" / "model.safetensors").read_text() == "good"
    assert (sft / "checkpoint-20" / "trainer_state.json").exists()


def test_resume_continues_the_interrupted_run_from_its_newest_complete_checkpoint(tmp_path: Path) -> None:
    """Issue 17 item 2: a rerun after a kill continues; a torn newer checkpoint is not used."""
    sft = finished_run(tmp_path / "sft", "good")
    staging = workspace.staging_dir(sft)
    checkpoint(staging, 20)
    checkpoint(staging, 30, complete=False)
    found, note = workspace.prepare_staging(sft, resume=True)
    assert found == staging and "checkpoint-20" in note
    assert workspace.newest_checkpoint(staging) == staging / "checkpoint-20"
    assert (staging / "checkpoint-20" / "model.safetensors").read_text() == "step 20"


def test_resume_off_sets_the_interrupted_run_aside_instead_of_deleting_it(tmp_path: Path) -> None:
    sft = tmp_path / "sft"
    checkpoint(workspace.staging_dir(sft), 20)
    staging, note = workspace.prepare_staging(sft, resume=False)
    assert workspace.newest_checkpoint(staging) is None
    aside = tmp_path / "sft.incomplete.old"
    assert (aside / "checkpoint-20" / "trainer_state.json").exists() and "set aside" in note
    workspace.finish_stage(staging, {"checkpoint": str(staging / "final")})
    assert not aside.exists()  # gone only once the new run completed


def test_resume_from_a_finished_run_links_its_checkpoint_and_keeps_it(tmp_path: Path) -> None:
    sft = finished_run(tmp_path / "sft", "good", steps=(3,))
    staging, note = workspace.prepare_staging(sft, resume=True)
    assert "finished run's checkpoint-3" in note
    assert (staging / "checkpoint-3" / "model.safetensors").read_text() == "step 3"
    assert (sft / "checkpoint-3" / "model.safetensors").read_text() == "step 3"


def test_finish_stage_swaps_and_rewrites_paths(tmp_path: Path) -> None:
    sft = finished_run(tmp_path / "sft", "old")
    staging, _ = workspace.prepare_staging(sft, resume=False)
    (staging / "final").mkdir()
    (staging / "final" / "model.safetensors").write_text("new")
    summary = workspace.finish_stage(staging, {"checkpoint": str(staging / "final"), "global_step": 7,
                                               "resumed_from": None})
    assert summary == {"checkpoint": str(sft / "final"), "global_step": 7, "resumed_from": None}
    assert (sft / "final" / "model.safetensors").read_text() == "new"
    assert json.loads((sft / "result.json").read_text())["checkpoint"] == str(sft / "final")
    assert not staging.exists() and not (tmp_path / "sft.replaced").exists()


def test_a_swap_cut_by_a_kill_is_finished_or_undone(tmp_path: Path) -> None:
    # Killed between the two renames: the complete new run is in staging, the old one set aside.
    sft = tmp_path / "sft"
    finished_run(tmp_path / "sft.replaced", "old")
    finished_run(workspace.staging_dir(sft), "new")
    workspace.recover_swap(sft)
    assert (sft / "final" / "model.safetensors").read_text() == "new"
    assert not (tmp_path / "sft.replaced").exists() and not workspace.staging_dir(sft).exists()
    # Killed after setting the old one aside but with no complete new run: the old one comes back.
    other = tmp_path / "grpo"
    finished_run(tmp_path / "grpo.replaced", "old")
    workspace.recover_swap(other)
    assert (other / "final" / "model.safetensors").read_text() == "old"
