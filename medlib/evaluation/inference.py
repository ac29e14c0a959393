"""Batched generation over records → predictions JSONL (prediction contract, docs/architecture.md), resumable."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from medlib.data import load_record_images, prompts
from medlib.evaluation.parsing import extract_answer, parse_answer
from medlib.evaluation.prediction_file import read_jsonl as read_predictions  # noqa: F401  (the one reader)
from medlib.pipeline.config import ConfigError
from medlib.pipeline.results import atomic_write_json, atomic_write_text

# New-token budgets per task when max_new_tokens <= 0: reports are long, labels are short.
TASK_MAX_NEW_TOKENS = {"report_generation": 512, "vqa_open": 64, "detection": 128, "instance_detection": 256,
                       "multi_label": 64}
DEFAULT_MAX_NEW_TOKENS = 32
# From this many questions on CUDA, `auto` pays static-cache compilation once (~1 min on a 3B model)
# for ~2.5× faster decoding (measured anchors in README).
STATIC_CACHE_MIN_QUESTIONS = 256
# Beside `<out>.partial`: which model wrote it, so a resume never mixes two models in one file.
IDENTITY_SUFFIX = ".model.json"
SKIPPED_SHOWN = 3


class PartialMismatch(ConfigError):
    """An in-progress predictions file written by another model than the one resuming it."""


def unsloth_generates(model: Any) -> bool:
    """Whether Unsloth has replaced this model's `generate` (it keeps the original as `_old_generate`)."""
    modules = model.modules() if callable(getattr(model, "modules", None)) else [model]
    return any("_old_generate" in vars(module) for module in modules)


def resolve_cache(cache_implementation: str, n_questions: int, device: str, unsloth: bool = False) -> str:
    """`auto` → `static` for long CUDA runs, else the default dynamic cache ('').

    Under Unsloth (`unsloth`), `generate` picks its own cache: a static one with compilation
    disabled (unsloth/models/vision.py), whatever is asked, so `auto` leaves the choice to it ('').
    Compiled static-cache decoding runs on the hf backend.
    """
    if unsloth:
        return "" if cache_implementation in ("auto", "dynamic") else cache_implementation
    if cache_implementation == "auto":
        return "static" if device.startswith("cuda") and n_questions >= STATIC_CACHE_MIN_QUESTIONS else ""
    return "" if cache_implementation == "dynamic" else cache_implementation


def generation_inputs(processor: Any, records: list[dict[str, Any]], data_root: str | Path, *,
                      image_size: int | None, answer_format: str, system_prompt: str | None,
                      images: list | None = None) -> Any:
    """Tokenise a batch of prompts with their images (loaded here unless given) exactly as training does."""
    texts = [processor.apply_chat_template(prompts.prompt_messages(r, answer_format, system_prompt),
                                           add_generation_prompt=True, tokenize=False) for r in records]
    if images is None:
        images = [load_record_images(r, data_root, image_size) for r in records]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=images if any(images) else None, return_tensors="pt", padding=True)


@torch.no_grad()
def generate_batch(model: Any, processor: Any, records: list[dict[str, Any]], data_root: str | Path, *,
                   image_size: int | None, answer_format: str = "think_answer", system_prompt: str | None = None,
                   max_new_tokens: int = 64, num_beams: int = 1, length_penalty: float = 1.0,
                   do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                   cache_implementation: str = "", images: list | None = None) -> list[str]:
    """Generate one completion per record in a single padded batch; return the decoded texts."""
    inputs = generation_inputs(processor, records, data_root, image_size=image_size, answer_format=answer_format,
                               system_prompt=system_prompt, images=images).to(model.device)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample}
    if num_beams > 1:
        kwargs["length_penalty"] = length_penalty
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    if cache_implementation:
        kwargs["cache_implementation"] = cache_implementation
    output = model.generate(**inputs, **kwargs, pad_token_id=processor.tokenizer.pad_token_id)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]


