"""Build a tiny, random-init Qwen-VL-architecture checkpoint (model, tokenizer, processor) offline."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from medlib.data.processing import build_processor

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
MARKER_FILE = "medlib_tiny.json"  # written last: its presence means the folder is complete
# Reasoning tags are ordinary (non-special) added tokens, as in Qwen3: they survive
# skip_special_tokens=True decoding and cost one token each.
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

# Qwen-style chat template; {% generation %} marks the assistant turn for assistant-only loss.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<|im_end|>{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<|im_end|>{{ '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant{{ '\\n' }}{%- endif -%}"
)

# Words the tokenizer should know whole: roles, the synthetic data's vocabulary and common
# radiology words, so prompts stay short (tens of tokens) on the tiny model.
TOKENIZER_CORPUS = """
system user assistant You are a helpful medical imaging assistant.
Is there a lesion in this image? Answer yes or no. yes no
How many lesions are visible? Answer with a number. 0 1 2 3 4 5 6 7 8 9 10
Which side of the image is the lesion on? A) left B) right C) both A B C D E
Think briefly inside think tags, then give only the final answer inside answer tags.
I look for bright round spots on the darker background. Bright round spots are lesions.
I count the bright round spots. I compare the left half with the right half.
Findings: Impression: The lungs are clear. No pleural effusion or pneumothorax.
There is a small nodule in the right upper lobe. Heart size is normal. Mild cardiomegaly.
CT MRI X-ray ultrasound pathology dermoscopy fundus endoscopy mammography chest abdomen brain
lesion lesions nodule mass tumor cyst fracture opacity consolidation edema effusion atelectasis
left right upper lower middle lobe both neither present absent normal abnormal benign malignant
"""


def _train_tokenizer(vocab_size: int):
    """Train a byte-level BPE with Qwen's special tokens and wrap it as a Qwen2 tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in TOKENIZER_CORPUS.splitlines() if line.strip()]
    bpe.train_from_iterator(lines * 4, trainer=trainer)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=bpe,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )
    tokenizer.add_tokens(TAG_TOKENS)
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_config(arch: str, tokenizer, *, hidden_size: int = 128, num_layers: int = 2,
                vision_hidden_size: int = 64, vision_depth: int = 2, rope_theta: float = 10000.0):
    """Return a small random-init config of the given Qwen-VL architecture."""
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    head_dim = 32
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": num_layers,
        "num_attention_heads": hidden_size // head_dim,
        "num_key_value_heads": max(1, hidden_size // head_dim // 2),
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {
        "depth": vision_depth,
        "hidden_size": vision_hidden_size,
        "intermediate_size": vision_hidden_size * 2,
        "num_heads": 2,
        "out_hidden_size": hidden_size,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    token_ids = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": True,
    }
    # M-RoPE splits head_dim/2 frequencies into (temporal, height, width) sections.
    mrope = {"rope_type": "default", "rope_theta": rope_theta, "mrope_section": [4, 6, 6]}
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        vision.update(patch_size=14, window_size=112, fullatt_block_indexes=[vision_depth - 1])
        return Qwen2_5_VLConfig(text_config={**text, "rope_parameters": mrope},
                                vision_config=vision, **token_ids)
    if arch == "qwen2_vl":
        from transformers import Qwen2VLConfig

        vision = {"depth": vision_depth, "embed_dim": vision_hidden_size, "hidden_size": hidden_size,
                  "mlp_ratio": 2, "num_heads": 2, "patch_size": 14, "spatial_merge_size": 2,
                  "temporal_patch_size": 2}
        return Qwen2VLConfig(text_config={**text, "rope_parameters": mrope},
                             vision_config=vision, **token_ids)
    if arch == "qwen3_vl":
        from transformers import Qwen3VLConfig

        mrope3 = {"rope_type": "default", "rope_theta": rope_theta, "mrope_section": [4, 6, 6],
                  "mrope_interleaved": True}
        vision.update(patch_size=16, num_position_embeddings=64, deepstack_visual_indexes=[0])
        return Qwen3VLConfig(text_config={**text, "head_dim": head_dim, "rope_parameters": mrope3},
                             vision_config=vision, **token_ids)
    raise ValueError(f"unknown tiny architecture {arch!r}; choose qwen2_5_vl, qwen2_vl or qwen3_vl")


# Published Qwen2.5-VL-Instruct config values: random-init models of these shapes let throughput be
# measured offline (only the shapes matter; the offline tokenizer's ids fit inside the vocabularies).
_QWEN25_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "patch_size": 14,
                  "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
                  "fullatt_block_indexes": [7, 15, 23, 31], "hidden_act": "silu"}
