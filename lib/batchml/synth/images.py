"""MRI-like phantoms in the Br35H layout (``yes/`` tumor, ``no/`` none), with the quirks of real
collections: JPEG and PNG, upper- and lower-case extensions, spaces in names, grayscale / RGB / RGBA /
palette images of varied sizes, byte-identical duplicates within a class, and broken files.

    python -m batchml.synth.images OUT --n 200 [--min-size 64 --max-size 160 --seed 42]

What was written is saved in ``OUT/_truth.json`` (hidden from Spark's file listing by its ``_``).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

LOG = logging.getLogger("batchml.synth")

TRUTH_FILE = "_truth.json"
CLASS_DIRS = {1: "yes", 0: "no"}
# (mode, format, extension) cycled over the files of a class
VARIANTS = [("L", "JPEG", ".jpg"), ("RGB", "JPEG", ".JPG"), ("RGB", "PNG", ".png"),
            ("RGBA", "PNG", ".PNG"), ("P", "PNG", ".png"), ("L", "PNG", ".png"),
            ("RGB", "JPEG", ".jpeg"), ("LA", "PNG", ".png")]


@dataclass
class PhantomSet:
    """What :func:`write_phantoms` wrote."""

    path: str
    files: int = 0
    images: dict = field(default_factory=dict)        # label -> distinct decodable images
    duplicates: dict = field(default_factory=dict)    # label -> extra byte-identical copies
    broken: list = field(default_factory=list)        # relative paths of undecodable files
    modes: dict = field(default_factory=dict)
    sizes: list = field(default_factory=list)         # (width, height) per distinct image


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    small = rng.normal(size=(max(2, h // scale), max(2, w // scale))).astype(np.float32)
    img = Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def phantom(rng: np.random.Generator, height: int, width: int, tumor: bool) -> np.ndarray:
    """One grayscale MRI-like slice in [0, 1]: a head ellipse with a bright skull ring, textured
    brain, dark ventricles, noise; with ``tumor`` a bright irregular blob inside the brain."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy = height / 2 + rng.uniform(-0.05, 0.05) * height
    cx = width / 2 + rng.uniform(-0.05, 0.05) * width
    ry = 0.40 * height * rng.uniform(0.85, 1.0)
    rx = 0.40 * width * rng.uniform(0.75, 0.95)
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    img = np.zeros((height, width), np.float32)
    brain = r < 0.92
    img[brain] = 0.35 + 0.08 * _smooth_noise(rng, height, width, 6)[brain]
    img[(r >= 0.92) & (r < 1.0)] = 0.75
    for side in (-1, 1):  # ventricles
        vy, vx = cy + rng.uniform(-0.1, 0.05) * ry, cx + side * 0.15 * rx
        vr = np.sqrt(((yy - vy) / (0.22 * ry)) ** 2 + ((xx - vx) / (0.08 * rx)) ** 2)
        img[vr < 1] = 0.12
    if tumor:
        ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.55)
        ty, tx = cy + dist * ry * np.sin(ang), cx + dist * rx * np.cos(ang)
        base = rng.uniform(0.07, 0.14) * min(height, width)
        blob = np.zeros_like(img)
        for _ in range(int(rng.integers(3, 6))):
            oy, ox = rng.normal(scale=0.35 * base, size=2)
            s = base * rng.uniform(0.45, 0.8)
            blob += np.exp(-(((yy - ty - oy) ** 2 + (xx - tx - ox) ** 2) / (2 * s * s)))
        blob = np.clip(blob, 0, 1) * brain
        img = np.where(blob > 0.35, np.maximum(img, 0.6 + 0.35 * blob), img)
    img += rng.normal(scale=0.03, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


def encode(gray: np.ndarray, mode: str, fmt: str) -> bytes:
    """Encode a [0, 1] grayscale array as ``fmt`` (JPEG or PNG) in Pillow ``mode``."""
    img = Image.fromarray((gray * 255).round().astype(np.uint8), mode="L")
    if mode == "RGB":
        img = img.convert("RGB")
    elif mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(255)
    elif mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=64)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _name(label: int, i: int, ext: str) -> str:
    prefix = "y" if label == 1 else "no"
    return f"{prefix} {i} scan{ext}" if i % 5 == 3 else f"{prefix}{i}{ext}"


def write_phantoms(out: str | Path, n_per_class: int = 100, min_size: int = 64, max_size: int = 160,
                   seed: int = 42, duplicates: int = 3, broken: int = 2) -> PhantomSet:
    """Write ``n_per_class`` distinct phantoms per class under ``out/yes`` and ``out/no``, plus
    ``duplicates`` byte-identical copies and ``broken`` undecodable files per class.

    Parameters
    ----------
    out : path
        Directory to create (its class folders are emptied first).
    n_per_class : int
        Distinct, decodable images per class.
    min_size, max_size : int
        Range of the (independent) width and height in pixels.
    seed : int
        Everything is drawn from this seed.
    duplicates, broken : int
        Extra copies and broken files per class.

    Returns
    -------
    PhantomSet
        Counts and names of what was written (also saved as ``out/_truth.json``).
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    result = PhantomSet(path=str(out))
    for label, folder in CLASS_DIRS.items():
        d = out / folder
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            if old.is_file():
                old.unlink()
        written: list[tuple[str, bytes]] = []
        for i in range(n_per_class):
            h, w = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
            mode, fmt, ext = VARIANTS[(i + label) % len(VARIANTS)]
            data = encode(phantom(rng, h, w, tumor=bool(label)), mode, fmt)
            name = _name(label, i, ext)
            (d / name).write_bytes(data)
            written.append((name, data))
            result.modes[mode] = result.modes.get(mode, 0) + 1
            result.sizes.append((w, h))
        for k in range(duplicates):
            name, data = written[int(rng.integers(len(written)))]
            copy = f"{Path(name).stem} copy {k}{Path(name).suffix}"
            (d / copy).write_bytes(data)
        for k in range(broken):
            name = f"{folder} broken {k}.jpg" if k % 2 == 0 else f"{folder}_broken_{k}.PNG"
            data = written[k][1][: max(40, len(written[k][1]) // 6)] if k % 2 == 0 \
                else f"{folder}/{k}: this is not an image\n".encode() * (k + 1)
            (d / name).write_bytes(data)
            result.broken.append(f"{folder}/{name}")
        result.images[label] = n_per_class
        result.duplicates[label] = duplicates
    result.files = sum(result.images.values()) + sum(result.duplicates.values()) + len(result.broken)
    (out / TRUTH_FILE).write_text(json.dumps(asdict(result), indent=2))
    LOG.info("wrote %d phantom files under %s", result.files, out)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write MRI-like phantom images in the Br35H layout.")
    p.add_argument("out", help="output directory (yes/ and no/ are created)")
    p.add_argument("--n", type=int, default=200, help="distinct images per class")
    p.add_argument("--min-size", type=int, default=64)
    p.add_argument("--max-size", type=int, default=160)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--duplicates", type=int, default=3, help="byte-identical copies per class")
    p.add_argument("--broken", type=int, default=2, help="undecodable files per class")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    write_phantoms(a.out, a.n, a.min_size, a.max_size, a.seed, a.duplicates, a.broken)
    return 0


if __name__ == "__main__":
    sys.exit(main())
