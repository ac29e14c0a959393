"""Copies of the held-out records whose images are replaced (ablation) or perturbed (robustness).

The variant images are written once, as lossless PNGs at the size inference feeds the model, into
`<root>/<variant>/`, with records pointing at them; every checkpoint then reads exactly the same files
through the ordinary inference path, so the prompt and preprocessing stay those of training.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medlib.data import load_record_images

# (record index, image index, the image as inference loads it) → the variant's image
ImageTransform = Callable[[int, int, Image.Image], Image.Image]


def cap_records(records: list[dict[str, Any]], max_samples: int) -> list[dict[str, Any]]:
    """The first `max_samples` records (all for -1): the extra passes run on a fixed, capped subset."""
    return list(records) if max_samples < 0 else list(records[:max_samples])


def write_variant(records: list[dict[str, Any]], data_root: str | Path, out_dir: str | Path, *,
                  image_size: int | None, transform: ImageTransform) -> list[dict[str, Any]]:
    """Write each record's transformed images under out_dir and return records pointing at them (same ids)."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    variants = []
    for index, record in enumerate(records):
        names = []
        for position, image in enumerate(load_record_images(record, data_root, image_size)):
            name = f"images/{index:06d}_{position}.png"
            partial = out_dir / (name + ".partial")
            transform(index, position, image).convert("RGB").save(partial, format="PNG")
            partial.replace(out_dir / name)  # a killed run never leaves a half-written image behind
            names.append(name)
        meta = {k: v for k, v in (record.get("meta") or {}).items() if k != "dicom"}  # the PNGs have one frame
        variants.append({**record, "images": names, "meta": meta})
    return variants


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of range(n) that moves every index (n >= 2): Sattolo's algorithm, one n-cycle."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    order = list(range(n))
    rng = np.random.default_rng(seed)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i: Sattolo's variant of Fisher–Yates yields a single cycle
        order[i], order[j] = order[j], order[i]
    return order


def as_uint8(array: np.ndarray) -> Image.Image:
    """A float array on the 0–255 scale as an 8-bit image (rounded, clipped)."""
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))
