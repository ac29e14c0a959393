"""Run-time guards at the start of SFT and GRPO: the silent failures that train with normal-looking losses.

- `trainable_parameters`: what trains matches the params (LoRA on the language model only leaves the vision
  tower frozen; full fine-tuning trains everything), with counts;
- `loss_mask` (SFT): on the first collated batch, some tokens carry loss, and none of the prompt's or the
  image's tokens do (the prompt is re-rendered from each row independently of the collator);
- `image_tokens`: every row has as many image tokens as the processor expects for its images' sizes
  (and as the image grid the batch carries);
- `prompt_parity`: one training record gets the same prompt tokens and pixels in training and inference;
- `rollout_adapter` (GRPO with LoRA): the model the rollouts generate with has the adapter active, and,
  when the adapter is not freshly initialised, its logits differ with the adapter disabled.
A failed guard raises `GuardFailed` naming it; `medlib doctor` runs the same guards without training.
"""
from __future__ import annotations

import contextvars
from typing import Any

import torch

from medlib.training.params import TrainingParams

IGNORE_INDEX = -100
VISION_MARKERS = (".visual.", "visual.", "vision_tower", "vision_model")
# Set by `medlib doctor`: stop right after the guards instead of training.
STOP_AFTER_GUARDS: contextvars.ContextVar[bool] = contextvars.ContextVar("stop_after_guards", default=False)


class GuardFailed(RuntimeError):
    """A run-time guard found a silent training failure; the message names the guard."""


class StoppedAfterGuards(Exception):
    """Raised by the guards under `medlib doctor` once they have passed: the report rides along."""

    def __init__(self, report: list[dict[str, Any]]):
        super().__init__("guards passed; stopping before training (medlib doctor)")
        self.report = report


def _row(guard: str, ok: bool | None, detail: str, **values: Any) -> dict[str, Any]:
    """One line of the guard report: pass, fail or skip (ok None), with what was measured."""
    return {"guard": guard, "status": "skip" if ok is None else ("pass" if ok else "fail"), "detail": detail,
            "values": values}


def is_vision(name: str) -> bool:
    """Whether a parameter name belongs to the vision tower (Qwen-VL: `visual.blocks`, `visual.merger`)."""
    return any(marker in name for marker in VISION_MARKERS)


def check_trainable(model: Any, settings: TrainingParams) -> dict[str, Any]:
    """trainable_parameters: the trainable set against finetune_mode and the LoRA switches."""
    named = list(model.named_parameters())
    trainable = [(n, p) for n, p in named if p.requires_grad]
    counts = {"total": sum(p.numel() for _, p in named), "trainable": sum(p.numel() for _, p in trainable),
              "trainable_vision": sum(p.numel() for n, p in trainable if is_vision(n)),
              "trainable_lora": sum(p.numel() for n, p in trainable if "lora_" in n)}
    mode = settings.finetune_mode
    if mode == "full":
        ok = counts["trainable"] == counts["total"]
        return _row("trainable_parameters", ok, "full fine-tuning trains every parameter" if ok else
                    f"full fine-tuning asked, but {counts['total'] - counts['trainable']} parameters are frozen", **counts)
    if mode == "none":
        ok = counts["trainable"] == 0
        return _row("trainable_parameters", ok, "nothing trains" if ok else "finetune_mode none, yet parameters train",
                    **counts)
    saved = tuple(settings.modules_to_save)
    stray = [n for n, _ in trainable if "lora_" not in n and not any(m in n for m in saved)]
    problems = []
    if not counts["trainable_lora"]:
        problems.append("no LoRA parameter trains")
    if stray:
        problems.append(f"{len(stray)} non-LoRA tensors train (first: {stray[0]})")
    if not settings.finetune_vision_layers and counts["trainable_vision"]:
        first = next(n for n, _ in trainable if is_vision(n))
        problems.append(f"the vision tower trains ({counts['trainable_vision']} parameters, first: {first}) "
                        "though LoRA on the language model only was asked")
    if settings.finetune_vision_layers and not counts["trainable_vision"]:
        problems.append("finetune_vision_layers asked, but no vision parameter trains")
    if settings.finetune_language_layers and not any("lora_" in n and not is_vision(n) for n, _ in trainable):
        problems.append("finetune_language_layers asked, but no language-model LoRA parameter trains")
    return _row("trainable_parameters", not problems, "; ".join(problems) or
                f"LoRA only ({'vision and language' if settings.finetune_vision_layers else 'language model'}), "
                "the rest frozen", **counts)


def _special_ids(processor: Any) -> dict[str, int]:
    """Token ids of the image placeholder and the vision markers that exist in this tokenizer."""
    tokenizer = processor.tokenizer
    ids = {}
    for token in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids[token] = token_id
    return ids


