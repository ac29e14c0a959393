"""Hugging Face-style VQA sets (VQA-RAD, PathVQA shape) from parquet, save_to_disk or imagefolder.

Layouts as the hub serves them: `data/<split>-0000K-of-0000N-<hash>.parquet` with an `image` column of
`{bytes, path}` (flaviagiammarino/vqa-rad, path-vqa), `datasets`' `save_to_disk` folders, and imagefolder
with `metadata.jsonl`. Sharded parquet splits are read as one table (shards in order, one running index
per split), so ids and extracted image names never collide. SLAKE's JSON release has its own reader.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medlib.data.readers.common import (
    PathEscape,
    ReadResult,
    answer_text,
    canonical_split,
    is_yes_no,
    parse_options,
    place_file,
    read_jsonl_lines,
    relative_dir,
    safe_join,
    write_jsonl,
)

NAME = "hf_vqa"
LAYOUT = "parquet files (<split>-0000K-of-0000N.parquet), a save_to_disk folder or an imagefolder with metadata.jsonl"
OPTIONS: frozenset[str] = frozenset()
IMAGE_COLUMNS = ("image", "img", "image_path", "img_name", "file_name")
QUESTION_COLUMNS = ("question", "query", "problem")
ANSWER_COLUMNS = ("answer", "answers", "label")
CHOICE_COLUMNS = ("choices", "options")
COLUMN_NAMES = {"image": IMAGE_COLUMNS, "question": QUESTION_COLUMNS, "answer": ANSWER_COLUMNS}


def _kind(src: Path) -> str | None:
    """`save_to_disk`, `parquet`, `imagefolder` or None."""
    if (src / "dataset_dict.json").exists() or (src / "state.json").exists():
        return "save_to_disk"
    if any(src.rglob("*.parquet")):
        return "parquet"
    if any(src.rglob("metadata.jsonl")):
        return "imagefolder"
    return None


def detect(src: Path) -> str | None:
    """Why src is a hub-style VQA set (parquet, save_to_disk or imagefolder), or None."""
    kind = _kind(Path(src)) if Path(src).is_dir() else None
    return {"parquet": "holds *.parquet files", "save_to_disk": "a datasets save_to_disk folder",
            "imagefolder": "an imagefolder with metadata.jsonl"}.get(kind) if kind else None


def _first(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    """The first of the column names the row has."""
    return next((name for name in names if name in row), None)


def _parquet_tables(src: Path, result: ReadResult) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(file, split, rows) per parquet file; split from `train-0000-of-0001.parquet` or the folder.

    An unreadable file is one counted problem."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Sorted names put train-00000-of-00002 before train-00001-of-00002: shards are read in order.
    for path in sorted(src.rglob("*.parquet")):
        prefix = path.name.split("-")[0].split(".")[0]
        split = canonical_split(prefix, canonical_split(path.parent.name))
        try:
            rows = pq.read_table(path).to_pylist()
        except (OSError, pa.ArrowException) as error:
            result.found(path, 1)
            result.skip("unreadable_file", path, "file", f"not a readable parquet file: {error}")
            continue
        yield str(path), split, rows


def _saved_tables(src: Path) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(folder, split, rows) per split of a save_to_disk Dataset or DatasetDict; images undecoded."""
    from datasets import DatasetDict, Image, load_from_disk

    loaded = load_from_disk(str(src))
    parts = loaded.items() if isinstance(loaded, DatasetDict) else [(src.name, loaded)]
    for name, dataset in parts:
        for column, feature in dataset.features.items():
            if isinstance(feature, Image):
                dataset = dataset.cast_column(column, Image(decode=False))
        yield str(src / name), canonical_split(name), dataset.to_list()


def _image_file(value: Any, row_base: Path, src: Path, media: Path, stem: str) -> str:
    """An image cell (bytes dict, path dict or path) → a file under media, returned relative to it."""
    data, name = None, value
    if isinstance(value, dict):
        data, name = value.get("bytes"), value.get("path")
    if data is not None:
        suffix = Path(name).suffix if isinstance(name, str) and Path(name).suffix else _sniff_suffix(data)
        target = media / f"{stem}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target.relative_to(media).as_posix()
    rel = safe_join(relative_dir(row_base, src), name)
    target = media / "files" / rel
    place_file(src / rel, target)
    return target.relative_to(media).as_posix()


