"""Row lengths in tokens (image tokens included) against `max_seq_length`, before any training step.

Unsloth truncates every training row at the `max_seq_length` it was loaded with (its trainers
reset `max_length` to it, and its vision collator truncates there: unsloth/models/rl.py,
unsloth_zoo/vision_utils.py), which drops a long row's answer or image tokens. The hf backend
never truncates. So that one set of parameters trains the same rows on both, a row longer than
`max_seq_length` is an error on both, naming the row and the parameter.
"""
from __future__ import annotations

from typing import Any

IMAGE_PAD = "<|image_pad|>"


def tokens_per_image(processor: Any) -> int:
    """Image tokens of one image at the processor's pixel budget (medlib sets min = max = image_size²)."""
    import math

    from PIL import Image

    image_processor = processor.image_processor
    side = math.isqrt(int(dict(image_processor.size)["longest_edge"]))
    grid = image_processor(images=[Image.new("RGB", (side, side))], return_tensors="pt")["image_grid_thw"]
    merge = getattr(image_processor, "merge_size", 2)
    return int(grid.prod()) // (merge * merge)


def _conversations(dataset: Any) -> tuple[list[list[dict]], bool]:
    """Each row's messages (prompt and completion joined) and whether they end in an answer to generate."""
    columns = set(dataset.column_names)
    if "messages" in columns:
        return list(dataset["messages"]), False
    if "completion" in columns:
        return [p + c for p, c in zip(dataset["prompt"], dataset["completion"], strict=True)], False
    if "prompt" in columns:
        return list(dataset["prompt"]), True
    raise ValueError(f"rows have none of messages / prompt columns: {sorted(columns)}")


def row_lengths(dataset: Any, processor: Any, new_tokens: int = 0) -> list[int]:
    """Tokens of each row as the model sees them: chat text, each image's tokens, plus `new_tokens` to generate."""
    conversations, generate = _conversations(dataset)
    texts = [processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=generate)
             for messages in conversations]
    ids = processor.tokenizer(texts, add_special_tokens=False)["input_ids"]
    per_image = tokens_per_image(processor) if any(IMAGE_PAD in text for text in texts) else 1
    return [len(row) + text.count(IMAGE_PAD) * (per_image - 1) + new_tokens for row, text in zip(ids, texts, strict=True)]


def check_row_lengths(dataset: Any, processor: Any, max_seq_length: int | None, *, stage: str,
                      new_tokens: int = 0) -> int | None:
    """Raise when a row is longer than `max_seq_length`; return the longest row's length (None: not checked)."""
    if not max_seq_length or dataset is None or len(dataset) == 0:
        return None
    lengths = row_lengths(dataset, processor, new_tokens)
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[longest] > max_seq_length:
        over = sum(length > max_seq_length for length in lengths)
        row_id = dataset[longest]["id"] if "id" in dataset.column_names else f"row {longest}"
        raise ValueError(f"{stage}: {over} training row(s) longer than max_seq_length {max_seq_length} tokens; the "
                         f"longest, {row_id}, has {lengths[longest]} (images included"
                         f"{', plus ' + str(new_tokens) + ' to generate' if new_tokens else ''}): raise "
                         f"{stage}.max_seq_length (Unsloth would truncate these rows)")
    return lengths[longest]
