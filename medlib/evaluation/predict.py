"""`medlib predict`: answer one image + question, or a records file, with any checkpoint."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from medlib.data import TASKS


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
    many.add_argument("--records", help="records JSONL (DESIGN.md record format)")
    many.add_argument("--data-root", help="folder the records' image paths are relative to (default: the file's folder)")
    many.add_argument("--out", help="predictions JSONL to write")
    many.add_argument("--resume", action="store_true", help="skip ids already in the partial output of a killed run")
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
    """Build a record for one command-line question; its images are resolved against '/'."""
    if not args.image or not args.question:
        raise SystemExit("medlib predict: give --image and --question, or --records")
    paths = [Path(p).resolve() for p in args.image]
    for path in paths:
        if not path.exists():
            raise SystemExit(f"medlib predict: image not found: {path}")
    record = {"id": "cli-0", "dataset": "cli", "task": args.task, "question": args.question, "answer": "",
              "images": [str(p.relative_to(p.anchor)) for p in paths], "meta": {}}
    if args.choices:
        record["choices"] = [c.strip() for c in args.choices.split(",") if c.strip()]
    return record, Path(paths[0].anchor)


def run_predict(args: argparse.Namespace) -> int:
    """Handler of `medlib predict`."""
    from medlib import models
    from medlib.data import read_records
    from medlib.evaluation import inference

    backend = models.activate_backend(args.backend)
    if args.records:
        records = read_records(args.records)
        data_root = Path(args.data_root) if args.data_root else Path(args.records).parent
    else:
        record, data_root = _single_record(args)
        records = [record]
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
        if not args.flare_questions:
            raise SystemExit("medlib predict: --submission needs --flare-questions")
        inference.write_flare_submission(args.flare_questions, predictions, args.submission)
    if args.review_sheet:
        inference.write_review_sheet(args.review_sheet, records, {args.model: predictions})
    parsed = sum(p["parsed"] is not None for p in predictions)
    print(f"[medlib] {len(predictions)} predictions ({parsed} parsed)" + (f" -> {args.out}" if args.out else ""))
    return 0