def max_new_tokens_for(task: str, max_new_tokens: int) -> int:
    """The budget for one task: the explicit value when > 0, else the per-task default."""
    return max_new_tokens if max_new_tokens > 0 else TASK_MAX_NEW_TOKENS.get(task, DEFAULT_MAX_NEW_TOKENS)


def is_out_of_memory(error: BaseException) -> bool:
    """Return whether an exception is an accelerator out-of-memory error."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def length_sorted_batches(records: list[dict[str, Any]], batch_size: int, max_new_tokens: int) -> list[list[int]]:
    """Group record indices into batches of similar prompt length and equal token budget (less padding)."""
    order = sorted(range(len(records)), key=lambda i: (max_new_tokens_for(records[i]["task"], max_new_tokens),
                                                       len(records[i]["images"]), len(records[i]["question"]), i))
    batches: list[list[int]] = []
    for index in order:
        budget = max_new_tokens_for(records[index]["task"], max_new_tokens)
        current = batches[-1] if batches else None
        if (current and len(current) < batch_size
                and max_new_tokens_for(records[current[0]]["task"], max_new_tokens) == budget):
            current.append(index)
        else:
            batches.append([index])
    return batches


def predict_records(model: Any, processor: Any, records: list[dict[str, Any]], data_root: str | Path, *,
                    checkpoint: str, image_size: int | None, answer_format: str = "think_answer",
                    system_prompt: str | None = None, batch_size: int = 16, max_new_tokens: int = 64,
                    num_beams: int = 1, length_penalty: float = 1.0, do_sample: bool = False,
                    temperature: float = 1.0, top_p: float = 1.0, cache_implementation: str = "",
                    out_path: str | Path | None = None, resume: bool = False,
                    progress: bool = True) -> list[dict[str, Any]]:
    """Generate for every record in length-sorted batches, halving the batch on out-of-memory.

    With `out_path`, predictions are appended to `<out_path>.partial` as they come, `resume`
    skips ids already there (only when the same model wrote them), and the finished file is written
    atomically in the records' order. A record whose image is missing or unreadable is skipped and counted.
    """
    partial = Path(str(out_path) + ".partial") if out_path else None
    done: dict[str, dict[str, Any]] = {}
    if partial:
        identity = {"checkpoint": checkpoint, "weights": weights_digest(model)}
        sidecar = Path(str(partial) + IDENTITY_SUFFIX)
        if resume and partial.exists():
            check_partial_identity(partial, sidecar, identity)
            done = read_partial(partial)
        else:
            partial.unlink(missing_ok=True)
        atomic_write_json(sidecar, identity)
    todo = [r for r in records if r["id"] not in done]
    model.eval()
    unsloth = unsloth_generates(model)
    cache = resolve_cache(cache_implementation, len(todo), str(getattr(model, "device", "cpu")), unsloth)
    if unsloth and cache_implementation not in ("", "dynamic"):
        note = "Unsloth decodes with its own static cache, uncompiled; compiled decoding needs backend: hf"
        print(f"[medlib] cache_implementation {cache_implementation!r}: {note}", flush=True)
    options = {"image_size": image_size, "answer_format": answer_format, "system_prompt": system_prompt,
               "num_beams": num_beams, "length_penalty": length_penalty, "do_sample": do_sample,
               "temperature": temperature, "top_p": top_p, "cache_implementation": cache}
    bar = tqdm(total=len(records), initial=len(records) - len(todo), desc=f"generate {checkpoint}",
               disable=not progress, unit="q")
    skipped: dict[str, str] = {}
    pending = length_sorted_batches(todo, batch_size, max_new_tokens)
    while pending:
        indices = pending.pop(0)
        batch, images = _with_images([todo[i] for i in indices if todo[i]["id"] not in skipped], data_root,
                                     image_size, skipped)
        if not batch:
            continue
        try:
            texts = generate_batch(model, processor, batch, data_root, images=images,
                                   max_new_tokens=max_new_tokens_for(batch[0]["task"], max_new_tokens), **options)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
            if not is_out_of_memory(error) or len(batch) == 1:
                raise
            torch.cuda.empty_cache()
            batch_size = max(1, len(batch) // 2)
            bar.write(f"out of memory at batch {len(batch)}: continuing with batches of {batch_size}")
            pending = [chunk[i:i + batch_size] for chunk in [indices, *pending]
                       for i in range(0, len(chunk), batch_size)]
            continue
        new = [prediction_from(r, text, checkpoint) for r, text in zip(batch, texts)]
        if partial:
            append_predictions(partial, new)
        done.update((p["id"], p) for p in new)
        bar.update(len(new))
    bar.close()
    if skipped:
        shown = "; ".join(f"{key}: {reason}" for key, reason in list(skipped.items())[:SKIPPED_SHOWN])
        print(f"[medlib] {checkpoint}: skipped {len(skipped)} of {len(records)} records whose images could not "
              f"be loaded ({shown}{' ...' if len(skipped) > SKIPPED_SHOWN else ''})", flush=True)
    predictions = [done[r["id"]] for r in records if r["id"] in done]
    if out_path:
        write_predictions(out_path, predictions)
        partial.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
    return predictions


def _with_images(batch: list[dict[str, Any]], data_root: str | Path, image_size: int | None,
                 skipped: dict[str, str]) -> tuple[list[dict[str, Any]], list]:
    """The batch's records whose images load, with their images; the others go into `skipped` with a reason."""
    kept, images = [], []
    for record in batch:
        try:
            images.append(load_record_images(record, data_root, image_size))
        except Exception as error:  # noqa: BLE001 - missing, truncated, not an image, too large: all skipped
            skipped[record["id"]] = f"{type(error).__name__}: {error}"
            continue
        kept.append(record)
    return kept, images


