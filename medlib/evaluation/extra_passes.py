"""The passes notebook 40 runs beyond plain generation: image ablation, the robustness sweep, option scoring.

Variant images are written once (`prepare_passes`), then each checkpoint answers every variant through
`inference.predict_records` (`run_passes`) and scores the options of its closed-form answers
(`run_option_scoring`). Files: `<predictions>/<kind>/<variant>/<checkpoint>.jsonl` and
`<predictions>/calibration/<checkpoint>.jsonl`; notebook 50 reads them back with `read_passes`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medlib.evaluation import ablation, inference, option_scoring, robustness
from medlib.evaluation.image_variants import cap_records
from medlib.pipeline.results import atomic_write_json

KINDS = ("ablation", "robustness")
MANIFEST = "passes.json"


def prepare_passes(records: list[dict[str, Any]], data_root: str | Path, variants_dir: str | Path, *,
                   image_ablation: list[str], ablation_max_samples: int, robustness_perturbations: list[str],
                   robustness_severities: list[int], robustness_max_samples: int, image_size: int | None,
                   seed: int) -> dict[str, dict[str, Any]]:
    """Write every variant's images once: {variant: {"kind", "records", "root", "skipped"}}."""
    ablation.check_ablations(image_ablation)
    robustness.check_sweep(robustness_perturbations, robustness_severities)
    variants_dir = Path(variants_dir)
    passes: dict[str, dict[str, Any]] = {}
    subset = cap_records(records, ablation_max_samples)
    for name in image_ablation:
        root = variants_dir / "ablation" / name
        variant_records, skipped = ablation.ablation_records(subset, data_root, root, name, image_size=image_size,
                                                             seed=seed)
        passes[name] = {"kind": "ablation", "records": variant_records, "root": root, "skipped": skipped}
    subset = [r for r in cap_records(records, robustness_max_samples) if r["images"]]
    for name in robustness_perturbations:
        for severity in robustness_severities:
            variant = robustness.variant_name(name, severity)
            root = variants_dir / "robustness" / variant
            variant_records = robustness.robustness_records(subset, data_root, root, name, severity,
                                                            image_size=image_size, seed=seed)
            passes[variant] = {"kind": "robustness", "records": variant_records, "root": root, "skipped": {},
                               "perturbation": name, "severity": severity}
    return passes


def pass_path(predictions_dir: str | Path, kind: str, variant: str, checkpoint: str) -> Path:
    """Where one checkpoint's predictions on one variant live."""
    return Path(predictions_dir) / kind / variant / f"{Path(checkpoint).name}.jsonl"


def run_passes(model: Any, processor: Any, passes: dict[str, dict[str, Any]], predictions_dir: str | Path, *,
               checkpoint: str, **generation: Any) -> dict[str, int]:
    """Generate for every variant with one loaded checkpoint (inference.predict_records options); counts per variant."""
    counts = {}
    for variant, spec in passes.items():
        predictions = inference.predict_records(
            model, processor, spec["records"], spec["root"], checkpoint=checkpoint,
            out_path=pass_path(predictions_dir, spec["kind"], variant, checkpoint), progress=False, **generation)
        counts[variant] = len(predictions)
    return counts


def run_option_scoring(model: Any, processor: Any, records: list[dict[str, Any]], data_root: str | Path,
                       predictions: list[dict[str, Any]], predictions_dir: str | Path, *, checkpoint: str,
                       max_samples: int, image_size: int | None, answer_format: str, system_prompt: str | None,
                       batch_size: int) -> dict[str, Any]:
    """Score the options of the closed-form questions and write the items; {"items": n, "skipped": {...}}."""
    scored = option_scoring.score_options(model, processor, cap_records(records, max_samples), data_root,
                                          image_size=image_size, answer_format=answer_format,
                                          system_prompt=system_prompt, predictions=predictions,
                                          batch_size=batch_size)
    inference.write_predictions(Path(predictions_dir) / "calibration" / f"{Path(checkpoint).name}.jsonl",
                                scored["items"])
    return {"items": len(scored["items"]), "skipped": scored["skipped"]}


def write_manifest(predictions_dir: str | Path, passes: dict[str, dict[str, Any]], checkpoints: list[str],
                   calibration: bool) -> Path:
    """Record which variants and checkpoints this run produced, so 50 reads exactly those (no stale files)."""
    manifest = {"checkpoints": [Path(c).name for c in checkpoints], "calibration": calibration,
                "variants": {variant: {"kind": spec["kind"], "n": len(spec["records"]), "skipped": spec["skipped"],
                                       **({"perturbation": spec["perturbation"], "severity": spec["severity"]}
                                          if spec["kind"] == "robustness" else {})}
                             for variant, spec in passes.items()}}
    return atomic_write_json(Path(predictions_dir) / MANIFEST, manifest)


def read_passes(predictions_dir: str | Path, checkpoints: list[str]) -> dict[str, Any]:
    """What 40 recorded in its manifest for these checkpoints: {"ablation": {ckpt: {variant: preds}},
    "robustness": {ckpt: {(perturbation, severity): preds}}, "calibration": {ckpt: items}, "manifest": {...}}."""
    predictions_dir = Path(predictions_dir)
    found: dict[str, Any] = {"ablation": {}, "robustness": {}, "calibration": {}, "manifest": {}}
    manifest_path = predictions_dir / MANIFEST
    if not manifest_path.exists():
        return found
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    found["manifest"] = manifest
    for checkpoint in checkpoints:
        if Path(checkpoint).name not in manifest["checkpoints"]:
            continue
        for variant, spec in manifest["variants"].items():
            key = (spec["perturbation"], spec["severity"]) if spec["kind"] == "robustness" else variant
            path = pass_path(predictions_dir, spec["kind"], variant, checkpoint)
            found[spec["kind"]].setdefault(checkpoint, {})[key] = inference.read_predictions(path)
        if manifest["calibration"]:
            found["calibration"][checkpoint] = inference.read_predictions(
                predictions_dir / "calibration" / f"{Path(checkpoint).name}.jsonl")
    return found
