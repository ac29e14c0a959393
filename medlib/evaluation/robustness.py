"""Robustness sweep: held-out images made noisier, flatter, blurrier, recompressed or smaller, at set severities.

Severities 1–5 use the parameters of ImageNet-C (Hendrycks & Dietterich 2019, `imagenet_c/corruptions.py`):
- `noise`: Gaussian noise, std c ∈ [.08, .12, .18, .26, .38] on the 0–1 scale, clipped;
- `contrast`: (x − mean) · c + mean per channel, c ∈ [.4, .3, .2, .1, .05];
- `blur`: Gaussian blur, sigma c ∈ [1, 2, 3, 4, 6] pixels (scipy's filter with skimage's defaults:
  mode `nearest`, truncate 4), applied per channel;
- `jpeg`: JPEG re-encoding at quality c ∈ [25, 18, 15, 10, 7] (PIL);
- `downscale`: ImageNet-C's `pixelate`: box-downscale by c ∈ [.6, .5, .4, .3, .25], box-upscale back.
They are applied to the image at the size inference feeds the model (ImageNet-C: 224 px), and the
noise is drawn from a generator seeded by (seed, record, image), so every checkpoint sees the same pixels.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from medlib.evaluation.image_variants import as_uint8, write_variant
from medlib.evaluation.metrics import score_predictions

SEVERITIES: dict[str, tuple[float, ...]] = {
    "noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "blur": (1, 2, 3, 4, 6),
    "jpeg": (25, 18, 15, 10, 7),
    "downscale": (0.6, 0.5, 0.4, 0.3, 0.25),
}
PERTURBATIONS = tuple(SEVERITIES)


def check_sweep(perturbations: list[str], severities: list[int]) -> None:
    """ValueError naming an unknown perturbation or a severity outside 1–5."""
    for name in perturbations:
        if name not in SEVERITIES:
            raise ValueError(f"robustness: {name!r} is not one of {', '.join(PERTURBATIONS)}")
    for level in severities:
        if not isinstance(level, int) or not 1 <= level <= 5:
            raise ValueError(f"robustness_severities: {level!r} is not an integer severity from 1 to 5")


def perturb(image: Image.Image, name: str, severity: int, rng: np.random.Generator) -> Image.Image:
    """The image under one perturbation at one severity (1–5), as 8-bit RGB."""
    check_sweep([name], [severity])
    c = SEVERITIES[name][severity - 1]
    image = image.convert("RGB")
    if name == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(c))
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")
    if name == "downscale":
        small = (max(1, int(image.width * c)), max(1, int(image.height * c)))
        return image.resize(small, Image.Resampling.BOX).resize(image.size, Image.Resampling.BOX)
    x = np.asarray(image, dtype=np.float64) / 255.0
    if name == "noise":
        x = x + rng.normal(scale=c, size=x.shape)
    elif name == "contrast":
        means = x.mean(axis=(0, 1), keepdims=True)
        x = (x - means) * c + means
    else:  # blur
        x = gaussian_filter(x, sigma=(c, c, 0), mode="nearest", truncate=4.0)
    return as_uint8(np.clip(x, 0, 1) * 255)


def variant_name(name: str, severity: int) -> str:
    """The folder and file stem of one perturbation at one severity, e.g. `noise_3`."""
    return f"{name}_{severity}"


def robustness_records(records: list[dict[str, Any]], data_root: str | Path, out_dir: str | Path, name: str,
                       severity: int, *, image_size: int | None, seed: int) -> list[dict[str, Any]]:
    """Write the perturbed images under out_dir and return records pointing at them."""
    check_sweep([name], [severity])
    salt = PERTURBATIONS.index(name) * 10 + severity

    def transform(index: int, position: int, image: Image.Image) -> Image.Image:
        rng = np.random.default_rng([seed, salt, index, position])
        return perturb(image, name, severity, rng)

    return write_variant(records, data_root, out_dir, image_size=image_size, transform=transform)


def robustness_table(clean: dict[str, list[dict[str, Any]]],
                     perturbed: dict[str, dict[tuple[str, int], list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Rows of (checkpoint, perturbation, severity, question type, n, accuracy); severity 0 is the clean
    predictions on the same questions, repeated under each perturbation so every curve starts there."""
    rows = []
    for checkpoint, sweeps in perturbed.items():
        for (name, severity), predictions in sorted(sweeps.items()):
            ids = {p["id"] for p in predictions}
            points = [(severity, predictions)]
            if severity == min(s for n, s in sweeps if n == name):
                points.insert(0, (0, [p for p in clean[checkpoint] if p["id"] in ids]))
            for level, group in points:
                scores = score_predictions(group)
                groups = {"all": scores["overall"], **scores["by_question_type"]}
                rows.extend({"checkpoint": checkpoint, "perturbation": name, "severity": level,
                             "question_type": qt, "n": g["n"], "accuracy": g["accuracy"]}
                            for qt, g in groups.items())
    return rows
