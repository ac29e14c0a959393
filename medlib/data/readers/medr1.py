"""Med-R1's OmniMedVQA splits: [{"image", "problem": "<q> A)x, B)y, ...", "solution": "<answer> C </answer>"}].

Layout as Med-R1 (Lai et al. 2025, github.com/Yuxiang-Lai117/Med-R1) trains and tests on it: one JSON list
per modality or task and split, named like `X-Ray_test.json` / `Modality_Recognition_train.json`; image
paths (`Images/<source>/...`) are relative to the OmniMedVQA root, not to the JSON file. The split comes
from the file name; the image root is `image_root`, else the nearest folder (the file's own, then its
parents) under which the images exist. The answer is the option letter inside <answer></answer>.
"""
from __future__ import annotations

import json
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
    parse_options,
    safe_join,
    source_files,
    split_from_name,
    write_jsonl,
)
from medlib.data.readers.paths import image_root_for

NAME = "medr1"
LAYOUT = 'JSON lists of {"image", "problem", "solution": "<answer> C </answer>"} (Med-R1 splits)'
OPTIONS = frozenset({"image_root"})
_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)


def detect(src: Path) -> str | None:
    """Why src holds Med-R1 splits (a first item with `image`, `problem` and `solution`), or None."""
    files = source_files(Path(src))
    first = first_item(files[0]) if files else None
    if isinstance(first, dict) and {"problem", "solution"} <= set(first):
        return f"{files[0].name}: items have problem and solution (Med-R1)"
    return None


def solution_answer(solution: Any) -> str:
    """The text inside <answer>…</answer>, else the whole solution, stripped."""
    text = answer_text(solution)
    found = _ANSWER.search(text)
    return found.group(1).strip() if found else text


def read(src: Path, *, media_dir: Path | None = None, image_root: Path | None = None, **_: object) -> ReadResult:
    """Read Med-R1 JSON/JSONL files; image paths are relative to the image root (see the module docstring)."""
    src = Path(src)
    result = ReadResult(data_root=src)
    result.data_root = image_root_for(src, source_files(src), "image", image_root, result)
    for path, _base, index, where, item in json_objects(src, result):
        if result.skip_missing(item, ("image", "problem", "solution"), where):
            continue
        names = item["image"] if isinstance(item["image"], list) else [item["image"]]
        try:
            images = [safe_join("", name) for name in names]
        except PathEscape as error:
            result.skip("path_escape", where, "image", str(error))
            continue
        question = str(item["problem"]).strip()
        answer = solution_answer(item["solution"])
        if not answer:
            result.skip("missing_field", where, "solution", "no answer inside <answer></answer>")
            continue
        choices = parse_options(question)
        record = {
            "id": str(item.get("id") or f"{path.stem}-{index:06d}"),
            "dataset": str(item.get("dataset") or path.stem), "modality": str(item.get("modality") or ""),
            "task": "vqa_closed" if choices else "vqa_open", "images": images, "question": question,
            "answer": answer, "meta": {"split": str(item.get("split") or split_from_name(path.stem)),
                                       "source_file": path.name},
        }
        if choices:
            record["choices"] = choices
        result.records.append(record)
    return result


def write(records: list[dict[str, Any]], data_root: Path, out: Path) -> Path:
    """Write records as a Med-R1 JSON list at out (image paths relative to out's folder = data_root)."""
    out = output_in_root(out, data_root, "Med-R1")
    items = [{"id": r["id"], "image": r["images"][0] if len(r["images"]) == 1 else r["images"],
              "problem": r["question"], "solution": f"<answer> {r['answer']} </answer>",
              "dataset": r["dataset"], "modality": r.get("modality", "")} for r in records]
    if out.suffix == ".jsonl":
        return write_jsonl(items, out)
    out.write_text(json.dumps(items, indent=1, ensure_ascii=False), encoding="utf-8")
    return out
