"""Chat JSONL as used for Unsloth/TRL SFT: {"messages": [...]} with image entries, read and written."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medlib.data import prompts
from medlib.data.readers.common import (
    PathEscape,
    ReadResult,
    answer_text,
    first_item,
    is_yes_no,
    json_items,
    parse_options,
    relative_dir,
    safe_join,
    source_files,
    write_jsonl,
)

NAME = "chat_jsonl"
_THINK_ANSWER = re.compile(r"^\s*(?:<think>(.*?)</think>)?\s*<answer>(.*?)</answer>\s*$", re.DOTALL)


def detect(src: Path) -> bool:
    """True if the first line of a JSONL file has a `messages` list."""
    files = [p for p in source_files(Path(src)) if p.suffix == ".jsonl"]
    first = first_item(files[0]) if files else None
    return isinstance(first, dict) and isinstance(first.get("messages"), list)


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


def read(src: Path, *, media_dir: Path | None = None) -> ReadResult:
    """Read chat JSONL; the first user turn is the question, the first assistant turn the answer."""
    src = Path(src)
    root = src if src.is_dir() else src.parent
    result = ReadResult(data_root=root)
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
                images = [safe_join(base, name) for name in _image_names(item, user)]
            except PathEscape as error:
                result.skip("path_escape", where, "image", str(error))
                continue
            choices = item.get("choices") or parse_options(question)
            task = item.get("task") or ("vqa_closed" if choices or is_yes_no(answer) else "vqa_open")
            meta = {"split": str(item.get("split") or "train"), "source_file": path.name}
            if tagged and tagged.group(1):
                meta["rationale"] = tagged.group(1).strip()
            record = {"id": str(item.get("id") or f"{path.stem}-{index:06d}"), "dataset": str(item.get("dataset") or path.stem),
                      "modality": str(item.get("modality") or ""), "task": str(task), "images": images,
                      "question": question, "answer": answer_text(answer), "meta": meta}
            if choices:
                record["choices"] = [str(c) for c in choices]
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
    out = Path(out)
    if out.parent.resolve() != Path(data_root).resolve():
        raise ValueError(f"{out}: a chat JSONL file must sit in the data root {data_root} (image paths are relative to it)")
    return write_jsonl([chat_row(record, answer_format) for record in records], out)
