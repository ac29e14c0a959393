"""Reuse a frozen vision tower's per-image features instead of recomputing them.

With LoRA on the language model only, the vision tower's output for an image never changes, yet
training recomputes it every time the image comes back: every epoch in SFT, and in GRPO for each
of the `num_generations` copies of a prompt in every pass (generation, old log-probs, loss).
`attach_vision_cache` wraps the Qwen-VL model's `get_image_features` so each distinct image is
encoded once and its features are served from memory afterwards. It steps aside by itself (and empties
itself) while any vision parameter is trainable (full fine-tuning, LoRA on vision layers), so it
never serves stale features; also when the call asks for more than the features (hidden states,
attentions) and when the tower is sharded (ZeRO-3, FSDP2), where ranks must run it in step.

Images are told apart by a fingerprint computed where the pixels already are: a position-weighted
random projection of the image's patches (float64), plus its patch grid. The patches are first cast
to the vision tower's dtype, as the tower itself does: Unsloth casts `pixel_values` to bf16 in
`generate` but not in GRPO's log-prob and loss passes, and both must find the same entry.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

PROJECTIONS = 4  # independent random projections per fingerprint
OUTPUT_REQUESTS = ("output_hidden_states", "output_attentions")  # outputs the cache cannot serve


@dataclass
class VisionFeatureCache:
    """Per-image vision features (pooled, plus Qwen3-VL's deepstack levels), least recently used evicted."""

    max_gib: float = 8.0
    storage: str = "device"  # device: keep on the model's device; cpu: keep in host memory
    hits: int = 0
    misses: int = 0
    bypassed_calls: int = 0
    entries: OrderedDict = field(default_factory=OrderedDict)
    stored_bytes: int = 0

    def get(self, key: tuple) -> list[torch.Tensor] | None:
        """Features of one image, or None."""
        tensors = self.entries.get(key)
        if tensors is not None:
            self.entries.move_to_end(key)
        return tensors

    def put(self, key: tuple, tensors: list[torch.Tensor]) -> None:
        """Store one image's features, evicting the oldest entries beyond max_gib."""
        if key in self.entries:
            return
        # Copies, not views: a view would keep the whole batch's output tensor alive.
        kept = [t.detach().to("cpu", copy=True) if self.storage == "cpu" else t.detach().clone() for t in tensors]
        self.entries[key] = kept
        self.stored_bytes += sum(t.numel() * t.element_size() for t in kept)
        while self.stored_bytes > self.max_gib * 2**30 and len(self.entries) > 1:
            _, dropped = self.entries.popitem(last=False)
            self.stored_bytes -= sum(t.numel() * t.element_size() for t in dropped)

    def clear(self) -> None:
        """Drop every stored entry."""
        self.entries.clear()
        self.stored_bytes = 0

    def stats(self) -> dict[str, Any]:
        """Hit/miss counts and memory, for logs and summaries."""
        lookups = self.hits + self.misses
        return {"images": len(self.entries), "hits": self.hits, "misses": self.misses,
                "hit_rate": self.hits / lookups if lookups else None, "bypassed_calls": self.bypassed_calls,
                "stored_gib": self.stored_bytes / 2**30}


def _vision_owner(model: Any) -> Any:
    """The submodule that owns the vision tower and whose forward calls its own get_image_features."""
    owners = [m for m in model.modules() if hasattr(m, "visual") and callable(getattr(m, "get_image_features", None))]
    inner = [m for m in owners if any(child is m.visual for child in m.children())]
    if not inner:
        raise ValueError(f"{type(model).__name__}: no Qwen-VL vision tower (`visual`) found to cache")
    return inner[0]


_PROBES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _probe(width: int, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random projection (width × PROJECTIONS) and per-position weights (count) for fingerprints."""
    key = (width, count, str(device))
    if key not in _PROBES:
        generator = torch.Generator().manual_seed(width * 100_003 + count)
        projection = torch.randn(width, PROJECTIONS, generator=generator, dtype=torch.float64)
        weights = torch.randn(count, generator=generator, dtype=torch.float64)
        _PROBES[key] = (projection.to(device), weights.to(device))
    return _PROBES[key]


def tower_dtype(visual: Any) -> torch.dtype:
    """The floating dtype the vision tower computes in (its first floating parameter; quantised ones skipped)."""
    for parameter in visual.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def _fingerprints(pixel_values: torch.Tensor, grid_thw: torch.Tensor, dtype: torch.dtype | None = None) -> list[tuple]:
    """One key per image: its grid and a position-weighted random projection of its patches (cast to `dtype`)."""
    if dtype is not None:
        pixel_values = pixel_values.to(dtype)  # the values the tower sees, whatever dtype the caller passed
    counts = grid_thw.prod(-1).tolist()
    keys = []
    for patches, count, grid in zip(torch.split(pixel_values, counts), counts, grid_thw.tolist(), strict=True):
        projection, weights = _probe(pixel_values.shape[-1], count, pixel_values.device)
        signature = weights @ (patches.to(torch.float64) @ projection)
        keys.append((tuple(grid), *signature.tolist()))
    return keys


def _per_image(output: Any) -> list[list[torch.Tensor]]:
    """Split an output of get_image_features into each image's tensors: pooled, then deepstack levels.

    Qwen3-VL's deepstack levels come split per image (newer transformers) or concatenated (5.17).
    """
    pooled = list(output.pooler_output)
    sizes = [tensor.shape[0] for tensor in pooled]
    levels = [list(level) if isinstance(level, (tuple, list)) else list(torch.split(level, sizes))
              for level in getattr(output, "deepstack_features", None) or []]
    return [[pooled[i], *(level[i] for level in levels)] for i in range(len(pooled))]


def _sharded(parameters: list[torch.nn.Parameter]) -> bool:
    """True under DeepSpeed ZeRO-3 or FSDP2: skipping the vision forward on one rank would stall the others."""
    return any(hasattr(p, "ds_id") or type(p).__name__ == "DTensor" or type(p.data).__name__ == "DTensor"
               for p in parameters)


def _fill_output(result: Any, images: list[list[torch.Tensor]], deepstack_split: bool) -> Any:
    """Put each image's tensors back into `result` in the layout the model's forward reads."""
    result.pooler_output = tuple(tensors[0] for tensors in images)
    if len(images[0]) > 1:  # Qwen3-VL: deepstack levels after the pooled features
        levels = [tuple(tensors[level] for tensors in images) for level in range(1, len(images[0]))]
        result.deepstack_features = levels if deepstack_split else [torch.cat(level) for level in levels]
    return result


def attach_vision_cache(model: Any, cache: VisionFeatureCache | None = None) -> VisionFeatureCache:
    """Serve the model's image features from `cache` while its vision tower is frozen; return the cache."""
    cache = cache or VisionFeatureCache()
    owner = _vision_owner(model)
    original = owner.get_image_features
    seen: dict[str, Any] = {}  # the model's own output class and deepstack layout, from its first call

    def cached_image_features(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None = None, **kwargs):
        parameters = list(owner.visual.parameters())
        trainable = any(p.requires_grad for p in parameters)
        extra = any(kwargs.get(name) for name in OUTPUT_REQUESTS)  # the cache holds the features only
        if image_grid_thw is None or trainable or extra or _sharded(parameters):
            cache.bypassed_calls += 1
            if trainable:  # features of these weights go stale: never serve them after a later re-freeze
                cache.clear()
            return original(pixel_values, image_grid_thw, **kwargs)
        keys = _fingerprints(pixel_values, image_grid_thw, tower_dtype(owner.visual))
        found = [cache.get(key) for key in keys]
        first_of: dict[tuple, int] = {}  # images to encode: the first occurrence of each missing key
        for index, tensors in enumerate(found):
            if tensors is None:
                first_of.setdefault(keys[index], index)
        cache.misses += len(first_of)
        cache.hits += len(keys) - len(first_of)
        output = None
        if first_of:
            missing = list(first_of.values())
            pieces = torch.split(pixel_values, image_grid_thw.prod(-1).tolist())
            output = original(torch.cat([pieces[i] for i in missing]), image_grid_thw[missing], **kwargs)
            for index, tensors in zip(missing, _per_image(output), strict=True):
                cache.put(keys[index], tensors)
                found[index] = tensors
            found = [tensors if tensors is not None else found[first_of[key]] for key, tensors in zip(keys, found)]
            levels = getattr(output, "deepstack_features", None) or [()]
            seen.update(type=type(output), deepstack_split=isinstance(levels[0], (tuple, list)))
        device = pixel_values.device
        images = [[t.to(device, non_blocking=True) for t in tensors] for tensors in found]
        result = output if output is not None else seen.get("type", BaseModelOutputWithPooling)()
        return _fill_output(result, images, seen.get("deepstack_split", True))

    owner.get_image_features = cached_image_features
    owner._medlib_vision_cache = cache
    return cache


def cache_for_training(model: Any, max_gib: float) -> VisionFeatureCache | None:
    """Attach a host-memory cache of `max_gib` when asked (> 0) and the model has a Qwen-VL vision tower.

    Host memory, so the cache never competes with training for accelerator memory; a hit costs one
    small host-to-device copy of the image's features.
    """
    if max_gib <= 0:
        return None
    try:
        return attach_vision_cache(model, VisionFeatureCache(max_gib=max_gib, storage="cpu"))
    except ValueError as error:  # another architecture: train without the cache rather than fail
        print(f"[medlib] vision feature cache off: {error}", flush=True)
        return None


def detach_vision_cache(model: Any) -> None:
    """Restore the model's own get_image_features."""
    owner = _vision_owner(model)
    if "get_image_features" in vars(owner):
        del owner.get_image_features
    vars(owner).pop("_medlib_vision_cache", None)