def _sniff_suffix(data: bytes) -> str:
    """File suffix from the image's magic bytes."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return "." + (image.format or "png").lower().replace("jpeg", "jpg")
    except Exception:  # undecodable bytes are kept as-is; validation reports them
        return ".bin"


def _question_record(row: dict[str, Any], columns: dict[str, str], images: list[str], dataset: str,
                     split: str, record_id: str, source: str) -> dict[str, Any]:
    """One record; closed when an answer type says so, choices are given, or the answer is yes/no."""
    question = str(row[columns["question"]]).strip()
    answer = answer_text(row[columns["answer"]])
    choices = row.get(columns["choices"]) if columns.get("choices") else None
    choices = [str(c) for c in choices] if isinstance(choices, list) and choices else parse_options(question)
    answer_type = str(row.get("answer_type") or "").strip().lower()
    closed = answer_type == "closed" or (answer_type != "open" and (bool(choices) or is_yes_no(answer)))
    if closed and not choices and is_yes_no(answer):
        choices = ["yes", "no"]
    record: dict[str, Any] = {
        "id": record_id, "dataset": dataset, "modality": str(row.get("modality") or ""),
        "task": "vqa_closed" if closed else "vqa_open", "images": images, "question": question, "answer": answer,
        "meta": {"split": split, "source_file": source},
    }
    if closed and choices:
        record["choices"] = choices
    for extra in ("answer_type", "q_lang", "content_type", "qid"):
        if row.get(extra) not in (None, ""):
            record["meta"][extra] = row[extra]
    return record


def _rows(src: Path, kind: str, result: ReadResult) -> Iterator[tuple[str, str, Path, list[dict[str, Any]]]]:
    """(source, split, base folder of relative image names, rows) per file or split."""
    if kind == "parquet":
        for source, split, rows in _parquet_tables(src, result):
            yield source, split, Path(source).parent, rows
    elif kind == "save_to_disk":
        for source, split, rows in _saved_tables(src):
            yield source, split, src, rows
    else:
        for path in sorted(src.rglob("metadata.jsonl")):
            before = len(result.problems)
            rows = [row for _, row in read_jsonl_lines(path, result)]
            result.found(path, len(result.problems) - before)  # malformed lines; the rows are counted below
            split = canonical_split(path.parent.name) if path.parent != src else "train"
            yield str(path), split, path.parent, rows


def read(src: Path, *, media_dir: Path | None = None, **_: object) -> ReadResult:
    """Read a VQA set; embedded images are written under media_dir (required for parquet and save_to_disk)."""
    src = Path(src)
    kind = _kind(src)
    if kind is None:
        raise ValueError(f"{src}: no parquet files, save_to_disk folder or metadata.jsonl found")
    if kind != "imagefolder" and media_dir is None:
        raise ValueError(f"{src}: {kind} data sets embed images; pass media_dir to extract them")
    media = Path(media_dir) if kind != "imagefolder" else src
    result = ReadResult(data_root=media)
    dataset = src.name.lower()
    next_index: dict[str, int] = {}  # one running index per split, across shards
    for source, split, base, rows in _rows(src, kind, result):
        result.found(source, len(rows))
        for local, row in enumerate(rows):
            where = f"{source}[{local}]"
            index = next_index.get(split, 0)
            next_index[split] = index + 1
            if result.skip_non_object(row, where, "row"):
                continue
            columns = {"image": _first(row, IMAGE_COLUMNS), "question": _first(row, QUESTION_COLUMNS),
                       "answer": _first(row, ANSWER_COLUMNS), "choices": _first(row, CHOICE_COLUMNS)}
            missing = [name for name in ("image", "question", "answer")
                       if columns[name] is None or row[columns[name]] in (None, "")]
            if missing:
                names = "/".join(COLUMN_NAMES[missing[0]])
                result.skip("missing_field", where, missing[0], f"no value in any of the columns {names}")
                continue
            record_id = f"{dataset}-{split}-{index:06d}"
            try:
                if kind == "imagefolder":
                    images = [safe_join(relative_dir(base, src), row[columns["image"]])]
                else:
                    images = [_image_file(row[columns["image"]], base, src, media, f"{dataset}/{split}/{index:06d}")]
            except PathEscape as error:
                result.skip("path_escape", where, columns["image"], str(error))
                continue
            result.records.append(_question_record(row, columns, images, dataset, split, record_id, source))
    return result


def write(records: list[dict[str, Any]], data_root: Path, out: Path) -> Path:
    """Write records as an imagefolder: out/<split>/<file> + out/<split>/metadata.jsonl."""
    out = Path(out)
    by_split: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        split = (record.get("meta") or {}).get("split", "train")
        name = f"{len(by_split.get(split, [])):06d}_{Path(record['images'][0]).name}"
        place_file(Path(data_root) / record["images"][0], out / split / name)
        row = {"file_name": name, "question": record["question"], "answer": record["answer"],
               "answer_type": "closed" if record["task"] == "vqa_closed" else "open"}
        if record.get("choices"):
            row["choices"] = record["choices"]
        by_split.setdefault(split, []).append(row)
    for split, rows in by_split.items():
        write_jsonl(rows, out / split / "metadata.jsonl")
    return out
