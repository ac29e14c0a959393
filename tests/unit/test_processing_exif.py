"""EXIF orientation is applied wherever medlib opens an image, as `datasets` and transformers do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medlib import data
from medlib.data.processing import load_image


def rotated_jpeg(path: Path) -> Path:
    """A 96×64 picture stored with EXIF orientation 6 (shown rotated 90° clockwise, i.e. 64×96)."""
    array = np.zeros((64, 96), dtype=np.uint8)
    array[:, :48] = 250  # bright left half as stored: the top half once upright
    image = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif, quality=95)
    return path


def test_load_image_is_upright_like_transformers_load_image(tmp_path: Path) -> None:
    from transformers.image_utils import load_image as transformers_load_image

    path = rotated_jpeg(tmp_path / "x.jpg")
    with Image.open(path) as stored:
        assert stored.size == (96, 64)
    ours = load_image(path)
    theirs = transformers_load_image(str(path)).convert("RGB")
    assert ours.size == theirs.size == (64, 96)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    assert np.asarray(ours)[:48].mean() > 200 > 50 > np.asarray(ours)[48:].mean()


def test_training_rows_and_lazy_datasets_see_the_upright_image(tmp_path: Path) -> None:
    rotated_jpeg(tmp_path / "x.jpg")
    record = {"id": "r", "dataset": "d", "task": "vqa_open", "images": ["x.jpg"], "question": "q", "answer": "a"}
    row = data.sft_rows([record], tmp_path, image_size=None)[0]
    lazy = data.lazy_dataset([record], tmp_path)[0]
    assert row["images"][0].size == lazy["images"][0].size == (64, 96)


def test_notebook_10_image_stats_report_the_shown_size(tmp_path: Path) -> None:
    from medlib.data import exploration

    rotated_jpeg(tmp_path / "x.jpg")
    record = {"id": "r", "dataset": "d", "task": "vqa_open", "images": ["x.jpg"], "question": "q", "answer": "a"}
    table = exploration.image_table([record], tmp_path)
    assert (table.loc[0, "width"], table.loc[0, "height"]) == (64, 96)
