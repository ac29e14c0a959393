"""Chat JSONL as used for Unsloth/TRL SFT: {"messages": [...]} with image parts, read and written.

Also the FLARE Task 5 repo's `train_sft.jsonl`/`val_sft.jsonl` (written by its
`prepare_flare_task5_jsonl.py`): a user turn of image parts `{"type": "image", "image": "/abs/path"}`
(images first) and a text part, an assistant text turn, numeric answers as strings, no split field.
Absolute image paths are allowed when the files exist (the data root becomes the folder holding them and
the JSONL) and reported as `missing_image` when not; `image_root` rebases paths written on another
machine onto a local copy (the longest tail of each path found under it). The split comes from the row's
`split`, else from the file name (`val_sft.jsonl` → validation).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from medlib.data import prompts
from medlib.data.readers.common import (
    PathEscape,
    ReadResult,
    answer_text,
    first_item,
    is_absolute_name,
    is_yes_no,
    json_items,
    output_in_root,
    parse_options,
    relative_dir,
    safe_join,
    source_files,
    split_from_name,
    write_jsonl,
)
from medlib.data.readers.paths import common_root, rebase_absolute

NAME = "chat_jsonl"
LAYOUT = 'JSONL rows with "messages" (user turn with image parts, assistant turn)'
OPTIONS = frozenset({"image_root"})
_THINK_ANSWER = re.compile(r"^\s*(?:<think>(.*?)</think>)?\s*<answer>(.*?)</answer>\s*$", re.DOTALL)


def detect(src: Path) -> str | None:
    """Why src is chat JSONL (a first line with a `messages` list), or None."""
    files = [p for p in source_files(Path(src)) if p.suffix == ".jsonl"]
    first = first_item(files[0]) if files else None
    if isinstance(first, dict) and isinstance(first.get("messages"), list):
        return f"{files[0].name}: first line has a messages list"
    return None


def _parts(content: Any) -> list[dict[str, Any]]:
    """A message's content as a list of typed parts (a plain string is one text part)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [part for part in content if isinstance(part, dict)] if isinstance(content, list) else []


def _text(message: dict[str, Any]) -> str:
    """The text parts of a message joined."""
    return "".join(str(p.get("text", "")) for p in _parts(message.get("content")) if p.get("type") == "text")


def _strip_instruction(text: str) -> str:
    """The question without an answer-format instruction that medlib appended."""
    for instruction in prompts.INSTRUCTIONS.values():
        if instruction and text.endswith("\n" + instruction):
            return text[: -len(instruction) - 1]
    return text


def _image_names(item: dict[str, Any], user: dict[str, Any]) -> list[Any]:
    """Image paths from the user's image parts, else from a top-level `images` list."""
    names = [p.get("image", p.get("path", p.get("url"))) for p in _parts(user.get("content")) if p.get("type") == "image"]
    if any(isinstance(n, str) and n for n in names):
        return names
    images = item.get("images", item.get("image"))
    return list(images) if isinstance(images, list) else ([images] if images else [])


def _locate(name: Any, base: str, root: Path, image_root: Path | None) -> Path:
    """The absolute file an image name means: relative to the JSONL folder (or image_root), absolute as
    written, or rebased under image_root. Raises PathEscape for a relative name that climbs out."""
    if isinstance(name, str) and is_absolute_name(name):
        if image_root is None:
            return Path(name)
        return rebase_absolute(name, image_root) or Path(name)
    return (image_root or root) / safe_join("" if image_root else base, name)


def read(src: Path, *, media_dir: Path | None = None, image_root: Path | None = None, **_: object) -> ReadResult:
    """Read chat JSONL; the first user turn is the question, the first assistant turn the answer."""
    src = Path(src)
    root = Path(os.path.abspath(src if src.is_dir() else src.parent))
    image_root = Path(os.path.abspath(image_root)) if image_root else None
    result = ReadResult(data_root=image_root or root)
    located: list[tuple[dict[str, Any], list[Path]]] = []
    for path in source_files(src, (".jsonl",)):
        base = relative_dir(path.parent, root)
        for index, (where, item) in enumerate(json_items(path, result)):
            messages = item.get("messages") if isinstance(item, dict) else None
            if not isinstance(messages, list):
                result.skip("missing_field", where, "messages", "missing or not a list")
                continue
            user = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
            assistant = next((m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"), None)
            if user is None or assistant is None:
                result.skip("missing_field", where, "messages", "needs a user and an assistant turn")
                continue
            question, reply = _strip_instruction(_text(user)).strip(), _text(assistant)
            tagged = _THINK_ANSWER.match(reply)
            answer = (tagged.group(2) if tagged else reply).strip()
            if not question or not answer:
                result.skip("missing_field", where, "messages", "empty question or answer")
                continue
            try:
                files = [_locate(name, base, root, image_root) for name in _image_names(item, user)]
            except PathEscape as error:
                result.skip("path_escape", where, "image", str(error))
                continue
            absent = next((f for f in files if not f.is_file()), None)
            if absent is not None and any(is_absolute_name(str(n)) for n in _image_names(item, user)):
                hint = "" if image_root else " (pass --image-root to rebase paths written on another machine)"
                result.skip("missing_image", absent, "image", f"absolute image path does not exist{hint}")
                continue
            choices = item.get("choices") or parse_options(question)
            task = item.get("task") or ("vqa_closed" if choices or is_yes_no(answer) else "vqa_open")
            meta = {"split": str(item.get("split") or split_from_name(path.stem)), "source_file": where}
            if tagged and tagged.group(1):
                meta["rationale"] = tagged.group(1).strip()
            record = {"id": str(item.get("id") or f"{path.stem}-{index:06d}"), "dataset": str(item.get("dataset") or path.stem),
                      "modality": str(item.get("modality") or ""), "task": str(task), "images": [],
                      "question": question, "answer": answer_text(answer), "meta": meta}
            if choices:
                record["choices"] = [str(c) for c in choices]
            located.append((record, files))
    # The data root holds every image: the JSONL's folder (or image_root), widened to absolute paths' folders.
    if image_root is None and located:
        result.data_root = common_root([root, *(f.parent for _, files in located for f in files)])
        if result.data_root != root:
            result.notes.append(f"absolute image paths: data root widened to {result.data_root}")
    for record, files in located:
        record["images"] = [Path(os.path.relpath(f, result.data_root)).as_posix() for f in files]
        result.records.append(record)
    return result


def chat_row(record: dict[str, Any], answer_format: str = "plain", system_prompt: str | None = None) -> dict[str, Any]:
    """A record as one chat JSONL row: medlib's prompt with image paths filled in, plus the record's keys."""
    messages = prompts.training_messages(record, answer_format, system_prompt)
    user = next(m for m in messages if m["role"] == "user")
    paths = iter(record["images"])
    user["content"] = [{"type": "image", "image": next(paths)} if part["type"] == "image" else part
                       for part in user["content"]]
    row = {key: record[key] for key in ("id", "dataset", "modality", "task") if key in record}
    if record.get("choices"):
        row["choices"] = record["choices"]
    row["split"] = (record.get("meta") or {}).get("split", "train")
    row["messages"] = messages
    return row


def write(records: list[dict[str, Any]], data_root: Path, out: Path, *, answer_format: str = "plain") -> Path:
    """Write records as chat JSONL at out, which must sit in the data root (image paths are relative to it)."""
    out = output_in_root(out, data_root, "chat JSONL")
    return write_jsonl([chat_row(record, answer_format) for record in records], out)
