"""The parameters several stages share (a profile's `common:` block); each stage's declaration extends them."""
from __future__ import annotations

from dataclasses import dataclass

from medlib.pipeline.declaration import experiment_dirs, param


@dataclass
class ExperimentParams:
    """Where an experiment's data, checkpoints and results live, and its seed."""

    experiment: str = param("flare2025_qwen25vl7b", "experiment name: results/<experiment>/, runs/<experiment>/")
    seed: int = param(3407, "seed for data order, initialisation and sampling")
    data_dir: str = param("data/flare2025/records", "folder with train/validation/test.jsonl records; image paths relative to it")
    image_size: int = param(448, "images are resized to image_size × image_size in every stage")
    runs_dir: str = param("", "checkpoints, adapters and predictions (empty: runs/<experiment>)")
    results_dir: str = param("", "metrics.json, figures/ and tables/ (empty: results/<experiment>)")
    answer_format: str = param("think_answer", "think_answer | answer_tags | plain — shared by SFT, GRPO and inference")

    def __post_init__(self) -> None:
        self.runs_dir, self.results_dir = experiment_dirs(self.experiment, self.runs_dir, self.results_dir)


@dataclass
class ModelParams(ExperimentParams):
    """The base model, how it is loaded and how it is prompted."""

    model_id: str = param("Qwen/Qwen2.5-VL-7B-Instruct", "hub id or local checkpoint folder of the base model")
    tiny_arch: str = param("", "build a tiny random-init model of this architecture at model_id first (empty: a real checkpoint)")
    backend: str = param("auto", "auto | unsloth | hf — auto uses Unsloth when CUDA and unsloth are present")
    system_prompt: str = param("", "optional system message (empty: none)")
    trust_remote_code: bool = param(False, "run Python code shipped with a checkpoint (only for checkpoints you trust)")
