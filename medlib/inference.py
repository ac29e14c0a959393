"""Batched generation over records → predictions JSONL (DESIGN.md prediction contract)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from medlib import prompts
from medlib.data import load_record_images
from medlib.parsing import parse_answer
from medlib.record import atomic_write_text

DEFAULT_MAX_NEW_TOKENS = {"report_generation": 512, "vqa_open": 64}


def generation_inputs(processor: Any, records: list[dict[str, Any]], data_root: str | Path, *,
                      image_size: int | None, answer_format: str, system_prompt: str | None) -> Any:
    """Tokenise a batch of prompts with their images exactly as training does, left-padded."""
    texts = [processor.apply_chat_template(prompts.prompt_messages(r, answer_format, system_prompt),
                                           add_generation_prompt=True, tokenize=False) for r in records]
    images = [load_record_images(r, data_root, image_size) for r in records]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=images if any(images) else None, return_tensors="pt", padding=True)


@torch.no_grad()
def generate_batch(model: Any, processor: Any, records: list[dict[str, Any]], data_root: str | Path, *,
                   image_size: int | None, answer_format: str = "think_answer", system_prompt: str | None = None,
                   max_new_tokens: int = 64, num_beams: int = 1, do_sample: bool = False,
                   temperature: float = 1.0) -> list[str]:
    """Generate one completion per record in a single padded batch; return the decoded texts."""
    inputs = generation_inputs(processor, records, data_root, image_size=image_size,
                               answer_format=answer_format, system_prompt=system_prompt).to(model.device)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample}
    if do_sample:
        kwargs["temperature"] = temperature
    output = model.generate(**inputs, **kwargs, pad_token_id=processor.tokenizer.pad_token_id)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]


def predict_records(model: Any, processor: Any, records: list[dict[str, Any]], data_root: str | Path, *,
                    checkpoint: str, image_size: int | None, answer_format: str = "think_answer",
                    system_prompt: str | None = None, batch_size: int = 16, max_new_tokens: int = 64,
                    num_beams: int = 1, progress: bool = True) -> list[dict[str, Any]]:
    """Generate for every record in length-sorted batches; return predictions in the records' order."""
    order = sorted(range(len(records)), key=lambda i: len(records[i]["question"]))
    raw_by_index: dict[int, str] = {}
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc=f"generate {checkpoint}", disable=not progress):
        indices = order[start:start + batch_size]
        batch = [records[i] for i in indices]
        tokens = max(DEFAULT_MAX_NEW_TOKENS.get(r["task"], max_new_tokens) if max_new_tokens <= 0
                     else max_new_tokens for r in batch)
        texts = generate_batch(model, processor, batch, data_root, image_size=image_size,
                               answer_format=answer_format, system_prompt=system_prompt,
                               max_new_tokens=tokens, num_beams=num_beams)
        raw_by_index.update(zip(indices, texts))
    return [prediction_from(records[i], raw_by_index[i], checkpoint) for i in range(len(records))]


def prediction_from(record: dict[str, Any], raw: str, checkpoint: str) -> dict[str, Any]:
    """Build one prediction (id, task, dataset, checkpoint, raw, parsed, parse_error, answer, ...)."""
    parsed, error = parse_answer(record["task"], raw, record.get("choices"))
    return {"id": record["id"], "task": record["task"], "dataset": record["dataset"], "checkpoint": checkpoint,
            "raw": raw, "parsed": parsed, "parse_error": error, "answer": record["answer"],
            "choices": record.get("choices"), "meta": record.get("meta", {})}


def write_predictions(path: str | Path, predictions: list[dict[str, Any]]) -> Path:
    """Write predictions as JSONL atomically."""
    atomic_write_text(path, "".join(json.dumps(p) + "\n" for p in predictions))
    return Path(path)


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read a predictions JSONL file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
