"""`medlib predict`: answer one image + question, or a records file, with any checkpoint."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from medlib.data import TASKS
from medlib.pipeline.config import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `medlib predict` on the CLI."""
    parser = subparsers.add_parser(
        "predict", help="answer one image + question, or every record of a JSONL file",
        description="Load a checkpoint once (hub id, local folder, LoRA adapter or merged model) and generate "
        "with the same prompt and image preprocessing as training. One question prints JSON; --records writes "
        "predictions JSONL (resumable) and optionally a FLARE submission and an Excel review sheet.")
    parser.add_argument("--model", required=True, help="checkpoint: hub id, folder, or adapter folder")
    single = parser.add_argument_group("one question")
    single.add_argument("--image", action="append", default=[], help="image path (repeat: current first, then prior)")
    single.add_argument("--question", help="the question text")
    single.add_argument("--task", default="vqa_open", choices=TASKS, help="task type for parsing (default: %(default)s)")
    single.add_argument("--choices", help="comma-separated options for classification / closed questions")
    many = parser.add_argument_group("many questions")
    many.add_argument("--records", help="records JSONL (record format: docs/architecture.md)")
    many.add_argument("--data-root", help="folder the records' image paths are relative to (default: the file's folder)")
    many.add_argument("--out", help="predictions JSONL to write")
    many.add_argument("--resume", action="store_true",
                      help="skip ids already in the partial output of a killed run (same model only)")
    many.add_argument("--overwrite", action="store_true", help="replace an existing --out, --submission or "
                      "--review-sheet file")
    many.add_argument("--flare-questions", help="FLARE questions JSON to fill in as a submission")
    many.add_argument("--submission", help="where to write the FLARE submission JSON")
    many.add_argument("--review-sheet", help="where to write an Excel review sheet (.xlsx)")
    options = parser.add_argument_group("generation")
    options.add_argument("--backend", default="auto", choices=["auto", "unsloth", "hf"])
    options.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU) | cuda | mps | cpu")
    options.add_argument("--image-size", type=int, default=0, help="resize images square (0: processor's policy)")
    options.add_argument("--answer-format", default="think_answer", choices=["think_answer", "answer_tags", "plain"])
    options.add_argument("--system-prompt", default="")
    options.add_argument("--batch-size", type=int, default=16)
    options.add_argument("--max-new-tokens", type=int, default=0, help="0: per-task defaults")
    options.add_argument("--num-beams", type=int, default=1)
    options.add_argument("--length-penalty", type=float, default=1.0)
    options.add_argument("--cache-implementation", default="auto",
                         help="auto (static KV cache for long CUDA runs) | static | dynamic")
    parser.set_defaults(handler=run_predict)


def _single_record(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """Build a record for one command-line question; its images are resolved against '/' and must load."""
    from medlib.data.processing import load_image

    if not args.image or not args.question:
        raise ConfigError("give --image and --question, or --records")
    paths = [Path(p).resolve() for p in args.image]
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"--image {path}: file not found")
        try:
            load_image(path)
        except Exception as error:  # noqa: BLE001 - truncated, not an image, too large: one line, no traceback
            raise ConfigError(f"--image {path}: not a readable image ({type(error).__name__}: {error})") from None
    record = {"id": "cli-0", "dataset": "cli", "task": args.task, "question": args.question, "answer": "",
              "images": [str(p.relative_to(p.anchor)) for p in paths], "meta": {}}
    if args.choices:
        record["choices"] = [c.strip() for c in args.choices.split(",") if c.strip()]
    return record, Path(paths[0].anchor)


def check_model(model: str) -> None:
    """A local-looking --model must be a folder holding a checkpoint; say so in one line (no hub-id talk)."""
    from medlib.pipeline.paths import looks_local

    path = Path(model).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in ("config.json", "adapter_config.json")):
            raise ConfigError(f"--model {model}: folder has no config.json or adapter_config.json (not a "
                              "checkpoint folder; a training run keeps its model in <run>/final)")
        return
    if path.exists():
        raise ConfigError(f"--model {model}: not a folder (give a checkpoint folder or a hub id)")
    if looks_local(model):
        raise ConfigError(f"--model {model}: folder not found")


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse to replace a file the user already has unless --overwrite, and never write over --records."""
    targets = [("--out", args.out), ("--submission", args.submission), ("--review-sheet", args.review_sheet)]
    source = Path(args.records).resolve() if args.records else None
    for option, value in targets:
        if not value:
            continue
        path = Path(value)
        if source is not None and path.resolve() == source:
            raise ConfigError(f"{option} {value}: is the --records file itself; choose another file")
        if path.is_dir():
            raise ConfigError(f"{option} {value}: is a folder; give a file name")
        if path.exists() and not args.overwrite:
            raise ConfigError(f"{option} {value}: exists already; pass --overwrite to replace it")
    if args.submission and not args.flare_questions:
        raise ConfigError("--submission needs --flare-questions")
    if args.out and args.resume and not Path(str(args.out) + ".partial").exists():
        print(f"[medlib] --resume: no {args.out}.partial to continue; starting from the first record", flush=True)


def run_predict(args: argparse.Namespace) -> int:
    """Handler of `medlib predict`."""
    from medlib import models
    from medlib.data import read_records
    from medlib.evaluation import inference

    check_model(args.model)
    check_outputs(args)
    if args.records:
        records = read_records(args.records)
        data_root = Path(args.data_root) if args.data_root else Path(args.records).parent
        if not records:
            raise ConfigError(f"--records {args.records}: no records in the file")
    else:
        record, data_root = _single_record(args)
        records = [record]
    backend = models.activate_backend(args.backend)
    pixels = args.image_size * args.image_size if args.image_size else None
    model, processor, backend = models.load_model(args.model, backend=backend, device=args.device,
                                                  min_pixels=pixels, max_pixels=pixels)
    model = models.for_inference(model, backend)
    predictions = inference.predict_records(
        model, processor, records, data_root, checkpoint=args.model, image_size=args.image_size or None,
        answer_format=args.answer_format, system_prompt=args.system_prompt or None, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, num_beams=args.num_beams, length_penalty=args.length_penalty,
        cache_implementation=args.cache_implementation, out_path=args.out, resume=args.resume,
        progress=len(records) > 1)
    if not args.records:
        result = {key: predictions[0][key] for key in ("raw", "parsed", "parse_error")}
        json.dump({"answer": inference.answer_text(predictions[0]), **result}, sys.stdout)
        print()
        return 0
    if args.submission:
        inference.write_flare_submission(args.flare_questions, predictions, args.submission)
    if args.review_sheet:
        inference.write_review_sheet(args.review_sheet, records, {args.model: predictions})
    parsed = sum(p["parsed"] is not None for p in predictions)
    skipped = len(records) - len(predictions)
    print(f"[medlib] {len(predictions)} predictions ({parsed} parsed"
          + (f", {skipped} records skipped" if skipped else "") + ")" + (f" -> {args.out}" if args.out else ""))
    return 0
