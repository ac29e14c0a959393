"""Image ablation: the same questions with a blank image or another record's image, and how much of the score needs the image.

- `blank`: every image replaced by a uniform mid-grey (128) image of the same size;
- `wrong`: every record gets the images of a different record, by a seeded derangement over the
  distinct image sets (grouped by how many images a record has), so no question keeps its own image.

Accuracy (the stored parsed answer against the reference, `medlib.evaluation.metrics`) with, without and
with the wrong image, per question type and task, and the paired bootstrap difference (variant − with
image) on the same questions (`metrics.stats.paired_bootstrap`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from medlib.data import load_record_images
from medlib.evaluation.image_variants import derangement, write_variant
from medlib.evaluation.metrics import stats
from medlib.evaluation.parsing import answers_match

ABLATIONS = ("blank", "wrong")
BLANK_GREY = 128


def check_ablations(names: list[str]) -> list[str]:
    """The ablation names, or ValueError naming the unknown one."""
    unknown = [name for name in names if name not in ABLATIONS]
    if unknown:
        raise ValueError(f"image_ablation: {unknown[0]!r} is not one of {', '.join(ABLATIONS)}")
    return list(names)


def wrong_image_partners(records: list[dict[str, Any]], seed: int) -> tuple[dict[int, int], int]:
    """Record index → index of a record with a different image set; and how many records had no partner.

    Distinct image sets are deranged (records that share an image set share its partner), within groups of
    equal image count; a group with a single distinct image set cannot be deranged and is left out.
    """
    groups: dict[int, list[tuple[str, ...]]] = {}
    first_with: dict[tuple[str, ...], int] = {}
    for index, record in enumerate(records):
        key = tuple(record["images"])
        if key and key not in first_with:
            first_with[key] = index
            groups.setdefault(len(key), []).append(key)
    partner_of: dict[tuple[str, ...], tuple[str, ...]] = {}
    for count, keys in sorted(groups.items()):
        if len(keys) >= 2:
            order = derangement(len(keys), seed + count)
            partner_of.update({key: keys[order[i]] for i, key in enumerate(keys)})
    partners = {i: first_with[partner_of[tuple(r["images"])]] for i, r in enumerate(records)
                if tuple(r["images"]) in partner_of}
    return partners, len(records) - len(partners)


def ablation_records(records: list[dict[str, Any]], data_root: str | Path, out_dir: str | Path, variant: str, *,
                     image_size: int | None, seed: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Write the variant's images under out_dir; (records pointing at them, skipped reasons with counts)."""
    check_ablations([variant])
    with_images = [r for r in records if r["images"]]
    skipped = {"no image": len(records) - len(with_images)} if len(with_images) < len(records) else {}
    if variant == "blank":
        def blank(_index: int, _position: int, image: Image.Image) -> Image.Image:
            return Image.new("RGB", image.size, (BLANK_GREY,) * 3)

        return write_variant(with_images, data_root, out_dir, image_size=image_size, transform=blank), skipped
    partners, unpaired = wrong_image_partners(with_images, seed)
    if unpaired:
        skipped["no other image set of the same image count"] = unpaired
    kept = [r for i, r in enumerate(with_images) if i in partners]
    sources = [with_images[partners[i]] for i, _ in enumerate(with_images) if i in partners]

    def other(index: int, position: int, image: Image.Image) -> Image.Image:
        return load_record_images(sources[index], data_root, image_size)[position].resize(image.size)

    return write_variant(kept, data_root, out_dir, image_size=image_size, transform=other), skipped


def _correct(prediction: dict[str, Any]) -> bool:
    """Whether a prediction's stored parsed answer matches its reference."""
    return answers_match(prediction["task"], prediction.get("parsed"), prediction["answer"], prediction.get("choices"))


def _mean(flags: list[float]) -> float:
    """Mean of 0/1 scores (nan for none)."""
    return sum(flags) / len(flags) if flags else float("nan")


def _accuracy(_references: list, scores: list) -> float:
    """Accuracy over per-item 0/1 scores: the metric paired_bootstrap resamples."""
    return _mean(scores)


def ablation_table(with_image: list[dict[str, Any]], variants: dict[str, list[dict[str, Any]]],
                   n_resamples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Per question type and task: accuracy with the image and with each variant on the same questions,
    the paired bootstrap difference (variant − with image) with its 95% CI and p-value, and the share of
    the with-image accuracy lost without the image (`needs_image`: −difference / with-image accuracy)."""
    by_id = {p["id"]: p for p in with_image}
    rows = []
    for variant, predictions in variants.items():
        groups: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
        for prediction in predictions:
            if prediction["id"] in by_id:
                question_type = (prediction.get("meta") or {}).get("question_type") or prediction["task"]
                for key in ((question_type, prediction["task"]), ("all", "all")):
                    groups.setdefault(key, []).append((by_id[prediction["id"]], prediction))
        for (question_type, task), pairs in sorted(groups.items(), key=lambda item: item[0] != ("all", "all")):
            clean = [float(_correct(a)) for a, _ in pairs]
            ablated = [float(_correct(b)) for _, b in pairs]
            test = stats.paired_bootstrap(_accuracy, [None] * len(pairs), clean, ablated,
                                          n_resamples=n_resamples, seed=seed)
            rows.append({"variant": variant, "question_type": question_type, "task": task, "n": len(pairs),
                         "with_image": _mean(clean), "ablated": _mean(ablated), "difference": test["difference"],
                         "low": test["low"], "high": test["high"], "p_value": test["p_value"],
                         "needs_image": -test["difference"] / _mean(clean) if _mean(clean) else float("nan")})
    return rows


def ablation_rows(clean: dict[str, list[dict[str, Any]]], ablated: dict[str, dict[str, list[dict[str, Any]]]],
                  n_resamples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """ablation_table for every checkpoint that has ablation passes, each row tagged with its checkpoint."""
    return [{"checkpoint": checkpoint, **row}
            for checkpoint, variants in ablated.items() if checkpoint in clean
            for row in ablation_table(clean[checkpoint], variants, n_resamples, seed)]
