"""Models (notebooks 20–40): loading with the Unsloth or transformers+peft backend, LoRA, the tiny model, the vision cache."""
from medlib.models.loading import (
    BACKENDS,
    FINETUNE_MODES,
    activate_backend,
    count_parameters,
    for_inference,
    is_adapter_dir,
    load_model,
    prepare_for_training,
    resolve_backend,
    resolve_device,
    resolve_dtype,
    save_checkpoint,
    unsloth_available,
)
from medlib.models.lora import (
    ATTENTION_MODULES,
    LANGUAGE_SCOPE,
    MLP_MODULES,
    VISION_SCOPE,
    LoraParams,
    lora_params_of,
    lora_target_regex,
)

__all__ = [
    "ATTENTION_MODULES", "BACKENDS", "FINETUNE_MODES", "LANGUAGE_SCOPE", "MLP_MODULES", "VISION_SCOPE",
    "LoraParams", "lora_params_of", "lora_target_regex", "activate_backend", "count_parameters", "for_inference", "is_adapter_dir", "load_model",
    "prepare_for_training", "resolve_backend", "resolve_device", "resolve_dtype",
    "save_checkpoint", "unsloth_available",
]
