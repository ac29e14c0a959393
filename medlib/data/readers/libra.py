"""Libra / MIMIC-CXR-RRG JSONL: a current and an optional prior image per study (current first, prior after)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medlib.data.readers.common import (
    PathEscape,
    ReadResult,
    answer_text,
    first_item,
    json_objects,
    safe_join,
    source_files,
    write_jsonl,
)

NAME = "libra"
DEFAULT_QUESTION = "Provide a detailed description of the findings in the radiology image."
_IMAGE_TOKEN = re.compile(r"<image>\s*")


def detect(src: Path) -> bool:
    """True if a first item has an `image` and LLaVA `conversations` or a prior/report field."""
    files = source_files(Path(src))
    first = first_item(files[0]) if files else None
    if not isinstance(first, dict) or "problem" in first:
        return False
    has_image = any(key in first for key in ("image", "images", "current_image"))
    has_text = any(key in first for key in ("conversations", "prior_image", "findings", "report", "reference"))
    return has_image and has_text


def _turn(conversations: Any, speaker: str) -> str | None:
    """Text of the first turn from `human` or `gpt` in a LLaVA conversation."""
    if not isinstance(conversations, list):
        return None
    for turn in conversations:
        if isinstance(turn, dict) and turn.get("from") == speaker:
            return str(turn.get("value", ""))
    return None


def _images(item: dict[str, Any]) -> list[str]:
    """[current, prior?] names; Libra's dummy prior (a copy of the current image) means no prior."""
    raw = item.get("image", item.get("images", item.get("current_image")))
    names = list(raw) if isinstance(raw, list) else [raw]
    if item.get("prior_image"):
        names.append(item["prior_image"])
    names = [n for n in names if n not in (None, "")]
    if len(names) == 2 and names[0] == names[1]:
        names = names[:1]
    return names


def read(src: Path, *, media_dir: Path | None = None) -> ReadResult:
    """Read Libra JSON/JSONL files into report_generation records with temporal pairs."""
    src = Path(src)
    root = src if src.is_dir() else src.parent
    result = ReadResult(data_root=root)
    for path, base, index, where, item in json_objects(src, result):
        names = _images(item)
        question = _turn(item.get("conversations"), "human") or item.get("text") or item.get("question")
        answer = _turn(item.get("conversations"), "gpt") or item.get("reference") or item.get("answer") \
            or item.get("findings") or item.get("report")
        if not names:
            result.skip("missing_field", where, "image", "missing or empty")
            continue
        if not answer or not str(answer).strip():
            result.skip("missing_field", where, "conversations", "no report (gpt turn, reference or findings)")
            continue
        try:
            images = [safe_join(base, name) for name in names]
        except PathEscape as error:
            result.skip("path_escape", where, "image", str(error))
            continue
        study = item.get("id", item.get("question_id", item.get("study_id")))
        result.records.append({
            "id": str(study if study not in (None, "") else f"{path.stem}-{index:06d}"),
            "dataset": str(item.get("dataset") or "libra"), "modality": "X-ray", "task": "report_generation",
            "images": images, "question": _IMAGE_TOKEN.sub("", str(question or DEFAULT_QUESTION)).strip(),
            "answer": answer_text(answer),
            "meta": {"split": str(item.get("split") or "train"), "source_file": path.name,
                     "has_prior": len(images) > 1},
        })
    return result


def write(records: list[dict[str, Any]], data_root: Path, out: Path) -> Path:
    """Write records as Libra JSONL (LLaVA conversations; image = [current, prior]) in the data root."""
    out = Path(out)
    if out.parent.resolve() != Path(data_root).resolve():
        raise ValueError(f"{out}: a Libra file must sit in the data root {data_root} (image paths are relative to it)")
    rows = [{"id": r["id"], "image": r["images"], "split": (r.get("meta") or {}).get("split", "train"),
             "conversations": [{"from": "human", "value": "<image>\n" + r["question"]},
                               {"from": "gpt", "value": r["answer"]}]} for r in records]
    return write_jsonl(rows, out)
