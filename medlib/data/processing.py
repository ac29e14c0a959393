"""Qwen-VL processors with or without torchvision, and the one image preprocessing path."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from PIL import Image, ImageOps


def torchvision_usable() -> bool:
    """Return whether torchvision imports and its compiled operators load."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
        from torchvision.ops import nms  # noqa: F401
    except Exception:  # a CUDA wheel beside a CPU torch fails at import or operator lookup
        return False
    return True


def _video_free_class(parent: type) -> type:
    """Subclass a Qwen-VL processor so it builds without a video processor (needs no torchvision)."""

    # transformers derives a processor's parts from its __init__ signature: leave video out.
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        kwargs.pop("video_processor", None)
        parent.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
        self.video_processor = None

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return [image_processor, tokenizer]

    # Keep the parent's name so saved processor_config.json files stay loadable by AutoProcessor.
    return type(parent.__name__, (parent,), {
        "__init__": __init__,
        "_get_arguments_from_pretrained": _get_arguments_from_pretrained,
        "__module__": __name__,
    })


def _processor_class_name(model_dir: Path) -> str:
    """Read the processor class a checkpoint folder declares."""
    import json

    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        path = model_dir / name
        if path.exists():
            declared = json.loads(path.read_text()).get("processor_class")
            if declared:
                return declared
    raise FileNotFoundError(f"{model_dir}: no processor_class in processor/preprocessor/tokenizer config")


PROCESSOR_CLASSES = {
    "qwen2_vl": ("Qwen2VLProcessor", "Qwen2VLVideoProcessor"),
    "qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor"),
    "qwen3_vl": ("Qwen3VLProcessor", "Qwen3VLVideoProcessor"),
}


def build_processor(tokenizer, arch: str = "qwen2_5_vl", *, patch_size: int = 14, pixels: int = 112 * 112):
    """Build the architecture's processor around a tokenizer, with a fixed pixel budget."""
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    processor_name, video_name = PROCESSOR_CLASSES[arch]
    parent = getattr(transformers, processor_name)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels, patch_size=patch_size)
    if torchvision_usable():
        video_processor = getattr(transformers, video_name)(patch_size=patch_size)
        return parent(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                      chat_template=tokenizer.chat_template)
    cls = _video_free_class(parent)
    return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def load_processor(model_id: str, *, min_pixels: int | None = None, max_pixels: int | None = None):
    """Load a checkpoint's processor (hub id or folder), falling back to a video-free one without torchvision."""
    from transformers import AutoProcessor

    if torchvision_usable() or not Path(model_id).is_dir():
        processor = AutoProcessor.from_pretrained(model_id)
    else:
        import transformers

        parent = getattr(transformers, _processor_class_name(Path(model_id)))
        processor = _video_free_class(parent).from_pretrained(model_id)
    if min_pixels is not None or max_pixels is not None:
        size = dict(processor.image_processor.size)
        size["shortest_edge"] = min_pixels or size.get("shortest_edge")
        size["longest_edge"] = max_pixels or size.get("longest_edge")
        processor.image_processor.size = size
    processor.tokenizer.padding_side = "left"
    return processor


def open_image(path: str | Path, *, frame: int | None = None) -> Image.Image:
    """An image file's pixels as stored, upright: EXIF orientation applied; DICOM through its VOI LUT/window.

    Every place medlib looks at pixels goes through here, so training, inference and plots see the same
    picture as `datasets` and transformers' `load_image` (both apply EXIF orientation). `frame` picks the
    frame of a multi-frame DICOM file (default: the first).
    """
    from medlib.data.dicom import is_dicom, read_dicom

    if is_dicom(path):
        return read_dicom(path, frame or 0)[0]
    with Image.open(path) as raw:
        image = ImageOps.exif_transpose(raw)  # a loaded, upright copy without the orientation tag
        image.load()
    return image


def image_header(path: str | Path) -> tuple[int, int, str]:
    """(width, height, mode) as the image is shown (EXIF rotation counted; DICOM as its 8-bit rendering),
    reading only the header where the format allows."""
    from medlib.data.dicom import is_dicom

    if is_dicom(path):
        image = open_image(path)
        return image.width, image.height, image.mode
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(0x0112) in (5, 6, 7, 8):  # orientations that turn the picture by 90°
            width, height = height, width
        return width, height, image.mode


def load_image(path: str | Path, image_size: int | None = None, *, min_pixels: int | None = None,
               max_pixels: int | None = None, frame: int | None = None) -> Image.Image:
    """Open an image as 8-bit RGB (16-bit, float, grey, palette, CMYK, DICOM alike), upright, resized square
    or into a pixel range."""
    image = open_image(path, frame=frame)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        span = max(array.max() - array.min(), 1.0)
        image = Image.fromarray(((array - array.min()) / span * 255).astype("uint8"))
    image = image.convert("RGB")
    if image_size:
        image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
    elif min_pixels or max_pixels:
        area = image.width * image.height
        target = min(max(area, min_pixels or 0), max_pixels or float("inf"))
        if target != area:
            scale = (target / area) ** 0.5
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BICUBIC)
    image.load()
    return image