def weights_digest(model: Any) -> str:
    """A short fingerprint of a model's weights (the first values of every parameter tensor)."""
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(name.encode())
        digest.update(parameter.detach().reshape(-1)[:64].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_partial_identity(partial: Path, sidecar: Path, identity: dict[str, str]) -> None:
    """Raise PartialMismatch unless `partial` was written by the model with this identity."""
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        recorded = None
    if isinstance(recorded, dict) and recorded.get("weights") == identity["weights"]:
        return
    written_by = (f"checkpoint {recorded.get('checkpoint')!r} (weights {recorded.get('weights')})"
                  if isinstance(recorded, dict) else f"an unknown model ({sidecar.name} is missing or unreadable)")
    raise PartialMismatch(
        f"{partial}: the predictions so far were written by {written_by}, not by {identity['checkpoint']!r} "
        f"(weights {identity['weights']}); refusing to mix two models in one file. Start over without "
        f"--resume (medlib run: --fresh), or delete {partial.name}")


def prediction_from(record: dict[str, Any], raw: str, checkpoint: str) -> dict[str, Any]:
    """Build one prediction (id, task, dataset, checkpoint, raw, parsed, parse_error, answer, ...)."""
    parsed, error = parse_answer(record["task"], raw, record.get("choices"))
    return {"id": record["id"], "task": record["task"], "dataset": record["dataset"], "checkpoint": checkpoint,
            "raw": raw, "parsed": parsed, "parse_error": error, "answer": record["answer"],
            "choices": record.get("choices"), "images": record.get("images", []),
            "question": record.get("question", ""), "meta": record.get("meta", {})}


def append_predictions(path: str | Path, predictions: list[dict[str, Any]]) -> None:
    """Append whole lines and flush them to disk, so a kill loses at most the line being written."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(p) + "\n" for p in predictions))
        handle.flush()
        os.fsync(handle.fileno())


def read_partial(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read an in-progress predictions file by id, ignoring a torn last line from a killed run."""
    path = Path(path)
    if not path.exists():
        return {}
    done: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            prediction = json.loads(line)
        except json.JSONDecodeError:
            continue  # only the final line of a killed run can be torn; it is regenerated
        done[prediction["id"]] = prediction
    # Rewrite without the torn tail so later appends start on a fresh line.
    atomic_write_text(path, "".join(json.dumps(p) + "\n" for p in done.values()))
    return done


def write_predictions(path: str | Path, predictions: list[dict[str, Any]]) -> Path:
    """Write predictions as JSONL atomically."""
    atomic_write_text(path, "".join(json.dumps(p) + "\n" for p in predictions))
    return Path(path)


def answer_text(prediction: dict[str, Any]) -> str:
    """The answer a submission carries: the `<answer>` content, else the whole generated text."""
    extracted = extract_answer(prediction.get("raw") or "")
    return extracted if extracted is not None else (prediction.get("raw") or "").strip()


def review_table(records: list[dict[str, Any]], predictions: dict[str, list[dict[str, Any]]]):
    """A DataFrame for clinicians: ImageName, Question, Answer, then one column per checkpoint."""
    import pandas as pd

    by_checkpoint = {name: {p["id"]: answer_text(p) for p in preds} for name, preds in predictions.items()}
    rows = []
    for record in records:
        row = {"id": record["id"], "ImageName": "; ".join(record["images"]), "Question": record["question"],
               "Answer": record["answer"]}
        row.update({name: answers.get(record["id"], "") for name, answers in by_checkpoint.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def write_review_sheet(path: str | Path, records: list[dict[str, Any]],
                       predictions: dict[str, list[dict[str, Any]]]) -> Path:
    """Write the review table as an Excel sheet (atomically), wrapped text, frozen header."""
    import io

    import pandas as pd

    from medlib.pipeline.results import atomic_write_bytes

    buffer = io.BytesIO()
    table = review_table(records, predictions)
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        table.to_excel(writer, index=False, sheet_name="review")
        sheet = writer.sheets["review"]
        sheet.freeze_panes = "A2"
        for column, width in zip("ABCDEFGHIJKLMNOP", [14, 28, 50, 30] + [40] * 12):
            sheet.column_dimensions[column].width = width
    return atomic_write_bytes(path, buffer.getvalue())


def _submission_key(images: list[str], question: str) -> tuple[tuple[str, ...], str]:
    """Match a FLARE question to a prediction by image file names and question text."""
    return tuple(Path(name).name for name in images), " ".join(question.split())


def flare_submission(questions: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the FLARE 2025 questions list with `Answer` filled from the predictions (order kept).

    A question with no prediction is an error that names it: a submission must be complete.
    """
    answers = {_submission_key(p.get("images", []), p.get("question", "")): answer_text(p) for p in predictions}
    filled = []
    for index, question in enumerate(questions):
        names = question.get("ImageName")
        names = names if isinstance(names, list) else [names]
        key = _submission_key([str(n) for n in names], str(question.get("Question", "")))
        if key not in answers:
            raise KeyError(f"question {index} (ImageName {names}) has no prediction")
        filled.append({**question, "Answer": answers[key]})
    return filled


def write_flare_submission(questions_path: str | Path, predictions: list[dict[str, Any]],
                           out_path: str | Path) -> Path:
    """Write a FLARE-format submission JSON (the questions file with `Answer` filled), atomically.

    A folder of the FLARE 2025 layout (e.g. `validation-public/`) fills every questions file below it, each
    written to the same relative path under `out_path` without its suffix (`grpo_submission/…`); returns that folder.
    """
    if Path(questions_path).is_dir():
        from medlib.data.readers.flare2025 import QUESTION_FILE

        root, folder = Path(questions_path), Path(out_path).with_suffix("")
        files = sorted(p for p in root.rglob("*.json") if QUESTION_FILE.match(p.name))
        if not files:
            raise FileNotFoundError(f"{root}: no FLARE questions files (<dataset>_questions_<split>.json) below it")
        for path in files:
            write_flare_submission(path, predictions, folder / path.relative_to(root))
        return folder
    questions = json.loads(Path(questions_path).read_text(encoding="utf-8"))
    if not isinstance(questions, list):
        raise ValueError(f"{questions_path}: a FLARE questions file is a JSON list")
    return atomic_write_text(out_path, json.dumps(flare_submission(questions, predictions), indent=2))
