"""OmniMedVQA as released (Hu et al., CVPR 2024): QA_information/<access>/<dataset>.json + Images/<dataset>/.

Each JSON file is a list of `{question_id, dataset, question_type, question, gt_answer, image_path,
option_A, option_B[, option_C, option_D], modality_type}` (one file in the release says `modality`);
`image_path` (`Images/<dataset>/...`) is relative to the OmniMedVQA root. Questions are written with their
options the way Med-R1's converted splits write them (`<q> A)x, B)y, C)z`) and the answer is the letter of
the option equal to `gt_answer`, so raw and Med-R1 files give the same records. OmniMedVQA is an
evaluation benchmark without splits: every record is labelled `test`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from medlib.data.readers.common import PathEscape, ReadResult, answer_text, first_item, json_items, safe_join
from medlib.data.readers.paths import image_root_for

NAME = "omnimedvqa"
LAYOUT = "OmniMedVQA's QA_information/**/<dataset>.json (question, gt_answer, option_A…, image_path) and Images/"
OPTIONS = frozenset({"image_root"})
KEYS = {"question", "gt_answer", "image_path"}
LETTERS = "ABCDEFGH"


def question_files(src: Path) -> list[Path]:
    """The JSON files of src (a file, the OmniMedVQA root, QA_information or one of its folders)."""
    src = Path(src)
    if src.is_file():
        return [src]
    base = src / "QA_information" if (src / "QA_information").is_dir() else src
    return sorted(p for p in base.rglob("*.json") if p.is_file())


def detect(src: Path) -> str | None:
    """Why src is raw OmniMedVQA (a first item with question, gt_answer and image_path), or None."""
    files = question_files(src)
    first = first_item(files[0]) if files else None
    if isinstance(first, dict) and KEYS <= set(first):
        return f"{files[0].name}: items have question, gt_answer, image_path (OmniMedVQA QA_information)"
    return None


def _options(item: dict[str, Any]) -> list[str]:
    """option_A, option_B, ... in letter order, stopping at the first absent one."""
    options = []
    for letter in LETTERS:
        value = item.get(f"option_{letter}")
        if value in (None, ""):
            break
        options.append(answer_text(value))
    return options


def _squash(text: str) -> str:
    """Text without case and outer full stops, for a lenient comparison."""
    return text.strip().strip(".").strip().lower()


def _letter(answer: str, options: list[str]) -> str | None:
    """The letter of the option equal to the answer (exactly, else ignoring case and outer punctuation)."""
    for index, option in enumerate(options):
        if option == answer:
            return LETTERS[index]
    for index, option in enumerate(options):
        if _squash(option) == _squash(answer):
            return LETTERS[index]
    return None


def read(src: Path, *, media_dir: Path | None = None, image_root: Path | None = None, **_: object) -> ReadResult:
    """Read every QA_information file; image paths are relative to the OmniMedVQA root (found or image_root)."""
    src = Path(src)
    files = question_files(src)
    result = ReadResult(data_root=src)
    result.data_root = image_root_for(files[0].parent if files else src, files, "image_path", image_root, result)
    result.notes.append("OmniMedVQA has no splits (an evaluation benchmark): every record is labelled test")
    for path in files:
        for where, item in json_items(path, result):
            required = ("image_path", "question", "gt_answer")
            if result.skip_non_object(item, where) or result.skip_missing(item, required, where):
                continue
            options, answer = _options(item), answer_text(item["gt_answer"])
            letter = _letter(answer, options)
            if len(options) < 2 or letter is None:
                result.skip("answer_not_in_choices", where, "gt_answer",
                            f"{answer!r} is not one of the options {options}")
                continue
            try:
                images = [safe_join("", str(item["image_path"]))]
            except PathEscape as error:
                result.skip("path_escape", where, "image_path", str(error))
                continue
            listed = ", ".join(f"{LETTERS[i]}){option}" for i, option in enumerate(options))
            question_id = item.get("question_id", where)
            result.records.append({
                "id": f"omnimedvqa-{question_id}", "dataset": str(item.get("dataset") or path.stem),
                "modality": str(item.get("modality_type") or item.get("modality") or ""), "task": "vqa_closed",
                "images": images, "question": f"{str(item['question']).strip()} {listed}", "answer": letter,
                "choices": options,
                "meta": {"split": "test", "source_file": where, "question_type": item.get("question_type", ""),
                         "gt_answer": answer, "question_id": question_id},
            })
    return result
