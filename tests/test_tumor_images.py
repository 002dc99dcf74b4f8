"""Tumor images: decoding of every mode, pad/resize against a plain reference, the prepare job's
de-duplication, split, rejects and reconciled stats."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchml.config import build_config
from batchml.errors import InputError
from batchml.io.atomic import read_json
from batchml.schema import REJECTS, STATS_FILE
from batchml.synth.images import write_phantoms
from batchml.tumor import schema as S
from batchml.tumor.images import DecodeError, decode_scan
from batchml.tumor.prepare import class_labels, prepare_images, with_split


def _bytes(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _steps(h: int = 20, w: int = 20) -> np.ndarray:
    """A gray image with four flat levels (exact through a palette and lossless formats)."""
    a = np.zeros((h, w), np.uint8)
    a[: h // 2, : w // 2], a[: h // 2, w // 2:], a[h // 2:, : w // 2], a[h // 2:, w // 2:] = 10, 80, 160, 240
    return a


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "I;16"])
def test_decode_png_every_mode_gives_the_gray_levels(mode):
    gray = _steps()
    img = Image.fromarray(gray, "L")
    if mode == "I;16":
        img = Image.fromarray(gray.astype(np.uint16) * 257)  # 16-bit: 0..65535
    elif mode == "P":
        img = img.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=8)
    else:
        img = img.convert(mode)
    scan = decode_scan(_bytes(img, "PNG"), 20)
    assert scan.format == "PNG" and (scan.width, scan.height) == (20, 20)
    assert scan.pixels.shape == (20, 20) and scan.pixels.dtype == np.float32
    np.testing.assert_allclose(scan.pixels, gray / 255.0, atol=1.5 / 255)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_decode_jpeg(mode):
    gray = _steps(32, 32)
    scan = decode_scan(_bytes(Image.fromarray(gray, "L").convert(mode), "JPEG"), 32)
    assert scan.format == "JPEG" and scan.mode == mode
    assert np.abs(scan.pixels - gray / 255.0).mean() < 0.03  # lossy, but close


def test_transparent_pixels_become_black():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 255
    rgba[:, :5, 3] = 0  # left half transparent
    scan = decode_scan(_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), 10)
    np.testing.assert_allclose(scan.pixels[:, :5], 0.0)
    np.testing.assert_allclose(scan.pixels[:, 5:], 200 / 255.0, atol=1 / 255)


def test_pad_and_resize_match_a_plain_reference():
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, size=(37, 90), dtype=np.uint8)  # wide, odd padding
    scan = decode_scan(_bytes(Image.fromarray(gray, "L"), "PNG"), 48)
    # reference: zero-pad to 90x90 (26 rows above, 27 below), Pillow bilinear resize, /255
    padded = np.vstack([np.zeros((26, 90), np.uint8), gray, np.zeros((27, 90), np.uint8)])
    ref = np.asarray(Image.fromarray(padded, "L").resize((48, 48), Image.BILINEAR), np.float32) / 255
    np.testing.assert_allclose(scan.pixels, ref, atol=1e-6)
    assert scan.pixels.min() >= 0 and scan.pixels.max() <= 1
    tall = decode_scan(_bytes(Image.fromarray(gray.T.copy(), "L"), "PNG"), 48)
    np.testing.assert_allclose(tall.pixels, ref.T, atol=1.5 / 255)  # Pillow rounds per pass


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_undecodable_bytes_raise(data):
    with pytest.raises(DecodeError):
        decode_scan(data, 16)


def test_truncated_jpeg_raises():
    data = _bytes(Image.fromarray(_steps(64, 64), "L"), "JPEG")
    with pytest.raises(DecodeError):
        decode_scan(data[: len(data) // 3], 16)


def test_yaml_boolean_class_keys_map_back_to_folder_names():
    cfg = build_config({"tumor": {"classes": {True: 1, False: 0, "Tumour": 1}}})
    assert class_labels(cfg.tumor) == {"yes": 1, "no": 0, "tumour": 1}


def test_split_is_stratified_and_deterministic(spark):
    rows = [(f"p{i}", 0, f"h{i:03d}") for i in range(30)] + [(f"q{i}", 1, f"k{i:03d}") for i in range(10)]
    df = spark.createDataFrame(rows, f"{S.PATH_COL} string, {S.LABEL_COL} int, {S.HASH_COL} string")
    a = {r[S.HASH_COL]: r[S.SPLIT_COL] for r in with_split(df, 0.3, seed=7).collect()}
    b = {r[S.HASH_COL]: r[S.SPLIT_COL] for r in with_split(df.repartition(3), 0.3, seed=7).collect()}
    assert a == b
    assert sum(1 for h, s in a.items() if h.startswith("h") and s == S.TEST) == 9
    assert sum(1 for h, s in a.items() if h.startswith("k") and s == S.TEST) == 3


def test_prepare_an_empty_input_dir_is_an_input_error(spark, tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(InputError, match="no files under"):
        prepare_images(spark, build_config({}).tumor, str(tmp_path / "in"), str(tmp_path / "out"))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    truth = write_phantoms(root, n_per_class=14, min_size=24, max_size=60, seed=5, duplicates=2, broken=2)
    # a byte-identical image under both classes, and a folder that is not a class
    counts = {}
    for f in (root / "no").iterdir():
        counts.setdefault(f.read_bytes(), []).append(f.name)
    name = sorted(v[0] for v in counts.values() if len(v) == 1 and "broken" not in v[0])[0]
    (root / "yes" / f"same as {name}").write_bytes((root / "no" / name).read_bytes())
    truth.conflict = {f"no/{name}", f"yes/same as {name}"}
    (root / "pred").mkdir()
    (root / "pred" / "p0.jpg").write_bytes((root / "yes" / "y0.JPG").read_bytes())
    return root, truth


@pytest.fixture(scope="module")
def prepared(spark, phantoms, tmp_path_factory):
    root, truth = phantoms
    out = tmp_path_factory.mktemp("prepared") / "ds"
    out.mkdir()
    (out / "stale.txt").write_text("previous output")
    cfg = build_config({"tumor": {"size": 24, "test_fraction": 0.25}})
    result = prepare_images(spark, cfg.tumor, str(root), str(out))
    return out, result.stats, truth


def test_prepare_counts_reconcile(prepared):
    out, stats, truth = prepared
    assert not (out / "stale.txt").exists()  # replaced whole
    assert read_json(str(out / STATS_FILE)) == json.loads(json.dumps(stats))
    # 2 x (14 + 2 copies + 2 broken) + 1 cross-class copy; pred/ is not a class folder
    assert stats["files_read"] == truth.files + 1 == 37
    assert stats["skipped_outside_class_folders"] == {"pred": 1}
    assert stats["duplicates_removed"] == 4
    assert stats["rejected_by_reason"] == {"undecodable image": 4, "same bytes under different classes": 2}
    assert stats["accepted"] == 2 * 14 - 1  # the image copied across classes is rejected (both copies)
    assert stats["reconcile"]["ok"]
    assert stats["files_read"] == stats["accepted"] + stats["duplicates_removed"] + stats["rejected"]
    assert stats["by_class"]["1"]["test"] == round(14 * 0.25) and stats["by_class"]["0"]["test"] == round(13 * 0.25)
    assert set(stats["modes"]) >= {"L", "RGB", "RGBA", "P", "LA"}


def test_prepare_rejects_name_the_broken_files(spark, prepared, phantoms):
    out, _, truth = prepared
    rejects = spark.read.parquet(str(out / REJECTS))
    assert [f.name for f in rejects.schema.fields] == ["source", "line", "raw", "reason"]
    undecodable = {r["source"] for r in rejects.where("reason = 'undecodable image'").collect()}
    assert undecodable == set(truth.broken)
    conflict = {r["source"] for r in rejects.where("reason = 'same bytes under different classes'").collect()}
    assert conflict == truth.conflict
    assert rejects.where("line is not null").count() == 0


def test_prepare_no_hash_on_both_sides(spark, prepared, phantoms):
    out, _, _ = prepared
    root, _ = phantoms
    images = spark.read.parquet(str(out / S.IMAGES))
    rows = images.collect()
    by_hash = {}
    for r in rows:
        by_hash.setdefault(r[S.HASH_COL], set()).add(r[S.SPLIT_COL])
    assert len(by_hash) == len(rows)  # one row per distinct content
    assert all(len(v) == 1 for v in by_hash.values())
    # no file's bytes are on both sides, copies included (hash recomputed here with hashlib)
    import hashlib
    split_of = {r[S.HASH_COL]: r[S.SPLIT_COL] for r in rows}
    sides = {}
    for f in Path(root).rglob("*"):
        if f.is_file() and f.parent.name in ("yes", "no"):
            h = hashlib.sha256(f.read_bytes()).hexdigest()
            if h in split_of:
                sides.setdefault(h, set()).add(split_of[h])
    assert sides and all(len(v) == 1 for v in sides.values())
    assert {r[S.SPLIT_COL] for r in rows} == {S.TRAIN, S.TEST}
    assert sorted(p.name for p in (out / S.IMAGES).iterdir() if p.is_dir()) == ["split=test", "split=train"]


def test_prepare_pixels_match_single_file_decoding(spark, prepared, phantoms):
    out, _, _ = prepared
    root, _ = phantoms
    images = spark.read.parquet(str(out / S.IMAGES)).orderBy(S.PATH_COL).limit(5).collect()
    for r in images:
        ref = decode_scan((Path(root) / r[S.PATH_COL]).read_bytes(), 24)
        assert r[S.SIZE_COL] == 24 and len(r[S.PIXELS_COL]) == 24 * 24
        np.testing.assert_allclose(np.asarray(r[S.PIXELS_COL]).reshape(24, 24), ref.pixels, atol=1e-7)
        assert (r[S.WIDTH_COL], r[S.HEIGHT_COL], r[S.MODE_COL]) == (ref.width, ref.height, ref.mode)
        assert r[S.LABEL_COL] == (1 if r[S.PATH_COL].startswith("yes/") else 0)
