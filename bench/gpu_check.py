"""One short check of the CUDA path: Unsloth vs transformers+peft on SFT, GRPO and batched generation.

    bash bench/gpu_check.sh MODEL_DIR [OUT_DIR] [options]     # on one CUDA machine, under 8 minutes
    python bench/gpu_check.py --model DIR --out DIR [options]  # the same without building the model

On a random-init Qwen2.5-VL-3B-shaped model at 448 px, each backend runs in its own process
(`bench/gpu_check_child.py`: Unsloth imported first, its own peak memory): (c) greedy batched
generation, Unsloth's `for_inference` path vs the hf backend's static-cache compiled decoding;
(a) LoRA SFT steps through medlib's config and trainer; (b) GRPO steps with medlib's recipe.
Prints one table (tokens/s, peak memory, first → last loss, vision-cache hit rate, per-reward
means, equal greedy outputs) and the effective trainer configs, and writes it all to
OUT_DIR/gpu_check.json. Where Unsloth cannot run (no CUDA, or not installed) its rows say why.
A time budget (`--budget-s`) bounds the whole run: a backend that runs out is stopped and its
unfinished phases are reported as such.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("gpu_check_child.py")
BACKENDS = ("unsloth", "hf")
PHASES = ("generate", "sft", "grpo")
PACKAGES = ("torch", "transformers", "trl", "peft", "unsloth", "unsloth_zoo", "bitsandbytes", "torchvision")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unsloth_skip_reason() -> str | None:
    """Why the Unsloth backend cannot run here, or None (read without importing Unsloth)."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return "skipped: no CUDA here (Unsloth's vision models need a GPU)"
    if importlib.util.find_spec("unsloth") is None:
        return "skipped: the unsloth package is not installed"
    return None


def prepare_data(knobs: dict[str, Any]) -> None:
    """Synthetic records: enough training questions for the SFT and GRPO steps, and the generation prompts."""
    from medlib.data import synthetic

    data_dir = Path(knobs["data_dir"])
    grpo_prompts = knobs["grpo_steps"] * knobs["grpo_batch"] // knobs["num_generations"]
    train = max(knobs["batch_size"] * knobs["sft_steps"], grpo_prompts)
    synthetic.make_split(data_dir, "train", train, seed=0, image_size=knobs["image_size"])
    synthetic.make_split(data_dir, "test", knobs["gen_n"], seed=0, image_size=knobs["image_size"],
                         question_types=["presence", "count"])


def run_backend(backend: str, knobs: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one backend's child process within `timeout` seconds; its result, with what did not finish."""
    out = Path(knobs["out"])
    result_path, log_path = out / f"{backend}.json", out / f"{backend}.log"
    result_path.unlink(missing_ok=True)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            code = subprocess.run([sys.executable, str(CHILD), backend, json.dumps(knobs), str(result_path)],
                                  stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
            ending = None if code == 0 else f"process exited with {code}"
        except subprocess.TimeoutExpired:
            ending = f"stopped by the time budget after {timeout:.0f} s"
    result = json.loads(result_path.read_text()) if result_path.exists() else {"backend": backend, "phases": {}}
    result["wall_s"] = time.perf_counter() - started
    for phase in knobs["phases"]:
        if phase not in result["phases"]:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            result["phases"][phase] = {"status": f"not run: {ending or 'unknown'}", "log_tail": tail}
    return result


def _cell(value: Any, spec: str = "") -> str:
    return "—" if value is None else format(value, spec)


def _loss_cell(row: dict[str, Any]) -> str:
    losses = row.get("losses") or []
    if not losses:
        return "—"
    marks = ("finite" if row.get("finite") else "NOT finite") + (", falling" if row.get("falling") else "")
    return f"{losses[0]:.3f} → {losses[-1]:.3f} ({marks})"


def _note(phase: str, row: dict[str, Any]) -> str:
    if row.get("status") != "ok":
        return row.get("error") or "; ".join(row.get("log_tail") or [])
    if phase == "generate":
        return f"{row['decoding']}; first pass {row['first_pass_s']:.1f} s"
    if phase == "grpo":
        means = ", ".join(f"{k.split('/')[1]} {v[-1]:.2f}" for k, v in row["rewards"].items() if v)
        return f"{row['rollout_engine']} rollouts; rewards (last step): {means or 'none logged'}"
    return f"first step {row['first_step_s']:.1f} s (compilation included)"


def table(report: dict[str, Any]) -> str:
    """The whole check as one text table, followed by the effective trainer configs."""
    lines = [f"medlib GPU check · {report['device']} · {report['date']} · model {report['model']} · "
             f"{report['knobs']['image_size']} px · wall {report['wall_s']:.0f} s",
             f"{'phase':<9}{'backend':<9}{'status':<9}{'tokens/s':>9}{'peak GiB':>9}  {'loss first → last':<32}"
             f"{'cache hit':>9}  notes"]
    for phase in report["knobs"]["phases"]:
        for backend in BACKENDS:
            row = report["backends"][backend]["phases"].get(phase, {})
            status = row.get("status", "—")
            hit = (row.get("vision_cache") or {}).get("hit_rate")
            lines.append(f"{phase:<9}{backend:<9}{status.split(':')[0]:<9}{_cell(row.get('tokens_per_s'), '.0f'):>9}"
                         f"{_cell(row.get('peak_gib'), '.1f'):>9}  {_loss_cell(row):<32}{_cell(hit, '.2f'):>9}  "
                         f"{status if status not in ('ok', '—') else _note(phase, row)}"[:260])
    equal = report.get("greedy_equal")
    lines.append("greedy outputs equal, unsloth vs hf: " + (f"{equal[0]}/{equal[1]}" if equal else "— (needs both)"))
    for backend in BACKENDS:
        before = report["backends"][backend].get("imported_before_backend")
        if before is not None:
            lines.append(f"{backend}: imported before the backend: {', '.join(before) or 'none'}")
        for phase in ("sft", "grpo"):
            config = report["backends"][backend]["phases"].get(phase, {}).get("trainer_config")
            if config:
                text = " ".join(f"{k}={v}" for k, v in config["effective"].items())
                lines.append(f"{phase} trainer config ({backend}): {text}")
                lines.append(f"  changed after medlib set them: {config['changed'] or 'none'}")
    return "\n".join(lines)


def main() -> None:
    """Prepare the data, run each backend within the budget, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Qwen2.5-VL checkpoint folder (random weights are fine)")
    parser.add_argument("--out", default="gpu-check", help="folder for gpu_check.json, logs and data")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--batch-size", type=int, default=8, help="SFT rows per step")
    parser.add_argument("--sft-steps", type=int, default=3, help="SFT steps per epoch (distinct rows: steps × batch)")
    parser.add_argument("--sft-epochs", type=int, default=2, help="epochs over the same rows (the cache hits from 2)")
    parser.add_argument("--sft-learning-rate", type=float, default=1e-3)
    parser.add_argument("--grpo-steps", type=int, default=3)
    parser.add_argument("--grpo-batch", type=int, default=8, help="completions per GRPO step")
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=32)
    parser.add_argument("--grpo-engine", default="eager", choices=["eager", "compiled"],
                        help="the hf backend's rollout engine (compiled: CUDA graphs, another compile)")
    parser.add_argument("--gen-n", type=int, default=32, help="generation prompts")
    parser.add_argument("--gen-batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per prompt (forced)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--budget-s", type=float, default=420, help="seconds for all backends together")
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    knobs = {**{k: v for k, v in vars(args).items() if k not in ("backends", "phases", "out", "budget_s")},
             "model": str(Path(args.model).resolve()), "out": str(out), "data_dir": str(out / "data"),
             "phases": [p for p in args.phases.split(",") if p]}
    prepare_data(knobs)
    import torch

    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "model": args.model, "knobs": knobs,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU × {os.cpu_count()} cores",
        "versions": {name: _version(name) for name in PACKAGES}, "backends": {}}
    wanted = [b for b in args.backends.split(",") if b]
    for backend in BACKENDS:
        skip = "skipped: not asked for (--backends)" if backend not in wanted else (
            unsloth_skip_reason() if backend == "unsloth" else None)
        left = args.budget_s - (time.perf_counter() - started)
        if skip is None and left < 30:
            skip = f"skipped: the time budget is spent ({left:.0f} s left)"
        if skip:
            report["backends"][backend] = {"backend": backend, "phases": {p: {"status": skip} for p in knobs["phases"]}}
            continue
        print(f"[gpu-check] {backend}: running {', '.join(knobs['phases'])} ({left:.0f} s left)", flush=True)
        report["backends"][backend] = run_backend(backend, knobs, left)
    texts = [report["backends"][b]["phases"].get("generate", {}).get("texts") for b in BACKENDS]
    if all(texts):
        report["greedy_equal"] = [sum(a == b for a, b in zip(*texts, strict=True)), len(texts[0])]
    report["wall_s"] = time.perf_counter() - started
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(table(report), flush=True)
    print(f"[gpu-check] written: {out / 'gpu_check.json'}", flush=True)


if __name__ == "__main__":
    main()
