"""Robustness perturbations: ImageNet-C parameters, seeded and identical across calls, and the accuracy table."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from medlib import data
from medlib.data import synthetic
from medlib.evaluation import robustness


def grey_ramp(size=64):
    """An RGB ramp with a bright square: structure for blur and contrast to act on."""
    x = np.tile(np.linspace(40, 200, size), (size, 1))
    x[20:40, 20:40] = 250
    return Image.fromarray(np.stack([x] * 3, axis=-1).astype(np.uint8))


def test_noise_is_imagenet_c_gaussian_noise_and_seeded():
    image = grey_ramp()
    first = robustness.perturb(image, "noise", 3, np.random.default_rng(7))
    again = robustness.perturb(image, "noise", 3, np.random.default_rng(7))
    assert np.array_equal(np.asarray(first), np.asarray(again))
    x = np.asarray(image) / 255.0
    expected = np.clip(x + np.random.default_rng(7).normal(scale=0.18, size=x.shape), 0, 1) * 255
    assert np.abs(np.asarray(first).astype(float) - expected).max() <= 0.5 + 1e-9


def test_contrast_blur_jpeg_downscale_follow_imagenet_c():
    image, rng = grey_ramp(), np.random.default_rng(0)
    x = np.asarray(image) / 255.0
    contrast = robustness.perturb(image, "contrast", 5, rng)
    means = x.mean(axis=(0, 1), keepdims=True)
    assert np.abs(np.asarray(contrast) - ((x - means) * 0.05 + means) * 255).max() <= 0.5 + 1e-9
    blur = robustness.perturb(image, "blur", 2, rng)
    expected = gaussian_filter(x, sigma=(2, 2, 0), mode="nearest", truncate=4.0) * 255
    assert np.abs(np.asarray(blur) - expected).max() <= 0.5 + 1e-9
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=10)
    assert np.array_equal(np.asarray(robustness.perturb(image, "jpeg", 4, rng)),
                          np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
    small = image.resize((16, 16), Image.Resampling.BOX).resize((64, 64), Image.Resampling.BOX)  # c = 0.25
    assert np.array_equal(np.asarray(robustness.perturb(image, "downscale", 5, rng)), np.asarray(small))


def test_higher_severity_departs_further_from_the_clean_image():
    image = grey_ramp()
    for name in robustness.PERTURBATIONS:
        errors = [np.abs(np.asarray(robustness.perturb(image, name, s, np.random.default_rng(0)), float)
                         - np.asarray(image, float)).mean() for s in (1, 5)]
        assert errors[1] > errors[0] > 0, name


def test_unknown_perturbation_and_severity_are_named():
    with pytest.raises(ValueError, match="'fog' is not one of"):
        robustness.check_sweep(["fog"], [1])
    with pytest.raises(ValueError, match="severities: 6"):
        robustness.check_sweep(["noise"], [6])


def test_variant_images_are_identical_for_every_writer(tmp_path):
    root = tmp_path / "data"
    records = data.read_records(synthetic.make_split(root, "test", 3, question_types=["presence"]))
    first = robustness.robustness_records(records, root, tmp_path / "a", "noise", 3, image_size=112, seed=0)
    second = robustness.robustness_records(records, root, tmp_path / "b", "noise", 3, image_size=112, seed=0)
    for a, b in zip(first, second):
        assert (tmp_path / "a" / a["images"][0]).read_bytes() == (tmp_path / "b" / b["images"][0]).read_bytes()
    other_seed = robustness.robustness_records(records, root, tmp_path / "c", "noise", 3, image_size=112, seed=1)
    assert (tmp_path / "a" / first[0]["images"][0]).read_bytes() != (tmp_path / "c" / other_seed[0]["images"][0]).read_bytes()


def test_robustness_table_starts_each_curve_at_the_clean_accuracy():
    def prediction(index, parsed):
        return {"id": str(index), "task": "vqa_closed", "parsed": parsed, "answer": "yes", "raw": "",
                "meta": {"question_type": "presence"}}

    clean = {"sft": [prediction(i, "yes") for i in range(4)]}
    sweeps = {"sft": {("noise", 3): [prediction(i, "yes" if i < 2 else "no") for i in range(4)],
                      ("noise", 5): [prediction(i, "no") for i in range(4)]}}
    rows = [r for r in robustness.robustness_table(clean, sweeps) if r["question_type"] == "all"]
    assert [(r["severity"], r["accuracy"]) for r in rows] == [(0, 1.0), (3, 0.5), (5, 0.0)]
