"""Batched inference (medlib) vs the one-question-at-a-time loop, same model, prompts and outputs.

    .venv/bin/python bench/inference.py                       # tiny random Qwen2.5-VL on CPU
    python bench/inference.py --model DIR --image-size 448 --n 32 --batch-size 32   # e.g. on a GPU

Prints tokens/s of both paths side by side, checks the greedy outputs are equal, and ends with
`speedup: <ratio>x`.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def timed(function) -> tuple[object, float]:
    """Run a function once; return its result and wall seconds (CUDA synchronised)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def main() -> None:
    """Measure both paths and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="checkpoint folder (default: build a tiny random model)")
    parser.add_argument("--n", type=int, default=64, help="questions")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per question (forced)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--cache-implementation", default="", help="e.g. static (CUDA)")
    args = parser.parse_args()
    from medlib import models

    models.activate_backend("auto")  # Unsloth (on CUDA) before anything imports transformers, TRL or peft
    from medlib.data import read_records, synthetic
    from medlib.evaluation import inference
    from medlib.models.tiny import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="medlib-bench-"))
    model_dir = args.model or str(build_tiny_model(work / "model", image_size=args.image_size))
    data_path = synthetic.make_split(work / "data", "test", args.n, image_size=args.image_size,
                                     question_types=["presence", "count"])
    records = read_records(data_path)
    pixels = args.image_size * args.image_size
    model, processor, backend = models.load_model(model_dir, min_pixels=pixels, max_pixels=pixels)
    model = models.for_inference(model, backend)
    # Force every answer to the same length so both paths generate the same number of tokens.
    model.generation_config.min_new_tokens = args.new_tokens
    options = {"image_size": args.image_size, "max_new_tokens": args.new_tokens,
               "cache_implementation": args.cache_implementation}

    def one_at_a_time() -> list[str]:
        return [inference.generate_batch(model, processor, [r], work / "data", **options)[0] for r in records]

    def batched() -> list[str]:
        predictions = inference.predict_records(model, processor, records, work / "data", checkpoint="bench",
                                                batch_size=args.batch_size, progress=False, **options)
        return [p["raw"] for p in predictions]

    batched()  # warm-up (allocator, compiled kernels)
    single_outputs, single_seconds = timed(one_at_a_time)
    batched_outputs, batched_seconds = timed(batched)
    tokens = args.n * args.new_tokens
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU × {torch.get_num_threads()} threads"
    print(f"model {model_dir} · {args.n} questions × {args.new_tokens} new tokens · {device}")
    print(f"{'path':<28}{'wall s':>10}{'tokens/s':>12}")
    print(f"{'one at a time':<28}{single_seconds:>10.2f}{tokens / single_seconds:>12.1f}")
    print(f"{'batched (medlib), bs ' + str(args.batch_size):<28}{batched_seconds:>10.2f}{tokens / batched_seconds:>12.1f}")
    equal = sum(a == b for a, b in zip(single_outputs, batched_outputs))
    print(f"greedy outputs equal: {equal}/{args.n}")
    print(f"speedup: {single_seconds / batched_seconds:.1f}x")


if __name__ == "__main__":
    main()