def _prompt_messages_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt turns of a training row: `prompt` (prompt-completion rows) or all but the last message."""
    return row["prompt"] if "prompt" in row else row["messages"][:-1]


def expected_image_tokens(processor: Any, images: list) -> int:
    """Image tokens the processor expects for these images: patches for their size over merge_size²."""
    image_processor = processor.image_processor
    merge = getattr(image_processor, "merge_size", 1) or 1
    return sum(image_processor.get_number_of_image_patches(image.height, image.width, {}) // (merge * merge)
               for image in images)


def check_loss_mask(batch: dict[str, Any], rows: list[dict[str, Any]], processor: Any) -> dict[str, Any]:
    """loss_mask: share of tokens with loss; no prompt token and no image token supervised."""
    labels, mask = batch["labels"], batch["attention_mask"].bool()
    supervised = (labels != IGNORE_INDEX) & mask
    fraction = float(supervised.sum()) / max(1, int(mask.sum()))
    problems = []
    if not supervised.any():
        problems.append("no token carries loss")
    for name, token_id in _special_ids(processor).items():
        hits = int((supervised & (batch["input_ids"] == token_id)).sum())
        if hits:
            problems.append(f"{hits} {name} tokens carry loss")
    prompt_hits = 0
    for index, row in enumerate(rows):
        text = processor.apply_chat_template(_prompt_messages_of(row), add_generation_prompt=True, tokenize=False)
        length = len(processor(text=[text], images=[row["images"]] if row.get("images") else None,
                               return_tensors="pt")["input_ids"][0])
        prompt_hits += int(supervised[index][mask[index]][:length].sum())
    if prompt_hits:
        problems.append(f"{prompt_hits} prompt tokens carry loss (the loss must be on the answer only)")
    return _row("loss_mask", not problems, "; ".join(problems) or
                f"{fraction:.1%} of tokens carry loss, all after the prompt; no image token", supervised_fraction=fraction,
                supervised_tokens=int(supervised.sum()))


def check_image_tokens(batch: dict[str, Any], rows: list[dict[str, Any]], processor: Any) -> dict[str, Any]:
    """image_tokens: per row, image tokens in the text = the processor's expectation = the batch's grid."""
    token_id = _special_ids(processor).get("<|image_pad|>")
    if token_id is None or "image_grid_thw" not in batch:
        return _row("image_tokens", None, "no image tokens in this model/batch")
    merge = getattr(processor.image_processor, "merge_size", 1) or 1
    grid_tokens = (batch["image_grid_thw"].prod(dim=-1) // (merge * merge)).tolist()
    counts = (batch["input_ids"] == token_id).sum(dim=1).tolist()
    expected = [expected_image_tokens(processor, row.get("images") or []) for row in rows]
    problems = []
    if sum(counts) != sum(grid_tokens):
        problems.append(f"the batch's text holds {sum(counts)} image tokens but its image grid needs {sum(grid_tokens)}")
    wrong = [(i, c, e) for i, (c, e) in enumerate(zip(counts, expected)) if c != e]
    if wrong:
        i, c, e = wrong[0]
        problems.append(f"row {i} has {c} image tokens, the processor expects {e} for its image size "
                        f"({len(wrong)} rows differ)")
    return _row("image_tokens", not problems, "; ".join(problems) or
                f"{expected[0] if expected else 0} image tokens per row as expected", per_row=counts, expected=expected)


def check_prompt_parity(training_inputs: dict[str, Any], inference_inputs: dict[str, Any]) -> dict[str, Any]:
    """prompt_parity: the training prompt tokens (unsupervised, attended) and pixels equal inference's."""
    attended = training_inputs["attention_mask"][0].bool()
    if "labels" in training_inputs:
        attended &= training_inputs["labels"][0] == IGNORE_INDEX
    training = training_inputs["input_ids"][0][attended].tolist()
    inference = inference_inputs["input_ids"][0][inference_inputs["attention_mask"][0].bool()].tolist()
    problems = []
    if training != inference:
        problems.append(f"prompt tokens differ ({len(training)} in training, {len(inference)} at inference)")
    if "pixel_values" in inference_inputs and not torch.equal(training_inputs["pixel_values"],
                                                              inference_inputs["pixel_values"]):
        problems.append("pixel values differ")
    return _row("prompt_parity", not problems, "; ".join(problems) or
                f"same {len(inference)} prompt tokens and pixels in training and inference", prompt_tokens=len(inference))


def check_rollout_adapter(model: Any, settings: TrainingParams, inputs: dict[str, Any] | None) -> dict[str, Any]:
    """rollout_adapter: the generating model has an active LoRA adapter that changes its logits."""
    if settings.finetune_mode != "lora":
        return _row("rollout_adapter", None, f"finetune_mode {settings.finetune_mode}: no adapter to carry")
    if getattr(settings, "rollout_engine", "eager") == "vllm":
        return _row("rollout_adapter", None, "vLLM holds its own weights (TRL syncs them each step): not checked here")
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if not layers:
        return _row("rollout_adapter", False, "the rollout model has no LoRA layer: it generates with the base weights")
    inactive = sum(bool(m.disable_adapters) or not m.active_adapters for m in layers)
    if inactive:
        return _row("rollout_adapter", False, f"{inactive} of {len(layers)} LoRA layers are disabled in the rollout model",
                    lora_layers=len(layers))
    fresh = all(float(p.detach().abs().max()) == 0 for n, p in model.named_parameters() if "lora_B" in n)
    if fresh or inputs is None:
        return _row("rollout_adapter", True, f"{len(layers)} active LoRA layers; a fresh adapter (lora_B = 0) leaves "
                    "the logits unchanged at step 0" if fresh else f"{len(layers)} active LoRA layers", lora_layers=len(layers))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        with_adapter = model(**inputs).logits.float()
        with model.disable_adapter():
            without = model(**inputs).logits.float()
    model.train(was_training)
    difference = float((with_adapter - without).abs().max())
    return _row("rollout_adapter", difference > 1e-6,
                f"logits move by up to {difference:.3g} when the adapter is disabled" if difference > 1e-6 else
                "the logits do not change when the adapter is disabled: the rollouts ignore it",
                lora_layers=len(layers), max_logit_difference=difference)


def raise_on_failure(report: list[dict[str, Any]]) -> None:
    """GuardFailed naming every failed guard and why."""
    failed = [row for row in report if row["status"] == "fail"]
    if failed:
        raise GuardFailed("; ".join(f"guard {row['guard']} failed: {row['detail']}" for row in failed))


def report_table(report: list[dict[str, Any]]):
    """The report as a DataFrame: guard, status, detail."""
    import pandas as pd

    return pd.DataFrame([{k: row[k] for k in ("guard", "status", "detail")} for row in report])
