"""Libra's data files (Zhang et al. 2024, github.com/X-iZhang/Libra): a current and a prior image per study.

Training/validation files (`libra_findings_section_{train,valid}.json`) are LLaVA-style
`{id, image: [current, prior], conversations: [{from: human}, {from: gpt}]}`; evaluation files
(`libra_findings_section_eval.jsonl`, `libra_impressions_section_eval.jsonl`) are
`{question_id, image: [current, prior], text, reference | findings | impression}`, the reference taken in
the order Libra's `evaluate_report` uses: reference → findings → impression. A prior equal to the current
image is Libra's dummy prior (no prior study). Image paths are relative to the MIMIC-CXR-JPG root
(Libra's `--image-folder`): `image_root`, else the nearest folder holding them. The split comes from the
file name (`_train` → train, `_valid` → validation, `_eval` → test).
"""
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
    output_in_root,
    safe_join,
    source_files,
    split_from_name,
    write_jsonl,
)
from medlib.data.readers.paths import image_root_for

NAME = "libra"
LAYOUT = ("Libra JSON/JSONL: {image: [current, prior], conversations} or "
          "{question_id, image, text, reference|findings|impression}")
OPTIONS = frozenset({"image_root"})
REFERENCE_KEYS = ("reference", "findings", "impression")  # Libra's evaluate_report order
DEFAULT_QUESTION = "Provide a detailed description of the findings in the radiology image."
_IMAGE_TOKEN = re.compile(r"<image>\s*")


def detect(src: Path) -> str | None:
    """Why src is a Libra file (an `image` with LLaVA `conversations` or a prior/report field), or None."""
    files = source_files(Path(src))
    first = first_item(files[0]) if files else None
    if not isinstance(first, dict) or "problem" in first or "messages" in first:
        return None
    has_image = any(key in first for key in ("image", "images", "current_image"))
    text_keys = [key for key in ("conversations", "prior_image", *REFERENCE_KEYS, "report") if key in first]
    if has_image and text_keys:
        return f"{files[0].name}: items have an image and {', '.join(text_keys)} (Libra)"
    return None


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


def _reference(item: dict[str, Any]) -> Any:
    """The report: the gpt turn, else reference → findings → impression (Libra's order), else answer/report."""
    for value in (_turn(item.get("conversations"), "gpt"), *(item.get(key) for key in REFERENCE_KEYS),
                  item.get("answer"), item.get("report")):
        if value not in (None, "") and str(value).strip():
            return value
    return None


def read(src: Path, *, media_dir: Path | None = None, image_root: Path | None = None, **_: object) -> ReadResult:
    """Read Libra JSON/JSONL files into report_generation records with temporal pairs."""
    src = Path(src)
    result = ReadResult(data_root=src)
    result.data_root = image_root_for(src, source_files(src), "image", image_root, result)
    for path, _base, index, where, item in json_objects(src, result):
        names = _images(item)
        question = _turn(item.get("conversations"), "human") or item.get("text") or item.get("question")
        answer = _reference(item)
        if not names:
            result.skip("missing_field", where, "image", "missing or empty")
            continue
        if answer is None:
            result.skip("missing_field", where, "conversations",
                        "no report (gpt turn, reference, findings or impression)")
            continue
        try:
            images = [safe_join("", name) for name in names]
        except PathEscape as error:
            result.skip("path_escape", where, "image", str(error))
            continue
        study = item.get("id", item.get("question_id", item.get("study_id")))
        result.records.append({
            "id": str(study if study not in (None, "") else f"{path.stem}-{index:06d}"),
            "dataset": str(item.get("dataset") or "libra"), "modality": "X-ray", "task": "report_generation",
            "images": images, "question": _IMAGE_TOKEN.sub("", str(question or DEFAULT_QUESTION)).strip(),
            "answer": answer_text(answer),
            "meta": {"split": str(item.get("split") or split_from_name(path.stem)), "source_file": path.name,
                     "has_prior": len(images) > 1},
        })
    return result


def write(records: list[dict[str, Any]], data_root: Path, out: Path) -> Path:
    """Write records as Libra JSONL (LLaVA conversations; image = [current, prior]) in the data root."""
    out = output_in_root(out, data_root, "Libra")
    rows = [{"id": r["id"], "image": r["images"], "split": (r.get("meta") or {}).get("split", "train"),
             "conversations": [{"from": "human", "value": "<image>\n" + r["question"]},
                               {"from": "gpt", "value": r["answer"]}]} for r in records]
    return write_jsonl(rows, out)
