"""Parameters of notebooks 40 (inference) and 50 (metric analysis)."""
from __future__ import annotations

from dataclasses import dataclass

from medlib.pipeline.common_params import ExperimentParams, ModelParams
from medlib.pipeline.declaration import param


@dataclass
class InferenceParams(ModelParams):
    """notebooks/40_inference.ipynb: batched generation for each checkpoint on the held-out split."""

    checkpoints: list[str] = param(["base", "sft", "grpo"], "base | sft | grpo, or paths of other checkpoint folders")
    eval_split: str = param("test", "split scored")
    max_eval_samples: int = param(-1, "cap on questions (-1: all)")
    device: str = param("auto", "auto (CUDA, then Apple MPS, then CPU) | cuda | mps | cpu")
    batch_size: int = param(32, "prompts per generate() call (halved automatically on out-of-memory)")
    max_new_tokens: int = param(0, "new tokens per answer (0: per-task defaults, e.g. 512 for reports)")
    num_beams: int = param(1, "beam search width (1: greedy)")
    length_penalty: float = param(1.0, "beam length penalty (Libra reports 10 beams with 2.0)")
    cache_implementation: str = param("auto", "auto (static KV cache + compiled decoding for long CUDA runs) | static | dynamic")
    resume: bool = param(True, "keep predictions of an interrupted run and generate only the rest")
    flare_questions: str = param("", "FLARE questions JSON, or a folder of them in the FLARE 2025 layout, to fill in as a submission per checkpoint (empty: none)")
    image_ablation: list[str] = param(["blank", "wrong"], "image ablation passes: blank (mid-grey image) | wrong (another record's image, seeded derangement)")
    ablation_max_samples: int = param(1000, "cap on questions of each ablation pass (-1: all)")
    calibration: bool = param(True, "score the options of closed-form questions for a confidence per answer")
    calibration_max_samples: int = param(-1, "cap on questions scored for calibration (-1: all)")
    robustness: list[str] = param(["noise", "contrast", "blur", "jpeg", "downscale"], "image perturbations swept (ImageNet-C parameters; empty: none)")
    robustness_severities: list[int] = param([1, 3, 5], "ImageNet-C severity levels (1–5) of each perturbation")
    robustness_max_samples: int = param(300, "cap on questions of each perturbation and severity (-1: all)")


@dataclass
class MetricAnalysisParams(ExperimentParams):
    """notebooks/50_metric_analysis.ipynb: scores per task and checkpoint, with confidence intervals."""

    checkpoints: list[str] = param(["base", "sft", "grpo"], "prediction files to compare, in this order")
    image_question_type: str = param("presence", "question type whose answer only the image determines (headline)")
    parser: str = param("flare", "answer parser for the per-task scores: flare (FLARE 2025 conventions) or robust")
    n_resamples: int = param(1000, "bootstrap resamples for the confidence intervals")
    calibration_bins: int = param(10, "equal-width confidence bins of the ECE and reliability diagram")
