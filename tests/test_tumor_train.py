"""Tumor CNN training: metrics against brute-force references, the barrier runner's slot check, and
(slow) two TensorFlow workers on generated phantoms: identical weights, resume, BER."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from batchml.config import build_config
from batchml.distributed import DistributedError, gpu_conf, run_on_barrier
from batchml.errors import InputError, JobError
from batchml.schema import METRICS_FILE
from batchml.synth.images import write_phantoms
from batchml.tumor import schema as S
from batchml.tumor.checkpoints import claim_checkpoints
from batchml import binary_metrics as B
from batchml.tumor.evaluate import evaluate
from batchml.tumor.model import Augmentation, affine_transforms, augment, make_optimizer, transform_images
from batchml.tumor.prepare import prepare_images
from batchml.tumor.train import train_and_evaluate, train_distributed
from batchml.tumor.worker import balanced_error, step_confusion


def roc_auc(labels, scores):
    return B.roc_auc(B.ScoreCounts.of(labels, scores))


def best_threshold(labels, scores):
    return B.best_threshold(B.ScoreCounts.of(labels, scores))


def confusion(labels, scores, threshold):
    """The tumor rule: a tumor where ``score >= threshold``."""
    return B.confusion(B.ScoreCounts.of(labels, scores), threshold, inclusive=True)


rates = B.rates


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert roc_auc(labels, scores) == pytest.approx(brute)
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_ber_and_best_threshold_against_brute_force():
    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.3, 0.35, 0.7, 0.6, 0.9])
    c = confusion(labels, scores, 0.5)
    assert c == {"tp": 2, "fp": 1, "tn": 3, "fn": 0}
    assert rates(c)["ber"] == pytest.approx((1 / 4 + 0) / 2)
    t, ber = best_threshold(labels, scores)
    grid = np.linspace(0, 1, 1001)
    brute = min(rates(confusion(labels, scores, g))["ber"] for g in grid)
    assert ber == pytest.approx(brute) and ber == pytest.approx(0.125)
    assert rates(confusion(labels, scores, t))["ber"] == pytest.approx(ber)


def test_threshold_comes_from_validation_not_from_test():
    """Validation is best split at 0.3, test at 0.8: the reported threshold must be validation's."""
    val_y, val_p = np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.25, 0.35, 0.6, 0.9])
    test_y, test_p = np.array([0, 0, 0, 1, 1, 1]), np.array([0.3, 0.5, 0.7, 0.85, 0.9, 0.95])
    m = evaluate(val_y, val_p, test_y, test_p)
    assert m["threshold"] == pytest.approx(best_threshold(val_y, val_p)[0]) == pytest.approx(0.3)
    assert best_threshold(test_y, test_p)[0] == pytest.approx(0.775)
    assert m["ber"] == pytest.approx(rates(confusion(test_y, test_p, 0.3))["ber"]) == pytest.approx(0.5)
    assert m["validation_ber_at_threshold"] == 0.0 and m["validation_images"] == 6


def _bilinear_reference(img, x_in, y_in):
    """Sample ``img`` at fractional points, the four neighbours outside the image reading 0."""
    h, w = img.shape

    def at(r, c):
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        return np.where(inside, img[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)], 0.0)
    r0, c0 = np.floor(y_in).astype(int), np.floor(x_in).astype(int)
    fr, fc = y_in - r0, x_in - c0
    return ((1 - fr) * (1 - fc) * at(r0, c0) + (1 - fr) * fc * at(r0, c0 + 1)
            + fr * (1 - fc) * at(r0 + 1, c0) + fr * fc * at(r0 + 1, c0 + 1))


def test_augmentation_geometry_matches_a_plain_reference():
    """Rotation + zoom about the centre + shift, one fused transform per image, against numpy: an
    exact integer shift, an exact quarter turn, and arbitrary parameters through a plain bilinear
    sampler (output pixel (x, y) reads the input at c + R(-a) (x - c - t) / s)."""
    import tensorflow as tf
    rng = np.random.default_rng(5)
    h = w = 11
    imgs = rng.random((3, h, w)).astype(np.float32)
    angles, scales = np.array([0.0, np.pi / 2, 0.4]), np.array([1.0, 1.0, 1.3])
    sx, sy = np.array([2.0, 0.0, -1.7]), np.array([-3.0, 0.0, 0.6])
    t = affine_transforms(*(tf.constant(v, tf.float32) for v in (angles, scales, sx, sy)), float(h), float(w))
    out = transform_images(tf.constant(imgs[..., None]), t).numpy()[..., 0]
    shifted = np.zeros_like(imgs[0])
    shifted[:h - 3, 2:] = imgs[0][3:, :w - 2]  # content moves 2 px right, 3 px up
    np.testing.assert_allclose(out[0], shifted, atol=1e-6)
    np.testing.assert_allclose(out[1], np.rot90(imgs[1]), atol=1e-5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c = (w - 1) / 2.0
    dx, dy = (xx - c - sx[2]) / scales[2], (yy - c - sy[2]) / scales[2]
    x_in = c + np.cos(angles[2]) * dx - np.sin(angles[2]) * dy
    y_in = c + np.sin(angles[2]) * dx + np.cos(angles[2]) * dy
    np.testing.assert_allclose(out[2], _bilinear_reference(imgs[2].astype(np.float64), x_in, y_in), atol=1e-5)


def test_augment_brightness_is_one_clipped_offset_per_image():
    import tensorflow as tf
    imgs = np.random.default_rng(2).random((4, 9, 9, 1)).astype(np.float32)
    gen = tf.random.Generator.from_seed(1)
    out = augment(tf.constant(imgs), gen, Augmentation(flips=False, brightness=0.3)).numpy()
    assert out.min() >= 0 and out.max() <= 1
    for a, b in zip(imgs, out):
        inside = (b > 0) & (b < 1)
        delta = (b - a)[inside]
        assert np.ptp(delta) < 1e-6 and abs(delta[0]) <= 0.3 and abs(delta[0]) > 0
        np.testing.assert_allclose(b, np.clip(a + delta[0], 0, 1), atol=1e-6)
    same = augment(tf.constant(imgs), gen, Augmentation(flips=False)).numpy()
    np.testing.assert_array_equal(same, imgs)  # nothing asked, nothing changed


def test_step_confusion_and_training_ber_against_counts():
    import tensorflow as tf
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 50)
    p1 = np.round(rng.random(50), 2)
    p1[:3] = 0.5  # the boundary counts as class 1
    counts = step_confusion(tf.constant(y), tf.constant(np.stack([1 - p1, p1], 1), tf.float32)).numpy()
    c = confusion(y, p1, 0.5)
    assert counts.tolist() == [c["tp"], c["fn"], c["tn"], c["fp"]]
    assert balanced_error(*counts) == pytest.approx(rates(c)["ber"])
    assert np.isnan(balanced_error(3, 1, 0, 0))


def test_cosine_schedule_runs_from_the_rate_to_its_floor():
    from batchml.tumor.model import COSINE_FLOOR
    opt = make_optimizer(0.01, "cosine", 100)
    lr = opt.learning_rate  # the schedule at the optimizer's step counter
    assert float(lr) == pytest.approx(0.01)
    sched = opt._learning_rate
    assert float(sched(50)) == pytest.approx(0.01 * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5))
    assert float(sched(100)) == pytest.approx(0.01 * COSINE_FLOOR)
    assert float(make_optimizer(0.01, "constant", 100).learning_rate) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="schedule"):
        make_optimizer(0.01, "step", 100)


def test_checkpoints_of_another_run_are_not_resumed(tmp_path):
    out = tmp_path / "model"
    ident = {"learning_rate": 0.001, "batch_size": 16, "data": "abc", "workers": 2}
    assert claim_checkpoints(str(out), ident) is False  # nothing to resume; the identity is recorded
    (out / S.CHECKPOINTS / "ckpt-1.index").write_bytes(b"")
    assert claim_checkpoints(str(out), ident) is True
    with pytest.raises(JobError, match=r"learning_rate 0.001 -> 0.005.*not resumed"):
        claim_checkpoints(str(out), {**ident, "learning_rate": 0.005})
    with pytest.raises(JobError, match="the training data"):
        claim_checkpoints(str(out), {**ident, "data": "abd"})
    (out / S.CHECKPOINTS / "run.json").unlink()
    with pytest.raises(JobError, match="no record of the run"):
        claim_checkpoints(str(out), ident)


