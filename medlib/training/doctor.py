"""The guards at the start of training (`at_training_start`), and `medlib doctor PARAMS`, which runs them without training.

`medlib doctor` builds each stage exactly as `medlib train` does (same model, LoRA, data rows, collator and
trainer), with its checkpoints folder redirected to a temporary one, and stops after the guards.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch

from medlib.training import guards
from medlib.training.params import TrainingParams


def _first_record(settings: TrainingParams) -> dict[str, Any]:
    """The first training record: the one the parity guard follows through both paths."""
    from medlib import data
    from medlib.pipeline import workspace

    return data.read_records(workspace.split_path(settings.data_dir, "train"))[0]


def _grpo_prompt_inputs(processor: Any, rows: list[dict[str, Any]]) -> Any:
    """GRPO prompts as the trainer renders them: the chat template with the generation prompt, and the images."""
    texts = [processor.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False) for row in rows]
    images = [row.get("images") or [] for row in rows]
    return processor(text=texts, images=images if any(images) else None, return_tensors="pt", padding=True)


def run_guards(stage: str, settings: TrainingParams, trainer: Any, processor: Any, backend: str) -> list[dict[str, Any]]:
    """Every guard of a stage on a built trainer; the report (list of rows), nothing raised."""
    from medlib import data
    from medlib.evaluation import inference

    model = trainer.accelerator.unwrap_model(trainer.model) if hasattr(trainer, "accelerator") else trainer.model
    report = [guards.check_trainable(model, settings)]
    size = min(len(trainer.train_dataset), max(1, settings.per_device_train_batch_size))
    rows = [trainer.train_dataset[i] for i in range(size)]
    record = _first_record(settings)
    options = {"image_size": settings.image_size, "answer_format": settings.answer_format,
               "system_prompt": settings.system_prompt or None}
    if stage == "sft":
        batch = trainer.data_collator(rows)
        report += [guards.check_loss_mask(batch, rows, processor), guards.check_image_tokens(batch, rows, processor)]
        style = "messages" if backend == "unsloth" else "prompt_completion"
        training_inputs = trainer.data_collator(data.sft_rows([record], settings.data_dir, style=style, **options))
    else:
        report.append(guards.check_image_tokens(_grpo_prompt_inputs(processor, rows), rows, processor))
        training_inputs = _grpo_prompt_inputs(processor, data.grpo_rows([record], settings.data_dir, **options))
    inference_inputs = inference.generation_inputs(processor, [record], settings.data_dir, **options)
    report.append(guards.check_prompt_parity(training_inputs, inference_inputs))
    if stage == "grpo":
        report.append(guards.check_rollout_adapter(model, settings, inference_inputs.to(model.device)))
    return report


def at_training_start(stage: str, settings: TrainingParams, trainer: Any, processor: Any, backend: str
                      ) -> list[dict[str, Any]]:
    """Run the guards, print their table, stop on a failure (GuardFailed); return the report for the summary."""
    with torch.random.fork_rng(devices=[]):  # the guards draw nothing from the training's random stream
        report = run_guards(stage, settings, trainer, processor, backend)
    for row in report:
        print(f"[medlib] guard {row['guard']}: {row['status']} — {row['detail']}", flush=True)
    guards.raise_on_failure(report)
    if guards.STOP_AFTER_GUARDS.get():
        raise guards.StoppedAfterGuards(report)
    return report


def doctor_stage(stage: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Build one stage as `medlib train` would and run its guards without training; the report."""
    from medlib.pipeline import workspace

    if stage == "sft":
        from medlib.training import sft as module
    else:
        from medlib.training import grpo as module
    settings = module.settings_from_params(values)
    settings.num_processes, settings.resume = 1, True
    if stage == "grpo" and not settings.init_checkpoint:
        sft_final = workspace.stage_paths(settings.runs_dir)["sft_final"]
        settings.init_checkpoint = str(sft_final) if sft_final.exists() else workspace.ensure_base_model(
            settings.model_id, settings.tiny_arch, image_size=settings.image_size, seed=settings.seed)
    token = guards.STOP_AFTER_GUARDS.set(True)
    try:
        with tempfile.TemporaryDirectory(prefix=f"medlib-doctor-{stage}-") as scratch:
            settings.runs_dir = scratch  # nothing the experiment's runs folder holds is touched
            module.train(settings)
    except guards.StoppedAfterGuards as stopped:
        return stopped.report
    finally:
        guards.STOP_AFTER_GUARDS.reset(token)
    raise RuntimeError(f"{stage}: training started without running the guards")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `medlib doctor` on the CLI."""
    parser = subparsers.add_parser(
        "doctor", help="run the training guards of an experiment without training",
        description="Build SFT and GRPO as `medlib train` would and check, without training: trainable parameters "
        "against the params, the first collated batch's loss mask and image tokens, train/inference prompt and "
        "pixel parity, and (GRPO) that the rollout model carries the adapter.")
    parser.add_argument("params", help="experiment file, e.g. params/tiny.yaml")
    parser.add_argument("--stages", default="sft,grpo", help="comma-separated: sft, grpo (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="BLOCK.KEY=VALUE",
                        help="override a parameter (value parsed as YAML); repeatable")
    parser.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    """Handler of `medlib doctor`: 0 when every guard passes, 1 when one fails (named)."""
    from medlib import models
    from medlib.training.command import prepare_inputs, stage_settings

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in ("sft", "grpo")]
    if unknown:
        raise SystemExit(f"medlib doctor: --stages: unknown stage {unknown[0]!r} (sft, grpo)")
    prepare_inputs(args.params, args.overrides)
    failed = False
    for stage in stages:
        values = stage_settings(stage, args.params, args.overrides)
        models.activate_backend(values.get("backend", "auto"))
        try:
            report = doctor_stage(stage, values)
        except guards.GuardFailed as error:
            print(f"[medlib] doctor {stage}: FAILED — {error}")
            failed = True
            continue
        print(f"[medlib] doctor {stage}: all {sum(r['status'] == 'pass' for r in report)} guards pass "
              f"({sum(r['status'] == 'skip' for r in report)} not applicable)")
    print(f"[medlib] doctor {Path(args.params).name}: {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0
