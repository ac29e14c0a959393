"""The `medlib` command: one subcommand per job (`run`, ...)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from medlib.data.records import RecordError
from medlib.evaluation import demo, predict
from medlib.pipeline import lab, leaderboard, live, notebook_cells, slurm, sweep
from medlib.pipeline.config import ConfigError
from medlib.pipeline.runner import KernelDied, StageFailed, run_experiment
from medlib.training import command as train_command
from medlib.training import doctor

# Errors the user fixes by editing a file or a notebook: a message, no traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, StageFailed, RecordError)
# Exit codes: what happened, for scripts and Slurm (argparse's usage errors are 2).
EXIT_BAD_INPUT = 1  # a file, field or option to fix
EXIT_STAGE_FAILED = 3  # a notebook cell raised; the executed notebook shows where
EXIT_INTERRUPTED = 4  # the kernel died or the run was stopped; rerun with --resume
EXIT_CTRL_C = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _split_names(text: str) -> list[str]:
    """`a,b , c` → ["a", "b", "c"]."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _add_run(subparsers: argparse._SubParsersAction) -> None:
    """`medlib run PARAMS [--stages a,b] [--from STAGE] [--set block.key=value ...]`."""
    parser = subparsers.add_parser(
        "run",
        help="execute an experiment's notebooks with papermill",
        description="Validate an experiment file, then execute its notebooks in order into "
        "results/<experiment>/ (.ipynb + .html, params.resolved.yaml, env.json).",
    )
    parser.add_argument("params", help="experiment file, e.g. params/tiny.yaml")
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument(
        "--stages",
        type=_split_names,
        help="comma-separated stems or blocks to run, e.g. 20_sft,inference",
    )
    selection.add_argument(
        "--from", dest="from_stage", metavar="STAGE", help="run this stage and every later one"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="BLOCK.KEY=VALUE",
        help="override a parameter (value parsed as YAML); repeatable, e.g. --set sft.max_steps=5",
    )
    parser.add_argument("--notebooks-dir", default="notebooks", help="default: %(default)s")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="do not stream the cells' output")
    parser.add_argument("--resume", action="store_true",
                        help="skip the leading stages recorded as completed (same parameters and inputs) in "
                        "results/<experiment>/stages.json")
    parser.add_argument("--fresh", action="store_true",
                        help="start every stage that runs over: ignore checkpoints and partial predictions of "
                        "interrupted runs (they are replaced only when the new run completes)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    """Handler of `medlib run`."""
    _raise_on_sigterm()
    if not args.quiet:
        _stream_papermill_log()
    results_dir = run_experiment(
        args.params,
        stages=args.stages,
        from_stage=args.from_stage,
        overrides=args.overrides,
        notebooks_dir=args.notebooks_dir,
        kernel_name=args.kernel,
        log_output=not args.quiet,
        resume=args.resume,
        fresh=args.fresh,
    )
    print(f"[medlib] results in {results_dir}")
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (scancel, preemption, a time limit): stop like Ctrl-C so the stage is recorded as interrupted."""


def _raise_on_sigterm() -> None:
    """Turn SIGTERM into Terminated in the main thread (the kernel is shut down on the way out)."""
    import signal
    import threading

    def stop(signum: int, frame: object) -> None:
        raise Terminated(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def _stream_papermill_log() -> None:
    """Show papermill's cell-by-cell log (it logs executed cells' output) on stdout."""
    logger = logging.getLogger("papermill")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(live.redacting_filter())  # Slurm logs are shared files: no tokens in them
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _add_build_tiny(subparsers: argparse._SubParsersAction) -> None:
    """`medlib build-tiny OUT [--arch A] [--image-size N] [--seed S]`."""
    parser = subparsers.add_parser(
        "build-tiny",
        help="build a tiny random-init Qwen-VL checkpoint folder offline",
        description="Build a tiny random-init Qwen-VL model, tokenizer and processor and save them as an "
        "ordinary checkpoint folder (loadable like a hub checkpoint).",
    )
    parser.add_argument("out", help="folder to write, e.g. runs/tiny/base-model")
    parser.add_argument("--arch", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen2_vl", "qwen3_vl"])
    parser.add_argument("--image-size", type=int, default=112, help="square image side (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", default="tiny", choices=["tiny", "3b", "7b"],
                        help="tiny (default), or the layer sizes of Qwen2.5-VL-3B/7B in bf16 for GPU benchmarks")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an existing folder")
    parser.set_defaults(handler=_build_tiny)


def _build_tiny(args: argparse.Namespace) -> int:
    """Handler of `medlib build-tiny`."""
    from pathlib import Path

    from medlib.models.tiny import build_tiny_model

    target = Path(args.out)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{args.out}: is a file; build-tiny writes a checkpoint folder")
    if target.is_dir() and any(target.iterdir()) and not args.overwrite:
        raise ConfigError(f"{args.out}: folder is not empty; pass --overwrite to replace its files")
    out = build_tiny_model(args.out, args.arch, image_size=args.image_size, seed=args.seed, shape=args.shape)
    print(f"[medlib] {args.shape} random-init {args.arch} checkpoint in {out}")
    return 0


def _add_data(subparsers: argparse._SubParsersAction) -> None:
    """`medlib data convert SRC --out OUT [...]` and `medlib data validate SRC [...]`."""
    from medlib.data.readers import FORMATS

    parser = subparsers.add_parser("data", help="convert and validate data sets",
                                   description="Convert a source layout to records JSONL, or validate it.")
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for name, text in (("convert", "read SRC, validate it and write records JSONL"),
                       ("validate", "check SRC's structure, schema and every image; print a problem table")):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("src", help="data set folder or file")
        action.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                            help="reader to use (default: %(default)s, detected from the layout)")
        action.add_argument("--strict", action="store_true", help="fail on any problem instead of skipping")
        action.add_argument("--no-image-check", dest="check_images", action="store_false",
                            help="skip opening every image")
        action.add_argument("--image-root", default=None,
                            help="folder the image paths are relative to (Med-R1, OmniMedVQA, Libra, SLAKE), or "
                            "where absolute paths in chat JSONL are rebased to")
        action.add_argument("--language", default=None, help="SLAKE: keep questions of one q_lang (en or zh)")
        action.add_argument("--dicom-frame", type=int, default=0,
                            help="frame of multi-frame DICOM images to use (default: %(default)s, the first)")
        if name == "convert":
            action.add_argument("--out", required=True,
                                help="records.jsonl, or a folder to get one <split>.jsonl per split")
            action.add_argument("--overwrite", action="store_true",
                                help="replace records already at --out (never the source itself)")
        action.set_defaults(handler=_data)


def _data(args: argparse.Namespace) -> int:
    """Handler of `medlib data convert|validate`: prints the problem table; 1 on --strict problems or bad input."""
    from medlib.data.readers import convert
    from medlib.data.validation import ValidationFailed, validate_source

    options = {"image_root": args.image_root, "language": args.language, "dicom_frame": args.dicom_frame}
    try:
        if args.data_command == "convert":
            report, written = convert(args.src, args.out, args.format, strict=args.strict,
                                      check_images=args.check_images, overwrite=args.overwrite, **options)
        else:
            report, written = validate_source(args.src, args.format, check_images=args.check_images, **options), []
    except (ValidationFailed, ValueError, OSError) as error:
        print(f"medlib data {args.data_command}: error: {error}", file=sys.stderr)
        return 1
    print(report.table())
    for path in written:
        print(f"[medlib] wrote {path}")
    return 1 if args.strict and report.problems else 0


def _add_score(subparsers: argparse._SubParsersAction) -> None:
    """`medlib score PREDICTIONS [--against OTHER] [--out metrics.json] [--parser flare|robust] [report options]`."""
    parser = subparsers.add_parser(
        "score",
        help="score a predictions JSONL file per data set and task, with bootstrap CIs",
        description="Score predictions with each task's metrics under FLARE 2025 conventions (or --parser robust); "
        "report generation in four named conventions: flare (FLARE's keyword score, clinical efficacy, BLEU), "
        "libra (Libra's evaluate_report: HF evaluate BLEU-1..4, ROUGE-L, METEOR, temporal F1 on cleaned text), "
        "sacrebleu, and coco (pycocoevalcap: PTB tokens, BLEU-1..4, ROUGE-L, CIDEr, METEOR; needs Java). With "
        "--against, a paired comparison (PREDICTIONS - OTHER). Writes a JSON file and a markdown table beside "
        "it, and prints the table.",
    )
    parser.add_argument("predictions", help="predictions JSONL, e.g. runs/tiny/predictions/sft.jsonl")
    parser.add_argument("--against", metavar="OTHER", help="baseline predictions JSONL on the same ids")
    parser.add_argument("--out", help="JSON output (default: PREDICTIONS with .metrics.json); .md written beside it")
    parser.add_argument("--parser", choices=["flare", "robust"], default="flare",
                        help="flare: the originals' parsing and scoring, empty references scored as they do; robust: "
                        "careful parsing, empty references skipped (default: %(default)s)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    parser.add_argument(
        "--bertscore-model",
        default=None,
        help="BERTScore model for reports (on Libra-cleaned text): a hub id (Libra uses distilbert-base-uncased), "
        "a local path, or 'minilm' for the offline all-MiniLM-L6-v2; default: no BERTScore",
    )
    parser.add_argument("--no-coco", dest="coco", action="store_false",
                        help="skip the coco (pycocoevalcap) convention for reports")
    parser.add_argument("--coco-meteor", action="store_true",
                        help="add pycocoevalcap's METEOR 1.5 (Java; its start-up takes about a minute)")
    parser.add_argument("--model-metrics", type=_split_names, default=[], metavar="NAMES",
                        help="model-based report metrics through RadEval, some of radgraph,chexbert,green "
                        "(pip install -e '.[metrics]' and their weights from the hub; not run in this repository)")
    parser.set_defaults(handler=_score)


def _score(args: argparse.Namespace) -> int:
    """Handler of `medlib score`."""
    from pathlib import Path

    from medlib.evaluation.metrics import model_based, scoring
    from medlib.evaluation.prediction_file import read_predictions
    from medlib.pipeline.results import atomic_write_json, atomic_write_text

    unknown = sorted(set(args.model_metrics) - set(model_based.MODEL_METRICS))
    if unknown:
        print(f"medlib score: error: --model-metrics: unknown {unknown}; choose from "
              f"{', '.join(model_based.MODEL_METRICS)}", file=sys.stderr)
        return 1
    try:
        predictions = read_predictions(args.predictions)
        baseline = read_predictions(args.against) if args.against else None
    except (OSError, ValueError) as error:
        print(f"medlib score: error: {error}", file=sys.stderr)
        return 1
    from medlib.evaluation import score_checks  # empty files, repeated ids, unpaired --against ids

    score_checks.check_predictions(predictions, args.predictions)
    if baseline is not None:
        score_checks.check_predictions(baseline, args.against)
        warning = score_checks.check_pairing(predictions, baseline, args.predictions, args.against)
        if warning:
            print(f"medlib score: {warning}", file=sys.stderr)
    options = scoring.ScoringOptions(bertscore_model=args.bertscore_model, coco=args.coco,
                                     coco_meteor=args.coco_meteor, model_metrics=tuple(args.model_metrics))
    try:
        scores = scoring.score_records(predictions, args.parser, args.resamples, options)
    except RuntimeError as error:  # a requested optional metric that cannot run here (RadEval, weights)
        print(f"medlib score: error: {error}", file=sys.stderr)
        return 1
    except ArithmeticError as error:  # e.g. answers like 1e308 whose sum overflows: a message, not a traceback
        print(f"medlib score: error: {args.predictions}: a numeric answer is too large to score "
              f"({type(error).__name__}: {error})", file=sys.stderr)
        return 1
    if baseline is not None:
        scores["comparison"] = scoring.compare_records(baseline, predictions, args.parser, args.resamples)
    out = Path(args.out) if args.out else Path(args.predictions).with_suffix(".metrics.json")
    table = scoring.markdown_table(scores, scores.get("comparison"))
    atomic_write_json(out, scores)
    atomic_write_text(out.with_suffix(".md"), table)
    print(table, end="")
    print(f"[medlib] scores in {out} and {out.with_suffix('.md')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="medlib", description="Fine-tune and evaluate medical vision-language models."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(subparsers)
    _add_build_tiny(subparsers)
    _add_data(subparsers)
    _add_score(subparsers)
    predict.add_parser(subparsers)
    train_command.add_parser(subparsers)
    doctor.add_parser(subparsers)
    notebook_cells.add_parser(subparsers)
    sweep.add_parser(subparsers)
    slurm.add_parser(subparsers)
    leaderboard.add_parser(subparsers)
    lab.add_parser(subparsers)
    demo.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the chosen subcommand and return its exit status (see EXIT_*)."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KernelDied as error:
        return _fail(args, error, EXIT_INTERRUPTED)
    except StageFailed as error:
        return _fail(args, error, EXIT_STAGE_FAILED)
    except USER_ERRORS as error:
        return _fail(args, error, EXIT_BAD_INPUT)
    except (OSError, UnicodeDecodeError) as error:
        # A file that cannot be read or written: the message names it.
        return _fail(args, error, EXIT_BAD_INPUT)
    except KeyboardInterrupt as error:
        terminated = isinstance(error, Terminated)
        return _fail(args, f"{'terminated' if terminated else 'interrupted'}; what completed is kept "
                     "(medlib run: rerun with --resume)", EXIT_TERMINATED if terminated else EXIT_CTRL_C)


def _fail(args: argparse.Namespace, error: object, code: int) -> int:
    """Print `medlib CMD: error: ...` on one line (secrets redacted) and return the exit code."""
    from medlib.pipeline.rendering import scrub_text, secret_values

    print(f"medlib {args.command}: error: {scrub_text(str(error), secret_values())}", file=sys.stderr)
    return code
