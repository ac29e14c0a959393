"""The LoRA declaration shared by SFT and GRPO: Unsloth's switches, mapped to a peft target regex for the hf backend."""
from __future__ import annotations

from dataclasses import dataclass

from medlib.pipeline.declaration import param

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv", "proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj", "fc1", "fc2", "linear_fc1", "linear_fc2")
LANGUAGE_SCOPE = r".*language_model.*\."
VISION_SCOPE = r".*visual\.blocks.*\."


@dataclass
class LoraParams:
    """LoRA adapter parameters (Unsloth `get_peft_model` names; peft `LoraConfig` on the hf backend)."""

    r: int = param(16, "LoRA rank")
    lora_alpha: int = param(32, "LoRA alpha (scale: alpha over r)")
    lora_dropout: float = param(0.05, "LoRA dropout")
    target_modules: list[str] = param([], "module names LoRA wraps (empty: the attention/MLP projections the switches below select)")
    finetune_vision_layers: bool = param(False, "LoRA on the vision encoder too")
    finetune_language_layers: bool = param(True, "LoRA on the language model")
    finetune_attention_modules: bool = param(True, "LoRA on attention projections")
    finetune_mlp_modules: bool = param(True, "LoRA on MLP projections")
    use_rslora: bool = param(False, "rank-stabilised LoRA scaling (alpha / sqrt(r))")
    modules_to_save: list[str] = param([], "modules trained fully and saved beside the adapter (e.g. lm_head)")


def lora_params_of(settings: object) -> LoraParams:
    """The LoRA fields of a stage's parameters (SFT and GRPO both carry them)."""
    from dataclasses import fields

    return LoraParams(**{f.name: getattr(settings, f.name) for f in fields(LoraParams)})


def lora_target_regex(settings: LoraParams) -> str:
    """Build the peft target regex from the Unsloth switches (vision/language × attention/MLP)."""
    names = list(settings.target_modules)
    if not names:
        if settings.finetune_attention_modules:
            names += ATTENTION_MODULES
        if settings.finetune_mlp_modules:
            names += MLP_MODULES
    scopes = []
    if settings.finetune_language_layers:
        scopes.append(LANGUAGE_SCOPE)
    if settings.finetune_vision_layers:
        scopes.append(VISION_SCOPE)
    if not names or not scopes:
        raise ValueError("LoRA targets nothing: enable language or vision layers and attention or MLP modules")
    return "(" + "|".join(scopes) + ")(" + "|".join(sorted(set(names))) + ")$"
