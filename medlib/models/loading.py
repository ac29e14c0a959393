"""Load a Qwen-VL model + processor with the Unsloth or the transformers+peft backend; add LoRA."""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from medlib.data.processing import load_processor
from medlib.models.lora import LoraParams, lora_target_regex

BACKENDS = ("auto", "unsloth", "hf")
FINETUNE_MODES = ("lora", "full", "none")
def unsloth_available() -> bool:
    """Return whether Unsloth can be used here: CUDA present and the package installed."""
    return torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None


def resolve_backend(backend: str = "auto") -> str:
    """Map `auto|unsloth|hf` to the backend that will run; `unsloth` without CUDA is an error."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "unsloth" if unsloth_available() else "hf"
    if backend == "unsloth" and not unsloth_available():
        raise RuntimeError("backend 'unsloth' needs CUDA and the unsloth package (pip install '.[gpu]'); "
                           "use backend 'hf' or 'auto' on this machine")
    return backend


def activate_backend(backend: str = "auto") -> str:
    """Resolve the backend and, for Unsloth, import it now: it must patch transformers/TRL before use."""
    resolved = resolve_backend(backend)
    if resolved == "unsloth":
        import unsloth  # noqa: F401

    return resolved


def resolve_device(device: str = "auto") -> str:
    """Pick CUDA, then Apple MPS, then CPU for `auto`; pass anything else through."""
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def bf16_supported() -> bool:
    """Whether this machine's GPU computes in bfloat16 (not T4/V100-class cards, and not without CUDA)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_dtype(dtype: str = "auto", device: str = "cpu") -> torch.dtype:
    """Return the torch dtype; `auto`: bf16 on a CUDA GPU that has it, fp16 on one that does not, fp32 elsewhere."""
    if dtype == "auto":
        if not device.startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if bf16_supported() else torch.float16
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_dtype(dtype: str, device: str, backend: str, full_finetuning: bool) -> torch.dtype:
    """The dtype to load weights in: `resolve_dtype`, except fp32 for hf full fine-tuning where it gives fp16.

    fp16 mixed precision cannot step fp16 weights (the gradient scaler refuses them), so on a GPU
    without bf16 the hf backend keeps fp32 weights; LoRA adapters are fp32 anyway (peft upcasts them).
    """
    torch_dtype = resolve_dtype(dtype, device)
    if backend == "hf" and full_finetuning and torch_dtype == torch.float16:
        return torch.float32
    return torch_dtype


def mixed_precision() -> dict[str, bool]:
    """The Trainer's `bf16`/`fp16` flags for this machine, matching the dtype `resolve_dtype` loads in.

    Unsloth loads float16 on a GPU without bfloat16 and then refuses `bf16=True` (unsloth/models/rl.py),
    so the flags follow the hardware, never the mere presence of CUDA.
    """
    if not torch.cuda.is_available():
        return {"bf16": False, "fp16": False}
    bf16 = bf16_supported()
    return {"bf16": bf16, "fp16": not bf16}


def local_device(device: str) -> str:
    """`cuda` → this process's GPU under torchrun (`cuda:LOCAL_RANK`); anything else unchanged."""
    if device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device


def is_adapter_dir(path: str | Path) -> bool:
    """Return whether a folder holds a peft adapter rather than full weights."""
    return (Path(path) / "adapter_config.json").exists()


def load_model(model_id: str, *, backend: str = "auto", dtype: str = "auto", device: str = "auto",
               load_in_4bit: bool = False, max_seq_length: int = 8192, gradient_checkpointing: bool = False,
               full_finetuning: bool = False, trust_remote_code: bool = False,
               min_pixels: int | None = None, max_pixels: int | None = None) -> tuple[Any, Any, str]:
    """Load (model, processor, backend) from a hub id or local folder, adapters included.

    `max_seq_length` is Unsloth's: its trainers and vision collator truncate every row at it.
    """
    backend = resolve_backend(backend)
    device = local_device(resolve_device(device))
    torch_dtype = load_dtype(dtype, device, backend, full_finetuning)
    if backend == "unsloth":
        from unsloth import FastVisionModel

        model, processor = FastVisionModel.from_pretrained(
            model_id, load_in_4bit=load_in_4bit, dtype=torch_dtype, max_seq_length=max_seq_length,
            full_finetuning=full_finetuning, trust_remote_code=trust_remote_code,
            use_gradient_checkpointing="unsloth" if gradient_checkpointing else False)
        if min_pixels or max_pixels:
            size = dict(processor.image_processor.size)
            size["shortest_edge"] = min_pixels or size.get("shortest_edge")
            size["longest_edge"] = max_pixels or size.get("longest_edge")
            processor.image_processor.size = size
        processor.tokenizer.padding_side = "left"
        return model, processor, backend
    model, processor = _load_hf(model_id, torch_dtype, device, load_in_4bit, trust_remote_code, min_pixels, max_pixels)
    model.max_seq_length = max_seq_length  # as Unsloth sets it: the trainers check rows against it
    return model, processor, backend


