"""Resuming a full fine-tune restores the checkpoint's weights even when their saved names differ.

transformers saves Qwen-VL checkpoints under the original key names (`visual.*`, `model.layers.*`) but
`Trainer._load_from_checkpoint` loads them into the renamed model (`model.visual.*`,
`model.language_model.*`) with `load_state_dict(strict=False)`: nothing matches, only a warning is
logged, and training "resumes" with the optimizer state of step N on the weights of step 0
(huggingface/transformers#43701, open for transformers 5.23). medlib renames the keys back with
the model's own conversion mapping after the Trainer's load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


def weight_files(checkpoint: Path) -> list[Path]:
    """The safetensors files of a full-model checkpoint (one file or the shards of an index)."""
    if (checkpoint / WEIGHTS).exists():
        return [checkpoint / WEIGHTS]
    index = checkpoint / WEIGHTS_INDEX
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [checkpoint / shard for shard in shards]
    return []


def restore_renamed_weights(model: Any, checkpoint: str | Path) -> int:
    """Load a full checkpoint's tensors saved under other names into `model`; the number of tensors loaded.

    A no-op (0) for adapters and for checkpoints whose names already match (the Trainer loaded those).
    """
    from safetensors import safe_open

    files = weight_files(Path(checkpoint))
    if not files or hasattr(model, "peft_config"):
        return 0
    own = model.state_dict()
    saved = set()
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            saved.update(handle.keys())
    if saved <= set(own):
        return 0
    from transformers.core_model_loading import revert_weight_conversion

    # The model's own reverse mapping renames each runtime tensor to the name it is saved under.
    runtime_of = {id(tensor): key for key, tensor in own.items()}
    saved_to_runtime = {name: runtime_of.get(id(tensor)) for name, tensor in revert_weight_conversion(model, own).items()}
    state = {}
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for name in handle.keys():
                target = saved_to_runtime.get(name)
                if target is not None:
                    state[target] = handle.get_tensor(name)
    if not state:
        raise RuntimeError(f"{checkpoint}: none of its {len(saved)} saved weights maps onto the model; cannot resume")
    model.load_state_dict(state, strict=False)
    return len(state)


def install() -> None:
    """Make `Trainer._load_from_checkpoint` restore renamed weights too (once per process)."""
    from transformers import Trainer

    if getattr(Trainer, "_medlib_restores_renamed_weights", False):
        return
    original = Trainer._load_from_checkpoint

    def load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        original(self, resume_from_checkpoint, model)
        loaded = restore_renamed_weights(model if model is not None else self.model, resume_from_checkpoint)
        if loaded:
            print(f"[medlib] resume: restored {loaded} weights saved under their original names "
                  "(transformers#43701)", flush=True)

    Trainer._load_from_checkpoint = load_from_checkpoint
    Trainer._medlib_restores_renamed_weights = True
