"""SFT throughput: medlib's trainer path vs a plain transformers + peft loop, same model and batches.

    .venv/bin/python bench/sft.py                         # tiny random Qwen2.5-VL on CPU
    python bench/sft.py --model DIR --image-size 448 --batch-size 8 --steps 10   # e.g. a 3B shape on a GPU

Both paths train LoRA on the language model over the same rows for `--epochs` epochs of
`--steps` steps; medlib serves the frozen vision tower's features from its cache after an
image's first visit (`--no-vision-cache` turns that off). Each path runs in its own process (so
peak memory is its own); prints the mean step time over all steps after two warm-up steps,
tokens/s and peak memory side by side, then `ratio (medlib / plain tokens/s): <x>`.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# Nothing here imports transformers, TRL or peft: the medlib path imports Unsloth first (in `child`),
# or Unsloth warns that its patches may not apply and the benchmark measures a half-patched Unsloth.
from medlib.models.lora import LoraParams, lora_target_regex

LORA = LoraParams(r=16, lora_alpha=32, lora_dropout=0.0)


def peak_memory_gib() -> float:
    """Peak accelerator memory, or the process's peak resident memory on CPU, in GiB."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def rows(work: Path, args: argparse.Namespace, style: str = "prompt_completion") -> list[dict]:
    """SFT rows of synthetic questions: one epoch's worth, repeated for every epoch."""
    from medlib import data
    from medlib.data import synthetic

    path = synthetic.make_split(work / "data", "train", args.batch_size * args.steps, image_size=args.image_size,
                                question_types=["presence", "count"])
    return data.sft_rows(data.read_records(path), work / "data", image_size=args.image_size, style=style) * args.epochs


def total_steps(args: argparse.Namespace) -> int:
    """Optimizer steps of one path."""
    return args.steps * args.epochs


def measure_medlib(model_dir: str, work: Path, args: argparse.Namespace) -> dict:
    """Median step time of medlib's SFT trainer (TRL collator, answer-only loss)."""
    from transformers import TrainerCallback

    from medlib import data, models
    from medlib.models import vision_cache
    from medlib.training import sft

    pixels = args.image_size**2
    model, processor, backend = models.load_model(model_dir, min_pixels=pixels, max_pixels=pixels,
                                                  gradient_checkpointing=args.gradient_checkpointing)
    model = models.prepare_for_training(model, backend, "lora", LORA, gradient_checkpointing=args.gradient_checkpointing)
    cache = None if args.no_vision_cache else vision_cache.cache_for_training(model, 4.0)
    train = data.to_dataset(rows(work, args, "messages" if backend == "unsloth" else "prompt_completion"))
    times: list[float] = []
    tokens: list[int] = []

    class StepTimer(TrainerCallback):
        """Time from one step's end to the next: collation counts, as in the plain loop."""

        def on_train_begin(self, *a, **k):
            self.last = time.perf_counter()

        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            now = time.perf_counter()
            times.append(now - self.last)
            self.last = now

    config = sft.build_sft_config(work / "out", backend=backend, seed=0, max_steps=total_steps(args),
                                  per_device_train_batch_size=args.batch_size, learning_rate=1e-4,
                                  logging_steps=1000, save_strategy="no", dataloader_num_workers=args.dataloader_workers,
                                  gradient_checkpointing=args.gradient_checkpointing)
    trainer = sft.make_sft_trainer(model, processor, backend, config, train, callbacks=[StepTimer()])
    collate = trainer.data_collator
    tokens.append(int(collate([train[i] for i in range(args.batch_size)])["attention_mask"].sum()))
    trainer.train()
    return {"step_s": statistics.mean(times[2:]), "tokens_per_step": tokens[0],
            "vision_cache": cache.stats() if cache else None}


def measure_plain(model_dir: str, work: Path, args: argparse.Namespace) -> dict:
    """Median step time of a hand-written transformers + peft loop over the same rows."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from medlib import data, models
    from medlib.data.processing import load_processor

    device = models.resolve_device("auto")
    dtype = models.resolve_dtype("auto", device)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype).to(device)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=lora_target_regex(LORA)))
    processor = load_processor(model_dir, min_pixels=args.image_size**2, max_pixels=args.image_size**2)
    processor.tokenizer.padding_side = "right"
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    dataset = data.to_dataset(rows(work, args))  # the same Arrow rows as the Trainer reads: images decoded on access
    times, tokens = [], 0
    for step in range(total_steps(args)):
        started = time.perf_counter()  # reading and collation count, as they do inside the Trainer's step
        batch = [dataset[i] for i in range(step * args.batch_size, (step + 1) * args.batch_size)]
        texts = [processor.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in batch]
        inputs = processor(text=texts, images=[r["images"] for r in batch], return_tensors="pt", padding=True).to(device)
        labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        tokens = int(inputs["attention_mask"].sum())
    return {"step_s": statistics.mean(times[2:]), "tokens_per_step": tokens}


def child(args: argparse.Namespace) -> None:
    """Measure one path in this process and print its numbers as JSON."""
    if args.path == "medlib":
        from medlib.models.loading import activate_backend

        activate_backend("auto")  # Unsloth (on CUDA) before anything imports transformers, TRL or peft
    from medlib.pipeline import workspace

    workspace.seed_everything(0)
    work = Path(args.work)
    measure = measure_medlib if args.path == "medlib" else measure_plain
    result = measure(args.model, work / args.path, args)
    result["peak_gib"] = peak_memory_gib()
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    """Run both paths in separate processes and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="checkpoint folder (default: build a tiny random model)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs over the same rows")
    parser.add_argument("--no-vision-cache", action="store_true", help="medlib without its vision feature cache")
    parser.add_argument("--dataloader-workers", type=int, default=0,
                        help="medlib prepares batches in this many worker processes beside training")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--path", choices=["medlib", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.path:
        child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="medlib-bench-sft-"))
    if not args.model:
        from medlib.models.tiny import build_tiny_model

        args.model = str(build_tiny_model(work / "model", image_size=args.image_size))
    results = {}
    for path in ("medlib", "plain"):
        command = [sys.executable, __file__, "--path", path, "--work", str(work), "--model", args.model,
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                   "--image-size", str(args.image_size), "--epochs", str(args.epochs),
                   "--dataloader-workers", str(args.dataloader_workers)]
        command += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
        command += ["--no-vision-cache"] if args.no_vision_cache else []
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[path] = json.loads(output.split("RESULT ", 1)[1])
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"model {args.model} · batch {args.batch_size} · {args.image_size}px · LoRA r=16 (language model) · "
          f"{args.epochs} epochs × {args.steps} steps · {device}")
    print(f"{'path':<34}{'step s':>9}{'tokens/s':>11}{'peak GiB':>10}")
    speed = {}
    for path, label in (("medlib", "medlib (TRL SFTTrainer, answer loss)"), ("plain", "plain transformers + peft loop")):
        r = results[path]
        speed[path] = r["tokens_per_step"] / r["step_s"]
        print(f"{label:<34}{r['step_s']:>9.3f}{speed[path]:>11.0f}{r['peak_gib']:>10.2f}")
    if results["medlib"].get("vision_cache"):
        print(f"medlib vision feature cache: {results['medlib']['vision_cache']}")
    print(f"ratio (medlib / plain tokens/s): {speed['medlib'] / speed['plain']:.2f}")


if __name__ == "__main__":
    main()
