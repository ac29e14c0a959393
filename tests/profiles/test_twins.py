"""Each experiment's tiny twin runs end to end and its metrics.json holds that experiment's own task metrics.

One test per twin (`medlib run params/tiny/<name>.yaml`, each a few minutes on 2 cores); the twins are shrunk
to the chain, so the tests check what each stage must produce, not how well a random-init model learns.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from openpyxl import load_workbook
from twins import REAL, TINY, check_chain, check_ci, check_rewards, profile, run_twin, task_groups

FLARE_TASKS = {"classification", "multi_label", "detection", "instance_detection", "counting", "regression",
               "report_generation"}
# Report metrics under their convention names (medlib.evaluation.metrics: flare_*, libra_*, coco_*, sacrebleu*)
REPORT_METRICS = {"flare_report_score", "libra_bleu1", "libra_bleu4", "libra_meteor", "libra_rouge_l", "libra_temporal_f1",
                  "coco_bleu4", "coco_cider"}
NAMES = sorted(path.stem for path in TINY.glob("*.yaml"))


def report_metric_names(group: dict) -> set[str]:
    """The report metrics a group reports (names as medlib.evaluation.metrics writes them)."""
    return {name for name in group["metrics"] if name in REPORT_METRICS}


def test_flare2025_twin(tmp_path: Path) -> None:
    results, metrics = run_twin("flare2025_qwen25vl7b", tmp_path)
    check_chain("flare2025_qwen25vl7b", results, metrics, tmp_path / "runs")
    check_rewards("flare2025_qwen25vl7b", results, metrics,
                  {"format", "accuracy", "choice", "multilabel_f1", "detection_f1", "count", "numeric",
                   "clinical_f1", "report_format", "rouge_l"})
    # Records came through the FLARE 2025 reader: one data set per task type, all seven types scored.
    for checkpoint in ("base", "sft", "grpo"):
        groups = task_groups(metrics, checkpoint)
        assert set(groups) == FLARE_TASKS
        for group in groups.values():
            check_ci(group)
        assert report_metric_names(groups["report_generation"]) >= {"flare_report_score", "libra_bleu4", "libra_rouge_l"}
    # The FLARE submission: every questions file of the evaluated split, each answer filled in.
    submission = tmp_path / "runs" / "predictions" / "grpo_submission"
    files = sorted(submission.rglob("*_questions_val.json"))
    assert len(files) == len(FLARE_TASKS)
    for path in files:
        items = json.loads(path.read_text())
        assert items and all(isinstance(item["Answer"], str) for item in items)


def test_flare_task5_twin(tmp_path: Path) -> None:
    results, metrics = run_twin("flare_task5_xray_qwen3vl4b", tmp_path)
    check_chain("flare_task5_xray_qwen3vl4b", results, metrics, tmp_path / "runs")
    check_rewards("flare_task5_xray_qwen3vl4b", results, metrics, {"flare_task5"})
    for checkpoint in ("base", "sft", "grpo"):
        groups = task_groups(metrics, checkpoint)
        assert set(groups) == {"report_generation", "classification", "regression"}
        for group in groups.values():
            check_ci(group)
        assert report_metric_names(groups["report_generation"]) >= {"flare_report_score", "libra_bleu4", "libra_rouge_l"}
    # The review sheet: one row per question, the reference and each checkpoint's answer side by side.
    sheet = load_workbook(results / "tables" / "40_review.xlsx").active
    rows = list(sheet.iter_rows(values_only=True))
    assert len(rows) == metrics["40_inference"]["questions"] + 1
    assert len(rows[0]) >= 4


def test_vqa_curriculum_twin(tmp_path: Path) -> None:
    results, metrics = run_twin("vqa_rad_slake_curriculum", tmp_path)
    check_chain("vqa_rad_slake_curriculum", results, metrics, tmp_path / "runs")
    assert metrics["20_sft"]["global_step"] == profile(TINY / "vqa_rad_slake_curriculum.yaml")["sft"]["max_steps"]
    for checkpoint in ("base", "sft"):
        groups = task_groups(metrics, checkpoint)
        assert set(groups) == {"vqa_open", "vqa_closed"}  # open and closed scored apart
        for group in groups.values():
            check_ci(group)
            assert {"exact_match", "token_f1", "numeric_match"} <= set(group["metrics"])
        assert groups["vqa_closed"]["metrics"]["n_closed"] == groups["vqa_closed"]["n"]
        assert groups["vqa_open"]["metrics"]["n_open"] == groups["vqa_open"]["n"]


def test_medr1_twin(tmp_path: Path) -> None:
    results, metrics = run_twin("medr1_omnimedvqa_qwen2vl2b", tmp_path)
    check_chain("medr1_omnimedvqa_qwen2vl2b", results, metrics, tmp_path / "runs")
    check_rewards("medr1_omnimedvqa_qwen2vl2b", results, metrics, {"medr1_format", "medr1_accuracy"})
    grpo = metrics["30_grpo"]
    assert grpo["started_from"].endswith("base-model") and grpo["world_size"] == 2
    assert not (tmp_path / "runs" / "sft").exists()
    for checkpoint in ("base", "grpo"):
        group = task_groups(metrics, checkpoint)["vqa_closed"]
        check_ci(group)
        assert "answer_tag_accuracy" in group["metrics"]  # Med-R1's accuracy of the letter inside <answer>


def test_libra_twin(tmp_path: Path) -> None:
    results, metrics = run_twin("libra_mimic_temporal", tmp_path)
    check_chain("libra_mimic_temporal", results, metrics, tmp_path / "runs")
    check_rewards("libra_mimic_temporal", results, metrics, {"clinical_f1", "report_format", "rouge_l"})
    first = json.loads((tmp_path / "runs" / "predictions" / "sft.jsonl").read_text().splitlines()[0])
    assert len(first["images"]) == 2  # current and prior image in one prompt
    for checkpoint in ("base", "sft", "grpo"):
        group = task_groups(metrics, checkpoint)["report_generation"]
        check_ci(group)
        assert report_metric_names(group) >= {"libra_bleu1", "libra_bleu4", "libra_rouge_l", "libra_temporal_f1"}


# What a twin keeps from its real profile; it swaps only the model, the data and the sizes.
KEPT = {"common": ["answer_format", "skip_stages"],
        "sft": ["curriculum", "early_stopping_patience", "lr_scheduler_type"],
        "grpo": ["reward_functions", "reward_weights", "reward_recipes", "init_checkpoint", "num_generations",
                 "temperature", "beta", "loss_type", "importance_sampling_level", "num_processes"],
        "inference": ["checkpoints", "eval_split", "num_beams", "length_penalty"],
        "metric_analysis": ["checkpoints", "image_question_type", "parser"]}


@pytest.mark.parametrize("name", NAMES)
def test_a_twin_keeps_its_profile_and_swaps_model_data_and_sizes(name: str) -> None:
    real, twin = profile(REAL / f"{name}.yaml"), profile(TINY / f"{name}.yaml")
    assert len(NAMES) == 5
    for block, keys in KEPT.items():
        for key in keys:
            assert twin.get(block, {}).get(key) == real.get(block, {}).get(key), f"{name}: {block}.{key}"
    assert set(twin) == set(real)
    common = twin["common"]
    assert common["tiny_arch"] and common["model_id"] == f"runs/{common['experiment']}/base-model"
    assert common["experiment"] == f"tiny_{real['common']['experiment']}"
    assert twin["data_exploration"]["data_source"].startswith("synthetic")
