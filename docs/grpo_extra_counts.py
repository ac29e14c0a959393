"""Score a tiny run's SFT and GRPO checkpoints on extra synthetic counting questions: Δ MAE, its CI, p.

The README's "GRPO on the tiny profile" reads a GRPO-vs-SFT difference on 1,000 counting questions beside the
test set's 100, which resolve only about ±0.05. Usage (after `make reproduce`, any seed):

    .venv/bin/python docs/grpo_extra_counts.py runs/tiny            # 1,000 counts drawn with seed 100
    .venv/bin/python docs/grpo_extra_counts.py runs/tiny --seed 7   # another 1,000
"""

import argparse
import json
import tempfile
from pathlib import Path

from medlib import data, models
from medlib.data import synthetic
from medlib.evaluation import inference
from medlib.evaluation.metrics import stats

IMAGE_SIZE = 112  # the tiny profile's common.image_size


def absolute_errors(model_dir: Path, records: list[dict], data_dir: Path) -> list[float]:
    """Greedy answers of one checkpoint, as |answer − count| (an unparsed answer counts as 3, the widest miss)."""
    model, processor, _ = models.load_model(str(model_dir), backend="hf", min_pixels=IMAGE_SIZE**2,
                                            max_pixels=IMAGE_SIZE**2)
    model.eval()
    predictions = inference.predict_records(model, processor, records, str(data_dir), checkpoint=model_dir.parent.name,
                                            image_size=IMAGE_SIZE, batch_size=32, max_new_tokens=24, progress=False)
    errors = []
    for prediction in predictions:
        try:
            errors.append(abs(float(prediction["parsed"]) - float(prediction["answer"])))
        except (TypeError, ValueError):
            errors.append(3.0)
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a tiny run's folder, holding sft/final and grpo/final")
    parser.add_argument("--seed", type=int, default=100, help="seed of the extra questions (not a training seed)")
    parser.add_argument("--questions", type=int, default=2000, help="questions drawn; every second one is a count")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        records_file = synthetic.make_split(folder, "fresh", args.questions, seed=args.seed, image_size=IMAGE_SIZE)
        counts = [record for record in data.read_records(records_file) if record["task"] == "counting"]
        sft = absolute_errors(args.run_dir / "sft" / "final", counts, Path(folder))
        grpo = absolute_errors(args.run_dir / "grpo" / "final", counts, Path(folder))

    def mae(_references: list, errors: list[float]) -> float:
        return sum(errors) / len(errors)

    test = stats.paired_bootstrap(mae, [None] * len(counts), sft, grpo, n_resamples=2000)
    print(json.dumps({
        "n": len(counts), "sft_mae": round(mae([], sft), 4), "grpo_mae": round(mae([], grpo), 4),
        "difference": round(test["difference"], 4), "ci_low": round(test["low"], 4), "ci_high": round(test["high"], 4),
        "p_value": test["p_value"], "fixed": sum(g < s for s, g in zip(sft, grpo, strict=True)),
        "broken": sum(g > s for s, g in zip(sft, grpo, strict=True)),
    }))


if __name__ == "__main__":
    main()