SHAPES: dict[str, dict] = {
    "3b": {"text": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                    "num_attention_heads": 16, "num_key_value_heads": 2, "tie_word_embeddings": True},
           "vision": {**_QWEN25_VISION, "out_hidden_size": 2048}},
    "7b": {"text": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                    "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False},
           "vision": {**_QWEN25_VISION, "out_hidden_size": 3584}},
}


def shaped_config(shape: str, tokenizer):
    """A Qwen2.5-VL config with the layer sizes of a published checkpoint (`3b` or `7b`), for benchmarks."""
    from transformers import Qwen2_5_VLConfig

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose {', '.join(SHAPES)}")
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    text = {**SHAPES[shape]["text"], "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}}
    return Qwen2_5_VLConfig(text_config=text, vision_config=SHAPES[shape]["vision"],
                            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                            tie_word_embeddings=text["tie_word_embeddings"])


def build_tiny_model(out_dir: str | Path, arch: str = "qwen2_5_vl", *, image_size: int = 112,
                     seed: int = 0, vocab_size: int = 640, shape: str = "tiny", **config_kwargs) -> Path:
    """Build and save a random-init checkpoint folder loadable like a hub checkpoint.

    `shape="tiny"` (default) is the 0.6 M-parameter model of the embedded default; `3b`/`7b` give a
    Qwen2.5-VL of that published size in bf16, for throughput benchmarks on a GPU.
    """
    from transformers import AutoModelForImageTextToText

    out_dir = Path(out_dir)
    tokenizer = _train_tokenizer(vocab_size)
    if shape != "tiny" and arch != "qwen2_5_vl":
        raise ValueError(f"shape {shape!r} is defined for qwen2_5_vl only, not {arch!r}")
    config = tiny_config(arch, tokenizer, **config_kwargs) if shape == "tiny" else shaped_config(shape, tokenizer)
    torch.manual_seed(seed)
    dtype = torch.float32 if shape == "tiny" else torch.bfloat16
    model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = [config.text_config.eos_token_id]
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.do_sample = False
    patch = 16 if arch == "qwen3_vl" else 14
    processor = build_processor(tokenizer, arch, patch_size=patch, pixels=image_size * image_size)
    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    if tmp_dir.exists():
        import shutil

        shutil.rmtree(tmp_dir)
    model.save_pretrained(tmp_dir)
    processor.save_pretrained(tmp_dir)
    (tmp_dir / MARKER_FILE).write_text(json.dumps(
        {"arch": arch, "shape": shape, "image_size": image_size, "seed": seed,
         "parameters": sum(p.numel() for p in model.parameters())}, indent=2))
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp_dir.rename(out_dir)
    return out_dir


def ensure_tiny_model(out_dir: str | Path, arch: str = "qwen2_5_vl", **kwargs) -> Path:
    """Build the tiny checkpoint unless a complete one with the same arch, image size and seed exists."""
    out_dir = Path(out_dir)
    marker = out_dir / MARKER_FILE
    wanted = {"arch": arch, "image_size": kwargs.get("image_size", 112), "seed": kwargs.get("seed", 0)}
    if marker.exists() and all(json.loads(marker.read_text()).get(k) == v for k, v in wanted.items()):
        return out_dir
    return build_tiny_model(out_dir, arch, **kwargs)
