"""Quality and throughput of the tumor job against a plain single-process TensorFlow loop.

    .venv/bin/python benchmarks/tumor_train.py [--data DIR | --n 200] [--seeds 1] [--plain-epochs 2]
                                               [--cache DIR] [--set tumor.KEY=VALUE ...]

DATA is a directory of class folders (``yes/``, ``no/``), e.g. ``../shared/data/brain_mri_dev``;
without it, generated phantoms (``--n`` per class).  For every split seed: prepare the data with the
settings' defaults (crop, normalize, near-duplicate groups, validation split), time a plain
single-process TensorFlow loop over the same train images, model and *global* batch (epochs after the
first, which traces), then run the job (``tumor.workers`` barrier tasks) and print its test BER, ROC AUC,
best epoch, per-epoch validation curve, epoch time (train steps only; the first epoch left out) and
the ratio of that epoch time to the plain loop's (target <= 1.3).  With several seeds: mean and
spread of BER and AUC.  ``--plain-epochs 0`` skips the plain loop (quick screens); ``--cache DIR``
keeps the prepared data under DIR, keyed by the settings that change it, and reuses it.
"""
from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from dataclasses import asdict, replace

import numpy as np


def plain_loop(x, y, sw, settings, global_batch: int, epochs: int) -> list[float]:
    """Seconds per epoch of a plain single-process TensorFlow loop: same model, optimizer, loss,
    global batch and augmentation as the job."""
    import keras
    import tensorflow as tf
    from batchml.tumor.model import augment, build_model, make_optimizer
    from batchml.tumor.worker import TrainParams, step_confusion
    keras.utils.set_random_seed(settings.seed)
    steps = max(1, math.ceil(len(y) / global_batch))
    model = build_model(settings.architecture, settings.size, settings.l2, width=settings.width,
                        batch_norm=settings.batch_norm)
    opt = make_optimizer(settings.learning_rate, settings.lr_schedule, settings.epochs * steps)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")
    gen = tf.random.Generator.from_seed(settings.seed)
    aug = TrainParams.from_settings(settings, "", settings.size).augmentation()

    @tf.function
    def step(xb, yb, wb):
        if aug is not None:
            xb = augment(xb, gen, aug)
        with tf.GradientTape() as tape:
            probs = model(xb, training=True)
            loss = tf.reduce_sum(loss_fn(yb, probs) * wb) / global_batch
            if model.losses:
                loss += tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return tf.concat([tf.reshape(loss, [1]), step_confusion(yb, probs)], axis=0)

    out, rng = [], np.random.default_rng(0)
    for _ in range(epochs):
        idx = np.concatenate([rng.permutation(len(y)) for _ in range(-(-steps * global_batch // len(y)))])
        t0 = time.perf_counter()
        total = tf.zeros([5])
        for s in range(steps):
            b = idx[s * global_batch:(s + 1) * global_batch]
            total += step(tf.constant(x[b]), tf.constant(y[b]), tf.constant(sw[b]))
        total.numpy()
        out.append(time.perf_counter() - t0)
    return out


def _train_arrays(spark, data: str, settings):
    from batchml.tumor import schema as S
    from batchml.tumor.images import pixels_array
    from batchml.tumor.model import class_weights
    from batchml.tumor.train import read_split
    pdf = read_split(spark, data, S.TRAIN).select(S.LABEL_COL, S.PIXELS_COL).toPandas()
    x, y = pixels_array(list(pdf[S.PIXELS_COL]), settings.size), pdf[S.LABEL_COL].to_numpy(np.int32)
    cw = class_weights({0: int((y == 0).sum()), 1: int((y == 1).sum())})
    return x, y, (cw if settings.class_weights else np.ones(2, np.float32))[y]


def prepared(spark, settings, raw: str, work: str, cache: str | None) -> tuple[str, dict]:
    """The prepared data of ``raw`` under these settings: ``(dir, stats)``; with ``cache``, reused
    from (or kept in) a folder named by a hash of the input and of the settings that change it."""
    import hashlib
    import json
    import os
    from batchml.io.atomic import read_json
    from batchml.schema import STATS_FILE
    from batchml.tumor.prepare import prepare_images
    if not cache:
        return f"{work}/ds", prepare_images(spark, settings, raw, f"{work}/ds").stats
    s = asdict(settings)
    key = {k: s[k] for k in ("classes", "size", "test_fraction", "validation_fraction", "crop", "crop_margin",
                             "normalize", "near_duplicate_bits", "seed")}
    digest = hashlib.sha256(json.dumps([os.path.abspath(raw), key], sort_keys=True).encode()).hexdigest()[:12]
    ds = os.path.join(cache, f"ds-{digest}")
    if os.path.exists(os.path.join(ds, STATS_FILE)):
        return ds, read_json(os.path.join(ds, STATS_FILE))
    return ds, prepare_images(spark, settings, raw, ds).stats


def one_seed(spark, settings, raw: str, work: str, plain_epochs: int, cache: str | None = None) -> dict:
    """Prepare, time the plain loop, run the job; print and return the figures of one split seed."""
    from batchml.tumor.train import train_and_evaluate
    ds, stats = prepared(spark, settings, raw, work, cache)
    print(f"seed {settings.seed}: splits {stats['by_split']}, near-duplicate groups {stats['near_duplicates']}, "
          f"{settings.size}px, {settings.architecture}, {settings.workers} workers x batch {settings.batch_size}")
    plain_s = float("nan")
    if plain_epochs > 0:
        x, y, sw = _train_arrays(spark, ds, settings)
        plain = plain_loop(x, y, sw, settings, settings.batch_size * settings.workers, plain_epochs)
        plain_s = float(np.mean(plain[1:] or plain))
        del x, y, sw
        print(f"  plain TF loop epoch {plain_s:.1f}s (epochs: {', '.join(f'{t:.1f}' for t in plain)})", flush=True)
    m = train_and_evaluate(spark, settings, ds, f"{work}/model")
    job_s = float(np.mean([h["seconds"] for h in m["history"][1:]] or [m["history"][0]["seconds"]]))
    curve = ", ".join(f"{h['epoch']}:{h['val_ber']:.3f}" for h in m["history"])
    train = ", ".join(f"{h['train_ber']:.3f}" for h in m["history"])
    print(f"  job epoch {job_s:.1f}s (epochs: {', '.join(str(h['seconds']) for h in m['history'])}), ratio to the "
          f"plain loop {job_s / plain_s:.2f} (target <= 1.3)")
    print(f"  validation BER per epoch: {curve}; best epoch {m['best_epoch']}")
    print(f"  training BER per epoch: {train}")
    print(f"  test BER {m['ber']:.4f}  ROC AUC {m['roc_auc']:.4f}  threshold {m['threshold']:.3f} "
          f"(from validation)  accuracy {m['accuracy']:.4f}  at 0.5: BER {m['at_0_5']['ber']:.4f}")
    return {"ber": m["ber"], "auc": m["roc_auc"], "epoch_s": job_s, "plain_s": plain_s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="class folders (default: generated phantoms)")
    p.add_argument("--n", type=int, default=200, help="phantoms per class without --data")
    p.add_argument("--seeds", type=int, default=1, help="split seeds (42, 43, ...)")
    p.add_argument("--plain-epochs", type=int, default=2, help="0: no plain loop (no ratio)")
    p.add_argument("--cache", help="keep and reuse the prepared data under this folder")
    p.add_argument("--set", action="append", default=[], metavar="tumor.KEY=VALUE",
                   help="a tumor setting, e.g. tumor.size=64 tumor.epochs=3 tumor.architecture=small")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from batchml.config import build_config
    from batchml.spark import build_session
    from batchml.synth.images import write_phantoms
    cfg = build_config({"spark": {"master": "local[2]", "shuffle_partitions": 4, "log_level": "ERROR",
                                  "checkpoint_dir": "", "extra": {"spark.ui.showConsoleProgress": "false"}},
                        "tumor": {"grid_images": 0}}, a.set)
    spark = build_session(cfg.spark, app_name="bench-tumor")
    work = tempfile.mkdtemp(prefix="bench-tumor-")
    raw = a.data
    if raw is None:
        raw = f"{work}/raw"
        write_phantoms(raw, n_per_class=a.n, min_size=64, max_size=160, seed=1)
    runs = [one_seed(spark, replace(cfg.tumor, seed=cfg.tumor.seed + i), raw, f"{work}/s{i}", a.plain_epochs,
                     a.cache) for i in range(a.seeds)]
    ber, auc = np.array([r["ber"] for r in runs]), np.array([r["auc"] for r in runs])
    print(f"over {len(runs)} split seed(s): test BER {ber.mean():.4f} +- {ber.std():.4f}, ROC AUC "
          f"{auc.mean():.4f} +- {auc.std():.4f}; epoch {np.mean([r['epoch_s'] for r in runs]):.1f}s vs plain "
          f"{np.mean([r['plain_s'] for r in runs]):.1f}s")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
