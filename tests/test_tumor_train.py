"""Tumor CNN training: metrics against brute-force references, the barrier runner's slot check, and
(slow) two TensorFlow workers on generated phantoms: identical weights, resume, BER."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from batchml.config import build_config
from batchml.distributed import DistributedError, gpu_conf, run_on_barrier
from batchml.errors import InputError
from batchml.schema import METRICS_FILE
from batchml.synth.images import write_phantoms
from batchml.tumor import schema as S
from batchml.tumor.evaluate import best_threshold, confusion, rates, roc_auc
from batchml.tumor.prepare import prepare_images
from batchml.tumor.train import train_and_evaluate, train_distributed


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
    m = train_and_evaluate(spark, _settings(workers=2), data, str(out))
    history = json.loads((out / "train_history.json").read_text())["workers"]
    assert [w["rank"] for w in history] == [0, 1]
    assert history[0]["shard"] + history[1]["shard"] == stats["by_split"]["train"]
    assert abs(history[0]["shard"] - history[1]["shard"]) <= 1
    for e0, e1 in zip(history[0]["history"], history[1]["history"], strict=True):
        assert e0["checksum"] == e1["checksum"], f"workers diverged at epoch {e0['epoch']}"
    checks = [e["checksum"] for e in history[0]["history"]]
    assert len(set(checks)) == len(checks)  # weights did change every epoch
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
    data, _ = shards
    out = str(tmp_path / "model")
    first = train_distributed(spark, _settings(epochs=1, augment=False, workers=2), data, out).workers
    assert first[0]["start_epoch"] == 1 and [h["epoch"] for h in first[0]["history"]] == [1]
    second = train_distributed(spark, _settings(epochs=2, augment=False, workers=2), data, out).workers
    for w in second:
        assert w["start_epoch"] == 2 and [h["epoch"] for h in w["history"]] == [2]
        assert w["resumed_from"].endswith("ckpt-1")
        assert w["start_checksum"] == first[0]["history"][-1]["checksum"]  # weights restored
    assert second[0]["history"][-1]["checksum"] == second[1]["history"][-1]["checksum"]


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