def _load_hf(model_id: str, torch_dtype: torch.dtype, device: str, load_in_4bit: bool,
             trust_remote_code: bool, min_pixels: int | None, max_pixels: int | None) -> tuple[Any, Any]:
    """Load with plain transformers (+ peft for adapter folders)."""
    from transformers import AutoModelForImageTextToText

    base_id = model_id
    if is_adapter_dir(model_id):
        base_id = json.loads((Path(model_id) / "adapter_config.json").read_text())["base_model_name_or_path"]
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype)
        # This process's GPU: under torchrun every rank would otherwise load onto GPU 0.
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = AutoModelForImageTextToText.from_pretrained(base_id, **kwargs)
    if base_id != model_id:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_id, is_trainable=True)
    if not load_in_4bit:
        model = model.to(device)
    processor_source = model_id if (Path(model_id) / "tokenizer_config.json").exists() else base_id
    processor = load_processor(processor_source, min_pixels=min_pixels, max_pixels=max_pixels)
    return model, processor


def prepare_for_training(model: Any, backend: str, mode: str, lora: LoraParams, *, seed: int = 0,
                         gradient_checkpointing: bool = False) -> Any:
    """Make the model trainable: LoRA adapters (Unsloth or peft), full fine-tuning, or frozen."""
    if mode not in FINETUNE_MODES:
        raise ValueError(f"finetune_mode must be one of {FINETUNE_MODES}, got {mode!r}")
    if mode == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model
    if mode == "none":
        return model
    if hasattr(model, "peft_config"):  # continuing from an adapter (e.g. GRPO after SFT)
        return model
    if backend == "unsloth":
        from unsloth import FastVisionModel

        model = FastVisionModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout, bias="none",
            target_modules=lora.target_modules or None,
            finetune_vision_layers=lora.finetune_vision_layers,
            finetune_language_layers=lora.finetune_language_layers,
            finetune_attention_modules=lora.finetune_attention_modules,
            finetune_mlp_modules=lora.finetune_mlp_modules, modules_to_save=lora.modules_to_save or None,
            use_rslora=lora.use_rslora, random_state=seed,
            use_gradient_checkpointing="unsloth" if gradient_checkpointing else False)
        FastVisionModel.for_training(model)
        return model
    from peft import LoraConfig, get_peft_model

    if getattr(model, "is_loaded_in_4bit", False):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    config = LoraConfig(r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout, bias="none",
                        target_modules=lora_target_regex(lora), modules_to_save=lora.modules_to_save or None,
                        use_rslora=lora.use_rslora, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def for_inference(model: Any, backend: str) -> Any:
    """Switch a model to generation mode (Unsloth's fast path on CUDA)."""
    if backend == "unsloth":
        from unsloth import FastVisionModel

        FastVisionModel.for_inference(model)
    model.eval()
    return model


def for_training(model: Any, backend: str) -> Any:
    """Switch back to training after generating: Unsloth's `generate` turns gradient checkpointing off.

    `FastVisionModel.for_training` with no argument restores the checkpointing chosen at load
    (unsloth/models/vision.py); `model.train()` alone would leave it off.
    """
    if backend == "unsloth":
        from unsloth import FastVisionModel

        FastVisionModel.for_training(model)
    model.train()
    return model


def count_parameters(model: Any) -> dict[str, int]:
    """Return total and trainable parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


MERGE_METHODS = ("none", "unsloth_merged_16bit", "peft_merge", "reload_16bit")


def merge_method(model: Any) -> str:
    """How `save_checkpoint(merged=True)` writes a merged 16-bit model of this one.

    - `unsloth_merged_16bit`: Unsloth's `save_pretrained_merged(..., "merged_16bit")` (4-bit bases included);
    - `reload_16bit`: a quantised peft model: peft's merge would re-quantise to 4-bit, so the base is
      loaded again in 16 bits on the CPU and the saved adapter merged into it;
    - `peft_merge`: peft's `merge_and_unload` (16-bit base; changes the model in place: call it last);
    - `none`: no adapter (full weights are saved as they are).
    """
    if callable(getattr(model, "save_pretrained_merged", None)):
        return "unsloth_merged_16bit"
    if not hasattr(model, "merge_and_unload"):
        return "none"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False):
        return "reload_16bit"
    return "peft_merge"


def _merge_into_16bit_base(model: Any, out_dir: Path) -> None:
    """Save the adapter, load its base in 16 bits on the CPU, merge the adapter into it and save that."""
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForImageTextToText

    base_id = model.peft_config[model.active_adapter].base_model_name_or_path
    config_dtype = getattr(AutoConfig.from_pretrained(base_id), "dtype", None)
    dtype = config_dtype if config_dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".adapter-") as adapter_dir:
        model.save_pretrained(adapter_dir, safe_serialization=True)
        base = AutoModelForImageTextToText.from_pretrained(base_id, dtype=dtype, device_map={"": "cpu"})
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)


def save_checkpoint(model: Any, processor: Any, out_dir: str | Path, *, merged: bool = False) -> Path:
    """Save the adapter (peft format) or full weights, with the processor, into out_dir.

    `merged`: a merged 16-bit model instead of the adapter, by `merge_method(model)`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    method = merge_method(model) if merged else "none"
    if method == "unsloth_merged_16bit":
        model.save_pretrained_merged(str(out_dir), processor, save_method="merged_16bit")
    elif method == "reload_16bit":
        _merge_into_16bit_base(model, out_dir)
    elif method == "peft_merge":
        model.merge_and_unload().save_pretrained(out_dir, safe_serialization=True)
    else:
        model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir
