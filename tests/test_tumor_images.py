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
from batchml.tumor.images import DecodeError, Preprocessing, decode_scan
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
    assert stats["skipped_outside_class_folders"] == {"": 1, "pred": 1}  # _truth.json at the root
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
    assert {r[S.SPLIT_COL] for r in rows} == {S.TRAIN, S.VALIDATION, S.TEST}  # validation: issue 17
    assert sorted(p.name for p in (out / S.IMAGES).iterdir() if p.is_dir()) == [
        "split=test", "split=train", "split=validation"]


def test_prepare_pixels_match_single_file_decoding(spark, prepared, phantoms):
    out, _, _ = prepared
    root, _ = phantoms
    images = spark.read.parquet(str(out / S.IMAGES)).orderBy(S.PATH_COL).limit(5).collect()
    for r in images:
        prep = Preprocessing.from_settings(build_config({"tumor": {"size": 24}}).tumor)
        ref = decode_scan((Path(root) / r[S.PATH_COL]).read_bytes(), prep)
        assert r[S.SIZE_COL] == 24 and len(r[S.PIXELS_COL]) == 24 * 24
        np.testing.assert_allclose(np.asarray(r[S.PIXELS_COL]).reshape(24, 24), ref.pixels, atol=1e-7)
        assert (r[S.WIDTH_COL], r[S.HEIGHT_COL], r[S.MODE_COL]) == (ref.width, ref.height, ref.mode)
        assert r[S.LABEL_COL] == (1 if r[S.PATH_COL].startswith("yes/") else 0)


def test_prepare_reads_files_spark_hides(spark, tmp_path):
    """Names starting with ``_`` or ``.`` (files and folders) are read, not silently skipped."""
    root = tmp_path / "in"
    rng = np.random.default_rng(8)
    names = ["yes/a.png", "yes/_b.png", "yes/.c.png", "no/d.png", "no/.hid/e.png", "no/_f g.png"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(_bytes(Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)), "PNG"))
    (root / "no" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "_notes.txt").write_text("outside the class folders")
    out = tmp_path / "out"
    stats = prepare_images(spark, build_config({"tumor": {"size": 12, "test_fraction": 0.4}}).tumor,
                           str(root), str(out)).stats
    assert stats["files_listed"] == 8 and stats["files_read"] == 7
    assert stats["skipped_outside_class_folders"] == {"": 1}
    assert stats["hidden_names_read"] == 6
    assert stats["accepted"] == 6 and stats["rejected_by_reason"] == {"undecodable image": 1}
    assert stats["reconcile"]["ok"]
    paths = {r[S.PATH_COL] for r in spark.read.parquet(str(out / S.IMAGES)).collect()}
    assert paths == set(names)
    rejected = {r["source"] for r in spark.read.parquet(str(out / REJECTS)).collect()}
    assert rejected == {"no/.DS_Store"}


def _scan_with_border(h, w, box, seed=0):
    """A black canvas with a textured elliptical head filling ``box`` = (top, bottom, left, right)
    and a small bright speck in a corner (a smaller component: not the head)."""
    rng = np.random.default_rng(seed)
    top, bottom, left, right = box
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, ry, rx = (top + bottom - 1) / 2, (left + right - 1) / 2, (bottom - top) / 2, (right - left) / 2
    head = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img = np.zeros((h, w), np.uint8)
    img[head] = rng.integers(60, 200, size=int(head.sum()))
    img[1:3, 1:3] = 250
    return img, head


@pytest.mark.parametrize("h,w,box", [(120, 160, (20, 100, 50, 130)), (200, 90, (5, 150, 10, 85)),
                                     (64, 64, (0, 64, 0, 64))])
