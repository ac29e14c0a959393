"""Parameters of notebook 10 (data exploration): where the records come from and what is shown."""
from __future__ import annotations

from dataclasses import dataclass

from medlib.pipeline.common_params import ExperimentParams
from medlib.pipeline.declaration import param


@dataclass
class DataExplorationParams(ExperimentParams):
    """notebooks/10_data_exploration.ipynb: convert or generate the records, then look at them."""

    data_source: str = param("records", "synthetic (generated offline) | synthetic_flare2025 (generated, written in the FLARE 2025 layout and read back) | records (converted files in data_dir)")
    source_path: str = param("", "raw data set converted into data_dir first (its records there are replaced): FLARE 2025 layout, VQA set, SLAKE, Med-R1, OmniMedVQA, Libra, chat JSONL (empty: none)")
    source_format: str = param("auto", "auto | flare2025 | flare_xray_reports | hf_vqa | slake | medr1 | omnimedvqa | libra | chat_jsonl | records")
    source_image_root: str = param("", "folder the source's image paths are relative to (Med-R1, OmniMedVQA, Libra, SLAKE), or where absolute chat JSONL paths are rebased (empty: found beside the source)")
    source_language: str = param("", "SLAKE: keep questions of one q_lang, en or zh (empty: all)")
    dicom_frame: int = param(0, "frame of multi-frame DICOM images to use (0: the first)")
    validation_fraction: float = param(0.0, "carve this fraction of train (by image) into a validation split when the source has none (0: never)")
    strict: bool = param(False, "stop on any data problem instead of skipping and counting it")
    synthetic_sizes: dict[str, int] = param({"train": 2000, "validation": 100, "test": 200}, "questions per split (synthetic only)")
    synthetic_question_types: list[str] = param(["presence", "count"], "presence | count | side | findings | detect | instances | size | location | report | temporal | choice")
    n_examples_shown: int = param(8, "images shown in the gallery")
    image_stats_limit: int = param(5000, "images whose size and mode feed the histograms (-1: all)")
