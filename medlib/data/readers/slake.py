"""SLAKE as released (BoKelvin/SLAKE on the hub; Liu et al., ISBI 2021): train/validation/test.json + imgs/.

Each file is a list of `{img_id, img_name ("xmlab0/source.jpg"), question, answer, q_lang ("en" or "zh",
mixed in one file), location, modality, answer_type ("OPEN"/"CLOSED"), base_type, content_type, triple,
qid}`; images live in `imgs/<img_name>`. OPEN → vqa_open, CLOSED → vqa_closed; q_lang and the other
descriptive fields go into meta, and `language` keeps one language (the others are counted as left out).
The segmentation masks, detection boxes (imgs/*/mask.png, detection.json) and the knowledge graph (KG/)
are not questions and are ignored, with a note.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from medlib.data.readers.common import (
    PathEscape,
    ReadResult,
    answer_text,
    first_item,
    is_yes_no,
    json_items,
    safe_join,
    source_files,
    split_from_name,
)

NAME = "slake"
LAYOUT = "SLAKE's train.json/validation.json/test.json (rows with img_name, q_lang, answer_type) and imgs/"
OPTIONS = frozenset({"image_root", "language"})
KEYS = {"img_name", "question", "answer", "q_lang"}
META_FIELDS = ("q_lang", "answer_type", "content_type", "base_type", "location", "qid", "img_id", "triple")
CLOSED_ZH = ("是", "否")


def detect(src: Path) -> str | None:
    """Why src is the SLAKE release (its JSON rows have img_name, q_lang and question), or None."""
    for path in source_files(Path(src), (".json",)):
        first = first_item(path)
        if isinstance(first, dict) and KEYS <= set(first):
            return f"{path.name}: rows have {', '.join(sorted(KEYS))} (SLAKE)"
    return None


def _record(row: dict[str, Any], images: list[str], split: str, record_id: str, source: str) -> dict[str, Any]:
    """One SLAKE question as a record."""
    answer = answer_text(row["answer"])
    closed = str(row.get("answer_type") or "").strip().upper() == "CLOSED"
    record: dict[str, Any] = {
        "id": record_id, "dataset": "slake", "modality": str(row.get("modality") or ""),
        "task": "vqa_closed" if closed else "vqa_open", "images": images,
        "question": str(row["question"]).strip(), "answer": answer,
        "meta": {"split": split, "source_file": source,
                 **{name: row[name] for name in META_FIELDS if row.get(name) not in (None, "", [])}},
    }
    if closed and is_yes_no(answer):
        record["choices"] = ["yes", "no"]
    elif closed and answer in CLOSED_ZH:
        record["choices"] = list(CLOSED_ZH)
    return record


def read(src: Path, *, media_dir: Path | None = None, image_root: Path | None = None,
         language: str | None = None, **_: object) -> ReadResult:
    """Read SLAKE's question files; images from imgs/ beside them, or from image_root when given."""
    src = Path(src)
    folder = src if src.is_dir() else src.parent
    result = ReadResult(data_root=Path(image_root) if image_root else folder)
    prefix = "" if image_root else "imgs"
    wanted = language.strip().lower() if language else None
    for path in source_files(src, (".json",)):
        split = split_from_name(path.stem)
        for index, (where, row) in enumerate(json_items(path, result)):
            if result.skip_non_object(row, where) or result.skip_missing(row, ("img_name", "question", "answer"), where):
                continue
            lang = str(row.get("q_lang") or "").strip().lower()
            if wanted and lang != wanted:
                result.exclude(f"q_lang {lang or '(none)'} not {wanted}")
                continue
            try:
                images = [safe_join(prefix, str(row["img_name"]))]
            except PathEscape as error:
                result.skip("path_escape", where, "img_name", str(error))
                continue
            qid = row.get("qid")
            record_id = f"slake-{split}-{qid if qid not in (None, '') else f'i{index}'}"
            result.records.append(_record(row, images, split, record_id, f"{path.name}[{index}]"))
    extras = [name for name in ("KG",) if (folder / name).exists()]
    masks = (folder / "imgs").is_dir() and any((folder / "imgs").glob("*/mask.png"))
    if extras or masks:
        result.notes.append("SLAKE's segmentation masks, detection boxes and knowledge graph are not questions: "
                            "ignored")
    return result
