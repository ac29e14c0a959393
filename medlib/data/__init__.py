"""Data (notebook 10): the record contract, readers per published source, validation, synthetic sets, prompts, images."""
from medlib.data.records import (
    CLOSED_TASKS,
    CURRICULA,
    REQUIRED_FIELDS,
    TASKS,
    RecordError,
    check_images,
    curriculum_order,
    grpo_rows,
    is_closed,
    lazy_dataset,
    load_record_images,
    mix_datasets,
    read_records,
    select_records,
    sft_rows,
    split_records,
    to_dataset,
    validate_record,
)

__all__ = [
    "CLOSED_TASKS", "CURRICULA", "REQUIRED_FIELDS", "TASKS", "RecordError", "check_images", "curriculum_order",
    "grpo_rows", "is_closed", "lazy_dataset", "load_record_images", "mix_datasets", "read_records",
    "select_records", "sft_rows", "split_records", "to_dataset", "validate_record",
]
