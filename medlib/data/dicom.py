"""DICOM files as 8-bit images (pydicom): modality LUT, VOI LUT or window, MONOCHROME1 inverted, one chosen frame.

The display pipeline follows DICOM PS3.3 C.11 (modality LUT → VOI LUT/window → presentation): a VOI LUT
sequence wins, else the first Window Center/Width with the standard linear formula (C.11.2.1.2.1), else the
frame's own min–max. Colour files (RGB, YBR converted by pydicom, palette colour) keep their colours.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SUFFIXES = (".dcm", ".dicom")


class DicomError(ValueError):
    """A DICOM file that gives no image; `kind` is the validation problem it is counted as."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def is_dicom(path: str | Path) -> bool:
    """True for a `.dcm`/`.dicom` name or a file with the `DICM` marker after its 128-byte preamble."""
    path = Path(path)
    if path.suffix.lower() in SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _read(path: Path):
    """The parsed dataset; a file that is not DICOM or is cut short raises DicomError."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, force=True)
    except (InvalidDicomError, EOFError) as error:
        raise DicomError("truncated_image" if isinstance(error, EOFError) else "unreadable_image", str(error)) from None
    except (OSError, ValueError, KeyError, AttributeError) as error:  # pydicom's parser failures on bad headers
        raise DicomError("unreadable_image", f"not a readable DICOM file: {error}") from None


def _spacing(ds: Any) -> list[float] | None:
    """Pixel spacing (row, column) in mm: PixelSpacing, ImagerPixelSpacing or the shared functional group."""
    for source in (ds, *_shared_measures(ds)):
        for name in ("PixelSpacing", "ImagerPixelSpacing"):
            value = source.get(name)
            if value:
                try:
                    return [float(v) for v in value][:2]
                except (TypeError, ValueError):
                    return None
    return None


def _shared_measures(ds: Any) -> list[Any]:
    """Pixel Measures items of an enhanced multi-frame file's shared functional groups."""
    groups = ds.get("SharedFunctionalGroupsSequence") or []
    return [m for group in groups for m in (group.get("PixelMeasuresSequence") or [])]


def _first_value(value: Any) -> float:
    """A DICOM number, or the first of a multi-valued one."""
    return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)


def _window(ds: Any) -> tuple[float, float] | None:
    """The first Window Center/Width pair, or None."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        center, width = _first_value(center), _first_value(width)
    except (TypeError, ValueError, IndexError):
        return None
    return (center, width) if width >= 1 else None


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Values scaled linearly from [low, high] to 0–255."""
    span = max(high - low, 1e-12)
    return (np.clip((values - low) / span, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _grey(ds: Any, frame: np.ndarray) -> tuple[np.ndarray, list[float] | None]:
    """A monochrome frame through modality LUT and VOI LUT/window to 8 bits; the window used (or None)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(frame, ds).astype(np.float64)
    window = None
    if "VOILUTSequence" in ds:
        values = apply_voi_lut(values, ds).astype(np.float64)
        lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
        out = _to_uint8(values, float(lut.min()), float(lut.max()))
    elif (found := _window(ds)) is not None:
        center, width = found
        window = [center, width]
        # PS3.3 C.11.2.1.2.1: y = ((x − (c − 0.5)) / (w − 1) + 0.5) over the output range, clipped.
        scaled = (values - (center - 0.5)) / max(width - 1, 1e-12) + 0.5
        out = (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        out = _to_uint8(values, float(values.min()), float(values.max()))
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1: the lowest value is white
    return out, window


def read_dicom(path: str | Path, frame: int = 0) -> tuple[Image.Image, dict[str, Any]]:
    """One frame of a DICOM file as an 8-bit grey or RGB PIL image, plus its facts (spacing, frames, window)."""
    with warnings.catch_warnings():
        # pydicom warns on every tolerated deviation (bad VRs, padding); what it cannot read raises instead
        warnings.simplefilter("ignore")
        return _read_dicom(Path(path), frame)


def _read_dicom(path: Path, frame: int) -> tuple[Image.Image, dict[str, Any]]:
    """read_dicom without the warning filter."""
    from pydicom.pixels import apply_color_lut, pixel_array

    if not path.is_file():
        raise DicomError("missing_image", "file not found")
    ds = _read(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        kind = getattr(ds.get("SOPClassUID"), "name", None) or "this DICOM object"
        raise DicomError("dicom_no_image", f"{kind} holds no image (no Pixel Data)")
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        frames = 1
    if not 0 <= frame < frames:
        raise DicomError("dicom_frame", f"frame {frame} requested; the file has {frames} frame(s)")
    try:
        array = pixel_array(ds, index=frame if frames > 1 else None)
    except RuntimeError as error:
        message = " ".join(str(error).split())
        kind = "dicom_codec_missing" if "missing dependencies" in message else "unreadable_image"
        syntax = getattr(getattr(ds.get("file_meta"), "TransferSyntaxUID", None), "name", "its transfer syntax")
        raise DicomError(kind, f"cannot decode {syntax}: {message[:200]}") from None
    except (ValueError, AttributeError, KeyError, TypeError, NotImplementedError) as error:
        message = " ".join(str(error).split())
        kind = "truncated_image" if "less than expected" in message else "unreadable_image"
        raise DicomError(kind, message[:200]) from None
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    window = None
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(array, ds)
        image = Image.fromarray(_to_uint8(rgb.astype(np.float64), 0.0, float(np.iinfo(rgb.dtype).max)), "RGB")
    elif array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3]
        high = 255.0 if rgb.dtype == np.uint8 else float(2 ** int(ds.get("BitsStored") or 16) - 1)
        image = Image.fromarray(_to_uint8(rgb.astype(np.float64), 0.0, high), "RGB")
    elif array.ndim == 2:
        grey, window = _grey(ds, array)
        image = Image.fromarray(grey, "L")
    else:
        raise DicomError("unreadable_image", f"unexpected pixel array shape {array.shape}")
    facts = {"frame": frame, "frames": frames, "pixel_spacing": _spacing(ds),
             "modality": str(ds.get("Modality", "")), "photometric": photometric, "window": window}
    return image, facts
