"""`medlib train sft|grpo PARAMS | --settings FILE`: one training stage outside the notebook (torchrun-ready)."""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

STAGES = ("sft", "grpo")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `medlib train` on the CLI."""
    parser = subparsers.add_parser(
        "train", help="run a training stage from an experiment file (works under torchrun / accelerate launch)",
        description="Run the training of one stage with the parameters its notebook would get. Launch it with "
        "`torchrun --standalone --nproc_per_node N -m medlib train sft params/x.yaml` for N processes.")
    parser.add_argument("stage", choices=STAGES, help="the stage to train")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("params", nargs="?", help="experiment file, e.g. params/tiny.yaml")
    source.add_argument("--settings", help="a settings JSON written by a notebook's multi-process launch")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="BLOCK.KEY=VALUE",
                        help="override a parameter (value parsed as YAML); repeatable")
    parser.set_defaults(handler=run_train)


def stage_settings(stage: str, params: str, overrides: list[str], *, block: str | None = None) -> dict:
    """Every parameter of a stage (`block`, default: the stage) for an experiment file: what `medlib run` gives it."""
    from medlib.pipeline.config import declared_stages, load_experiment, stage_parameters, validate_experiment

    stages = {s.block: s for s in declared_stages()}
    experiment = load_experiment(params, overrides, stages=list(stages.values()))
    validate_experiment(experiment, list(stages.values()))
    return stage_parameters(experiment, stages[block or stage])


def prepare_inputs(params: str, overrides: list[str]) -> None:
    """Make the records the stage trains on available, as notebook 10 would (the synthetic set is generated)."""
    from medlib.data.splits import carve_validation
    from medlib.pipeline import workspace

    data = stage_settings("sft", params, overrides, block="data_exploration")
    # torchrun starts every rank at once: one generates the data set, the others then find it complete.
    with exclusive(Path(data["data_dir"])):
        workspace.prepare_data(data["data_source"], data["data_dir"], seed=data["seed"],
                               image_size=data["image_size"], synthetic_sizes=data["synthetic_sizes"],
                               synthetic_question_types=data["synthetic_question_types"])
        carve_validation(data["data_dir"], data["validation_fraction"], seed=data["seed"])


@contextlib.contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (a hidden lock file beside it) across processes of this machine."""
    lock_path = folder.parent / f".{folder.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_train(args: argparse.Namespace) -> int:
    """Handler of `medlib train`."""
    if args.settings:
        try:
            values = json.loads(Path(args.settings).read_text())
        except json.JSONDecodeError as error:
            from medlib.pipeline.config import ConfigError

            raise ConfigError(f"{args.settings}: not valid JSON ({error.msg}, line {error.lineno})") from None
    else:
        # This process is one rank and its launcher decides how many: check the settings against that world size.
        world = [f"{args.stage}.num_processes={int(os.environ.get('WORLD_SIZE', '1'))}"]
        values = stage_settings(args.stage, args.params, [*args.overrides, *world])
        prepare_inputs(args.params, args.overrides)
    from medlib import models

    models.activate_backend(values.get("backend", "auto"))  # Unsloth before transformers/TRL
    if args.stage == "sft":
        from medlib.training import sft as stage
    else:
        from medlib.training import grpo as stage
    settings = stage.settings_from_params(values)
    settings.num_processes = 1  # this process is one rank; the launcher decides how many
    summary = stage.train(settings)
    if args.stage == "sft":
        detail = f"last loss {summary['last_train_loss']}"
    else:
        detail = f"mean total reward {summary['rewards'].get('reward')}"
    print(f"[medlib] {args.stage}: {summary['global_step']} steps, {detail}, world size {summary['world_size']} "
          f"-> {summary['checkpoint']}")
    return 0
