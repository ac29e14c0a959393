"""Score a tiny run's SFT and GRPO checkpoints on extra synthetic counting questions: Δ MAE, its CI, p.

The README's "GRPO on the tiny profile" reads a GRPO-vs-SFT difference on 1,000 counting questions beside the
test set's 100, which resolve only about ±0.05. Usage (after `make reproduce`, any seed):

    .venv/bin/python docs/grpo_extra_counts.py runs/tiny            # 1,000 counts drawn with seed 100
    .venv/bin/python docs/grpo_extra_counts.py runs/tiny --seed 7   # another 1,000

An answer that does not parse as a number counts as an error of 3 (the widest miss on counts 0-3), where medlib's
MAE leaves unparsed answers out and counts them apart; the tiny profile's checkpoints parse every answer.
"""

import argparse
import json
import tempfile
from pathlib import Path

from medlib import data, models
from medlib.data import synthetic
from medlib.evaluation import inference
from medlib.evaluation.metrics import stats

UNPARSED_ERROR = 3.0  # the widest miss on the tiny profile's counts 0-3


def absolute_errors(model_dir: Path, records: list[dict], data_dir: Path, image_size: int) -> list[float]:
    """Greedy answers of one checkpoint, as |answer − count| (an unparsed answer counts as UNPARSED_ERROR)."""
    model, processor, _ = models.load_model(str(model_dir), backend="hf", min_pixels=image_size**2,
                                            max_pixels=image_size**2)
    model.eval()
    predictions = inference.predict_records(model, processor, records, str(data_dir), checkpoint=model_dir.parent.name,
                                            image_size=image_size, batch_size=32, max_new_tokens=24, progress=False)
    errors = []
    for prediction in predictions:
        try:
            errors.append(abs(float(prediction["parsed"]) - float(prediction["answer"])))
        except (TypeError, ValueError):
            errors.append(UNPARSED_ERROR)
    return errors


def mean_error(_references: list, errors: list[float]) -> float:
    """MAE of per-question absolute errors (paired_bootstrap's metric signature; the references are unused)."""
    return sum(errors) / len(errors)


def main() -> None:
    """Draw the extra counts, score both checkpoints on them and print the paired comparison as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a tiny run's folder, holding sft/final and grpo/final")
    parser.add_argument("--seed", type=int, default=100, help="seed of the extra questions (not a training seed)")
    parser.add_argument("--questions", type=int, default=2000, help="questions drawn; every second one is a count")
    parser.add_argument("--image-size", type=int, default=112, help="the run's common.image_size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        records_file = synthetic.make_split(folder, "fresh", args.questions, seed=args.seed, image_size=args.image_size)
        counts = [record for record in data.read_records(records_file) if record["task"] == "counting"]
        sft = absolute_errors(args.run_dir / "sft" / "final", counts, Path(folder), args.image_size)
        grpo = absolute_errors(args.run_dir / "grpo" / "final", counts, Path(folder), args.image_size)
    test = stats.paired_bootstrap(mean_error, [None] * len(counts), sft, grpo, n_resamples=2000)
    print(json.dumps({
        "n": len(counts), "sft_mae": round(mean_error([], sft), 4), "grpo_mae": round(mean_error([], grpo), 4),
        "difference": round(test["difference"], 4), "ci_low": round(test["low"], 4), "ci_high": round(test["high"], 4),
        "p_value": test["p_value"], "fixed": sum(g < s for s, g in zip(sft, grpo, strict=True)),
        "broken": sum(g > s for s, g in zip(sft, grpo, strict=True)),
    }))


if __name__ == "__main__":
    main()
