"""A resumed full fine-tune gets its checkpoint's weights back although they are saved under other names."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText

from medlib.models.tiny import build_tiny_model
from medlib.training.resume_weights import restore_renamed_weights


def test_weights_saved_under_original_names_are_restored(tmp_path: Path) -> None:
    base = build_tiny_model(tmp_path / "base")
    trained = AutoModelForImageTextToText.from_pretrained(base)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.25)
    trained.save_pretrained(tmp_path / "checkpoint-4")  # `visual.*`, `model.layers.*` on disk
    resumed = AutoModelForImageTextToText.from_pretrained(base)
    # What Trainer._load_from_checkpoint does: nothing matches, nothing is loaded (transformers#43701).
    from safetensors.torch import load_file

    result = resumed.load_state_dict(load_file(tmp_path / "checkpoint-4" / "model.safetensors"), strict=False)
    assert result.missing_keys and result.unexpected_keys
    assert restore_renamed_weights(resumed, tmp_path / "checkpoint-4") > 0
    expected = trained.state_dict()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in resumed.state_dict().items())
    # Names that already match: the Trainer loaded them, nothing to do.
    assert restore_renamed_weights(resumed, tmp_path / "nothing-here") == 0
