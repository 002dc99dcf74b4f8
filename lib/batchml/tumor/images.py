"""Decoding scans: any JPEG/PNG mode -> grayscale -> cropped to the head -> padded square -> resized
-> [0, 1] floats, normalized per image.

Real scans come with black borders of any width: :func:`head_box` thresholds the image (a tenth of
its 99th percentile, at least :data:`MIN_HEAD_LEVEL`), keeps the largest connected component (the
head; specks and burnt-in labels are smaller) and returns its bounding box grown by a margin, so the
head fills the frame whatever the border.  :func:`normalize` maps the head's 1st..99th percentile
to 0..1 (scanners and sequences differ in brightness and contrast).

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
from scipy import ndimage

from batchml.config import TumorSettings
from batchml.tumor import schema as S
from batchml.tumor.near_duplicates import phash

# Background of padding and of transparent pixels: MRI slices are black around the head.
BACKGROUND = 0
# head mask: above max(MIN_HEAD_LEVEL, HEAD_FRACTION * 99th percentile) of the 8-bit image
MIN_HEAD_LEVEL = 10
HEAD_FRACTION = 0.1
NORMALIZE_PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class Preprocessing:
    """How a scan becomes pixels (plain: pad and resize only)."""

    size: int
    crop: bool = False
    crop_margin: float = 0.04
    normalize: bool = False

    @classmethod
    def from_settings(cls, s: TumorSettings) -> "Preprocessing":
        return cls(size=s.size, crop=s.crop, crop_margin=s.crop_margin, normalize=s.normalize)


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


def head_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest connected (8-neighbour) component above the head threshold
    (all False for a blank image)."""
    level = max(MIN_HEAD_LEVEL, HEAD_FRACTION * float(np.percentile(gray, 99)))
    labels, n = ndimage.label(gray > level, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(gray.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def head_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` (bottom/right exclusive) of ``mask``'s bounding box grown by
    ``margin`` x its longer side on every edge, clipped to the image; the whole image when empty."""
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return 0, h, 0, w
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = int(round(margin * max(bottom - top, right - left)))
    return max(0, top - m), min(h, bottom + m), max(0, left - m), min(w, right + m)


def normalize(pixels: np.ndarray, head_values: np.ndarray) -> np.ndarray:
    """Map the 1st..99th percentile of ``head_values`` (8-bit) to 0..1 in ``pixels`` (floats in
    [0, 1]), clipped; unchanged when the head is flat or empty."""
    if head_values.size == 0:
        return pixels
    lo, hi = (float(v) / 255.0 for v in np.percentile(head_values, NORMALIZE_PERCENTILES))
    if hi - lo < 1.0 / 255.0:
        return pixels
    return np.clip((pixels - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def preprocess(gray: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """8-bit grayscale -> ``size`` x ``size`` float32 in [0, 1]: crop, pad, resize, normalize."""
    mask = head_mask(gray) if (prep.crop or prep.normalize) else None
    if prep.crop:
        top, bottom, left, right = head_box(mask, prep.crop_margin)
        gray, mask = gray[top:bottom, left:right], mask[top:bottom, left:right]
    pixels = resize(pad_square(gray), prep.size).astype(np.float32) / 255.0
    return normalize(pixels, gray[mask]) if prep.normalize else pixels


def decode_scan(data: bytes, size: int | Preprocessing) -> Scan:
    """Decode one JPEG/PNG (any mode) into a ``size`` x ``size`` float32 array in [0, 1] (an int
    ``size``: plain pad and resize; a :class:`Preprocessing`: also crop and normalize as it says).

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
    prep = size if isinstance(size, Preprocessing) else Preprocessing(size=size)
    pixels = preprocess(gray, prep)
    return Scan(pixels=pixels, width=width, height=height, mode=mode, format=fmt)


def decode_batches(prep: Preprocessing, raw_max_chars: int = 200):
    """A ``mapInPandas`` function: ``content`` bytes (plus pass-through columns) -> decoded scans.

    Output columns: the input columns except ``content``, then ``orig_width, orig_height,
    orig_mode, orig_format, size, pixels, phash`` (null on failure), ``error`` (null on success) and
    ``raw`` (a short description of a failed file: length and first bytes).
    """
    size = prep.size

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            widths, heights, modes, formats, pixels, hashes, errors, raws = [], [], [], [], [], [], [], []
            for data in pdf["content"]:
                data = bytes(data) if data is not None else b""
                try:
                    scan = decode_scan(data, prep)
                except DecodeError as exc:
                    widths.append(None), heights.append(None), modes.append(None), hashes.append(None)
                    formats.append(None), pixels.append(None), errors.append(str(exc)[:raw_max_chars])
                    raws.append(f"{exc} | {len(data)} bytes: {data[:24]!r}"[:raw_max_chars])
                    continue
                widths.append(scan.width), heights.append(scan.height), modes.append(scan.mode)
                formats.append(scan.format), pixels.append(scan.pixels.reshape(-1))
                hashes.append(phash(scan.pixels)), errors.append(None), raws.append(None)
            out = pdf.drop(columns=["content"])
            out[S.WIDTH_COL] = pd.array(widths, dtype="Int32")
            out[S.HEIGHT_COL] = pd.array(heights, dtype="Int32")
            out[S.MODE_COL] = modes
            out[S.FORMAT_COL] = formats
            out[S.SIZE_COL] = pd.array([size if e is None else None for e in errors], dtype="Int32")
            out[S.PIXELS_COL] = pixels
            out[S.PHASH_COL] = pd.array(hashes, dtype="Int64")
            out[S.ERROR_COL] = errors
            out["raw"] = raws
            yield out
    return run


def pixels_array(values, size: int) -> np.ndarray:
    """Stack a sequence of flat pixel arrays into float32 ``(n, size, size, 1)``."""
    if len(values) == 0:
        return np.zeros((0, size, size, 1), np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in values]).reshape(-1, size, size, 1)