def test_crop_and_normalize_match_a_plain_reference(h, w, box):
    img, head = _scan_with_border(h, w, box)
    margin = 0.05
    scan = decode_scan(_bytes(Image.fromarray(img, "L"), "PNG"),
                       Preprocessing(size=40, crop=True, crop_margin=margin, normalize=True))
    # reference: the head's bounding box from the mask, grown by margin x its longer side, clipped
    rows, cols = np.flatnonzero(head.any(1)), np.flatnonzero(head.any(0))
    t, b, l, r = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = int(round(margin * max(b - t, r - l)))
    t, b, l, r = max(0, t - m), min(h, b + m), max(0, l - m), min(w, r + m)
    crop, head_crop = img[t:b, l:r], head[t:b, l:r]
    side = max(crop.shape)
    sq = np.zeros((side, side), np.uint8)
    y0, x0 = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    sq[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    ref = np.asarray(Image.fromarray(sq, "L").resize((40, 40), Image.BILINEAR), np.float32) / 255
    lo, hi = np.percentile(crop[head_crop], [1, 99]) / 255
    ref = np.clip((ref - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(scan.pixels, ref, atol=1e-6)
    assert scan.pixels.min() == 0 and scan.pixels.max() <= 1


def test_crop_makes_the_border_irrelevant():
    img, _ = _scan_with_border(100, 100, (10, 90, 10, 90), seed=1)
    wide = np.zeros((300, 420), np.uint8)
    wide[150:250, 200:300] = img  # the same scan inside a much wider black border
    prep = Preprocessing(size=32, crop=True, crop_margin=0.0, normalize=False)
    a = decode_scan(_bytes(Image.fromarray(img, "L"), "PNG"), prep).pixels
    b = decode_scan(_bytes(Image.fromarray(wide, "L"), "PNG"), prep).pixels
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_near_duplicate_hashes_and_groups():
    from batchml.synth.images import phantom
    from batchml.tumor.near_duplicates import hamming, near_duplicate_groups, phash
    rng = np.random.default_rng(4)
    prep = Preprocessing(size=64, crop=True, normalize=True)
    base = (phantom(rng, 120, 140, tumor=True) * 255).round().astype(np.uint8)
    other = (phantom(rng, 120, 140, tumor=False) * 255).round().astype(np.uint8)
    h0 = phash(decode_scan(_bytes(Image.fromarray(base, "L"), "PNG"), prep).pixels)
    variants = [_bytes(Image.fromarray(base, "L"), "JPEG"),                               # re-encoded
                _bytes(Image.fromarray(base, "L").resize((150, 128)), "PNG"),             # resized
                _bytes(Image.fromarray(np.pad(base, ((9, 0), (0, 13)))), "PNG")]          # other border
    for v in variants:
        assert hamming(h0, phash(decode_scan(v, prep).pixels)) <= 6
    h1 = phash(decode_scan(_bytes(Image.fromarray(other, "L"), "PNG"), prep).pixels)
    assert hamming(h0, h1) > 6
    # banded grouping == brute-force single linkage
    hashes = [int(v) for v in np.random.default_rng(2).integers(-2**63, 2**63 - 1, 60, dtype=np.int64)]
    hashes += [h ^ (1 << 5) ^ (1 << 40) for h in hashes[:20]] + [h ^ 0b111 for h in hashes[:5]]
    keys = [f"k{i:03d}" for i in range(len(hashes))]
    groups = near_duplicate_groups(keys, hashes, 2)
    parent = {k: k for k in keys}

    def find(k):
        while parent[k] != k:
            k = parent[k]
        return k
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            if hamming(hashes[i], hashes[j]) <= 2:
                parent[find(keys[i])] = find(keys[j])
    brute = {}
    for k in keys:
        brute.setdefault(find(k), []).append(k)
    assert {k: min(v) for v in brute.values() for k in v} == groups
    assert len(set(groups.values())) == 60 + 5  # 2-bit copies join their original, 3-bit ones do not


def test_near_duplicate_groups_never_straddle_and_validation_is_disjoint(spark, tmp_path):
    root = tmp_path / "in"
    write_phantoms(root, n_per_class=16, min_size=48, max_size=80, seed=9, duplicates=0, broken=0)
    copies = 0
    for folder in ("yes", "no"):
        for f in sorted((root / folder).iterdir())[:6]:
            with Image.open(f) as img:
                g = img.convert("L")
                g.resize((g.width + 3, g.height + 2)).save(root / folder / f"near {f.stem}.jpg", quality=90)
                copies += 1
    out = tmp_path / "out"
    # phantoms at 32 px hash less stably than real scans at 175 px; distinct phantoms differ in >= 10 bits
    cfg = build_config({"tumor": {"size": 32, "test_fraction": 0.3, "validation_fraction": 0.3,
                                  "near_duplicate_bits": 8}})
    stats = prepare_images(spark, cfg.tumor, str(root), str(out)).stats
    assert stats["near_duplicates"]["groups"] >= copies and stats["accepted"] == 32 + copies
    assert set(stats["by_split"]) == {S.TRAIN, S.VALIDATION, S.TEST} and min(stats["by_split"].values()) > 0
    rows = spark.read.parquet(str(out / S.IMAGES)).select(S.PATH_COL, S.HASH_COL, S.GROUP_COL, S.SPLIT_COL).collect()
    split_of_group, split_of_hash = {}, {}
    for r in rows:
        split_of_group.setdefault(r[S.GROUP_COL], set()).add(r[S.SPLIT_COL])
        split_of_hash.setdefault(r[S.HASH_COL], set()).add(r[S.SPLIT_COL])
    assert all(len(v) == 1 for v in split_of_group.values())
    assert all(len(v) == 1 for v in split_of_hash.values())
    group_of = {r[S.PATH_COL]: r[S.GROUP_COL] for r in rows}
    for path in group_of:
        if Path(path).name.startswith("near "):
            original = [p for p in group_of if Path(p).stem == Path(path).stem[len("near "):]]
            assert len(original) == 1 and group_of[original[0]] == group_of[path]
