"""Decoding scans: any JPEG/PNG mode -> grayscale -> padded square -> resized -> [0, 1] floats.

:func:`decode_scan` works on one file's bytes (plain Pillow + numpy); :func:`decode_batches` is its
vectorised form for ``DataFrame.mapInPandas`` (Arrow batches in, Arrow batches out, no row UDF).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
from PIL import Image, ImageFile

from batchml.tumor import schema as S

# Background of padding and of transparent pixels: MRI slices are black around the head.
BACKGROUND = 0


class DecodeError(ValueError):
    """The bytes are not a decodable image."""


@dataclass
class Scan:
    """A decoded scan and what the file was."""

    pixels: np.ndarray  # float32 (size, size) in [0, 1]
    width: int
    height: int
    mode: str
    format: str


def to_gray(img: Image.Image) -> np.ndarray:
    """8-bit grayscale array of any Pillow image; transparent pixels become black.

    Palette images are expanded through their palette, 16-bit and float images are scaled to 0..255,
    RGB uses ITU-R 601-2 luma (Pillow's ``convert("L")``).
    """
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        return np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
        black = Image.new("RGBA", img.size, (BACKGROUND, BACKGROUND, BACKGROUND, 255))
        img = Image.alpha_composite(black, img)
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8)


def pad_square(gray: np.ndarray) -> np.ndarray:
    """Pad a 2-D array with :data:`BACKGROUND` to a centred square (the odd pixel goes right/bottom)."""
    h, w = gray.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    out = np.full((side, side), BACKGROUND, dtype=gray.dtype)
    out[top:top + h, left:left + w] = gray
    return out


def resize(gray: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (anti-aliased when shrinking) resize of an 8-bit square to ``size`` x ``size``."""
    if gray.shape == (size, size):
        return gray
    return np.asarray(Image.fromarray(gray, mode="L").resize((size, size), Image.BILINEAR), dtype=np.uint8)


def decode_scan(data: bytes, size: int) -> Scan:
    """Decode one JPEG/PNG (any mode) into a ``size`` x ``size`` float32 array in [0, 1].

    Raises
    ------
    DecodeError
        Empty, truncated or unidentifiable bytes.
    """
    if not data:
        raise DecodeError("empty file")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            fmt = img.format or "unknown"
            width, height, mode = img.width, img.height, img.mode
            gray = to_gray(img)
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as exc:
        raise DecodeError(f"undecodable image: {exc}") from None
    if width < 1 or height < 1:
        raise DecodeError("image has no pixels")
    pixels = resize(pad_square(gray), size).astype(np.float32) / 255.0
    return Scan(pixels=pixels, width=width, height=height, mode=mode, format=fmt)


def decode_batches(size: int, raw_max_chars: int = 200):
    """A ``mapInPandas`` function: ``content`` bytes (plus pass-through columns) -> decoded scans.

    Output columns: the input columns except ``content``, then ``orig_width, orig_height,
    orig_mode, orig_format, size, pixels`` (null on failure), ``error`` (null on success) and ``raw``
    (a short description of a failed file: length and first bytes).
    """
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            widths, heights, modes, formats, pixels, errors, raws = [], [], [], [], [], [], []
            for data in pdf["content"]:
                data = bytes(data) if data is not None else b""
                try:
                    scan = decode_scan(data, size)
                except DecodeError as exc:
                    widths.append(None), heights.append(None), modes.append(None)
                    formats.append(None), pixels.append(None), errors.append(str(exc)[:raw_max_chars])
                    raws.append(f"{exc} | {len(data)} bytes: {data[:24]!r}"[:raw_max_chars])
                    continue
                widths.append(scan.width), heights.append(scan.height), modes.append(scan.mode)
                formats.append(scan.format), pixels.append(scan.pixels.reshape(-1))
                errors.append(None), raws.append(None)
            out = pdf.drop(columns=["content"])
            out[S.WIDTH_COL] = pd.array(widths, dtype="Int32")
            out[S.HEIGHT_COL] = pd.array(heights, dtype="Int32")
            out[S.MODE_COL] = modes
            out[S.FORMAT_COL] = formats
            out[S.SIZE_COL] = pd.array([size if e is None else None for e in errors], dtype="Int32")
            out[S.PIXELS_COL] = pixels
            out[S.ERROR_COL] = errors
            out["raw"] = raws
            yield out
    return run


def pixels_array(values, size: int) -> np.ndarray:
    """Stack a sequence of flat pixel arrays into float32 ``(n, size, size, 1)``."""
    if len(values) == 0:
        return np.zeros((0, size, size, 1), np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in values]).reshape(-1, size, size, 1)