def test_too_few_slots_fail_fast_with_a_clear_message(spark):
    with pytest.raises(DistributedError, match="3 workers need 3 concurrent task slots"):
        run_on_barrier(spark, lambda w: None, 3)


def test_train_job_rejects_unknown_settings(tmp_path):
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "tumor_train_job", Path(__file__).resolve().parents[1] / "jobs" / "tumor_train.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job.main(["--data", str(tmp_path), "--output", str(tmp_path / "m"), "--set", "tumor.nope=1"]) == 2


def test_training_on_a_dir_without_shards_is_an_input_error(spark, tmp_path):
    with pytest.raises(InputError, match="run jobs/tumor_prepare.py first"):
        train_distributed(spark, _settings(), str(tmp_path), str(tmp_path / "model"))


@pytest.fixture(scope="module")
def shards(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("tumor-phantoms")
    write_phantoms(root, n_per_class=90, min_size=40, max_size=90, seed=11, duplicates=2, broken=1)
    out = tmp_path_factory.mktemp("tumor-shards") / "ds"
    cfg = build_config({"tumor": {"size": 32, "test_fraction": 0.33}})
    stats = prepare_images(spark, cfg.tumor, str(root), str(out)).stats
    return str(out), stats


def _settings(**kw):
    base = {"architecture": "small", "batch_size": 16, "learning_rate": 0.005, "epochs": 8,
            "grid_images": 12, "seed": 3}
    base.update(kw)
    return build_config({"tumor": base}).tumor


@pytest.mark.slow
def test_two_workers_identical_weights_and_low_ber(spark, shards, tmp_path):
    data, stats = shards
    out = tmp_path / "model"
    m = train_and_evaluate(spark, _settings(workers=2, max_shift=0.05, max_zoom=0.1, max_brightness=0.05),
                           data, str(out))
    history = json.loads((out / "train_history.json").read_text())["workers"]
    assert [w["rank"] for w in history] == [0, 1]
    assert history[0]["shard"] + history[1]["shard"] == stats["by_split"]["train"]
    assert abs(history[0]["shard"] - history[1]["shard"]) <= 1
    for e0, e1 in zip(history[0]["history"], history[1]["history"], strict=True):
        assert e0["checksum"] == e1["checksum"], f"workers diverged at epoch {e0['epoch']}"
    checks = [e["checksum"] for e in history[0]["history"]]
    assert len(set(checks)) == len(checks)  # weights did change every epoch
    train_ber = [e["train_ber"] for e in m["history"]]
    assert all(0 <= b <= 1 for b in train_ber) and train_ber[-1] < train_ber[0]  # it learns
    assert m["workers"] == 2 and m["start_epoch"] == 1 and len(m["history"]) == 8
    assert m["ber"] < 0.1, m
    assert m["roc_auc"] > 0.95
    saved = json.loads((out / METRICS_FILE).read_text())
    assert saved["ber"] == m["ber"] and saved["test_images"] == stats["by_split"]["test"]
    preds = spark.read.parquet(str(out / S.PREDICTIONS))
    assert preds.count() == stats["accepted"]
    assert preds.where(f"{S.PROB_COL} < 0 or {S.PROB_COL} > 1").count() == 0
    with Image.open(out / S.GRID_FILE) as grid:
        assert grid.format == "PNG" and grid.width > 0
    assert (out / S.MODEL_FILE).is_file()


@pytest.mark.slow
def test_resume_starts_after_the_last_checkpoint(spark, shards, tmp_path):
    """With batch normalization (synchronized: the moving statistics too stay equal on both workers)."""
    data, _ = shards
    out = str(tmp_path / "model")
    run = {"augment": False, "workers": 2, "architecture": "compact", "width": 4, "batch_norm": True}
    first = train_distributed(spark, _settings(epochs=1, **run), data, out).workers
    assert first[0]["start_epoch"] == 1 and [h["epoch"] for h in first[0]["history"]] == [1]
    assert first[0]["history"][0]["checksum"] == first[1]["history"][0]["checksum"]
    second = train_distributed(spark, _settings(epochs=2, **run), data, out).workers
    for w in second:
        assert w["start_epoch"] == 2 and [h["epoch"] for h in w["history"]] == [2]
        assert w["resumed_from"].endswith("ckpt-1")
        assert w["start_checksum"] == first[0]["history"][-1]["checksum"]  # weights restored
    assert second[0]["history"][-1]["checksum"] == second[1]["history"][-1]["checksum"]


@pytest.mark.slow
def test_worker_kill_corrupt_checkpoint_and_changed_inputs(spark, shards, tmp_path):
    """Issue 12 item 8: a worker killed mid-epoch, a corrupt latest checkpoint, other inputs."""
    data, _ = shards
    out = tmp_path / "model"
    ckpts = out / S.CHECKPOINTS
    run = {"augment": False, "workers": 2}
    # worker 1 SIGKILLs itself at step 1 of epoch 2: one error line, ckpt-1 is the last good one
    with pytest.raises(JobError, match="re-run the same command to resume"):
        train_distributed(spark, _settings(epochs=2, fault_kill="1:2:1", **run), data, str(out))
    assert sorted(p.name for p in ckpts.glob("ckpt-*.index")) == ["ckpt-1.index"]
    second = train_distributed(spark, _settings(epochs=2, **run), data, str(out)).workers
    for w in second:
        assert w["start_epoch"] == 2 and w["resumed_from"].endswith("ckpt-1")
        assert [h["epoch"] for h in w["history"]] == [2]
    assert not (out / "_scratch").exists()  # the workers' scratch checkpoints are gone
    # the latest checkpoint is corrupted: the next run falls back to the previous one
    for f in ckpts.glob("ckpt-2.data-*"):
        f.write_bytes(b"\x00" * f.stat().st_size)
    third = train_distributed(spark, _settings(epochs=3, **run), data, str(out)).workers
    for w in third:
        assert w["start_epoch"] == 2 and w["resumed_from"].endswith("ckpt-1")
        assert [h["epoch"] for h in w["history"]] == [2, 3]
    # other settings or other data: refuses to resume, the checkpoints stay as they were
    before = sorted(p.name for p in ckpts.iterdir())
    with pytest.raises(JobError, match="learning_rate"):
        train_distributed(spark, _settings(epochs=4, learning_rate=0.001, **run), data, str(out))
    other = tmp_path / "other"
    images = spark.read.parquet(f"{data}/{S.IMAGES}")
    drop = images.where(f"{S.SPLIT_COL} = '{S.TRAIN}'").orderBy(S.HASH_COL).first()[S.HASH_COL]
    images.where(f"{S.HASH_COL} != '{drop}'").write.partitionBy(S.SPLIT_COL).parquet(f"{other}/{S.IMAGES}")
    with pytest.raises(JobError, match="the training data"):
        train_distributed(spark, _settings(epochs=4, **run), str(other), str(out))
    assert sorted(p.name for p in ckpts.iterdir()) == before


def _has_gpu() -> bool:
    import shutil
    import subprocess
    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="no GPU")
def test_train_job_on_one_gpu(shards, tmp_path):
    """Runs the job in its own process: GPU scheduling is set when the session starts."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    data, _ = shards
    conf = tmp_path / "gpu.yaml"
    extra = {**gpu_conf(local=True), "spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures": "1"}
    conf.write_text(json.dumps({"spark": {"master": "local[2]", "checkpoint_dir": "", "extra": extra},
                                "tumor": {"architecture": "small", "epochs": 3, "use_gpu": True,
                                          "batch_size": 16}}))
    out = tmp_path / "model"
    proc = subprocess.run([sys.executable, str(root / "jobs" / "tumor_train.py"), "--conf", str(conf),
                           "--data", data, "--output", str(out), "--workers", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / METRICS_FILE).read_text())["workers"] == 1
