"""Throughput of the barrier-stage TensorFlow job vs a plain single-process TensorFlow loop.

    .venv/bin/python benchmarks/tumor_train.py [--n 200] [--size 64] [--epochs 3] [--batch-size 32]

On the same generated, prepared shards: images/s of our job with 1 worker (ratio to the plain loop;
target >= 0.8) and with 2 workers, same model (the seed network), batch and augmentation.  Images/s
are per training epoch after the first (tracing) epoch.  Prints the BER the 2-worker run reached.
"""
from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from dataclasses import replace

import numpy as np


def plain_loop(x, y, sw, size, epochs, batch, settings) -> list[float]:
    """Plain single-process TensorFlow: same model, optimizer, loss, batch and augmentation."""
    import keras
    import tensorflow as tf
    from batchml.tumor.model import augment, build_model
    keras.utils.set_random_seed(settings.seed)
    model = build_model(settings.architecture, size, settings.l2)
    opt = keras.optimizers.Adam(settings.learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")
    gen = tf.random.Generator.from_seed(settings.seed)

    @tf.function
    def step(xb, yb, wb):
        xb = augment(xb, gen, settings.max_rotation_deg)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(loss_fn(yb, model(xb, training=True)) * wb) / batch
            loss += tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    steps = max(1, math.ceil(len(y) / batch))
    rates = []
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        idx = np.concatenate([rng.permutation(len(y)) for _ in range(-(-steps * batch // len(y)))])
        t0 = time.perf_counter()
        for s in range(steps):
            b = idx[s * batch:(s + 1) * batch]
            step(tf.constant(x[b]), tf.constant(y[b]), tf.constant(sw[b]))
        rates.append(steps * batch / (time.perf_counter() - t0))
    return rates


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="phantoms per class")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--architecture", default="seed")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from batchml.config import build_config
    from batchml.spark import build_session
    from batchml.synth.images import write_phantoms
    from batchml.tumor import schema as S
    from batchml.tumor.images import pixels_array
    from batchml.tumor.model import class_weights
    from batchml.tumor.prepare import prepare_images
    from batchml.tumor.train import read_split, train_and_evaluate, train_distributed

    cfg = build_config({"spark": {"master": "local[2]", "shuffle_partitions": 4, "log_level": "ERROR",
                                  "checkpoint_dir": ""},
                        "tumor": {"architecture": a.architecture, "batch_size": a.batch_size,
                                  "epochs": a.epochs, "grid_images": 0, "size": a.size}})
    spark = build_session(cfg.spark, app_name="bench-tumor")
    work = tempfile.mkdtemp(prefix="bench-tumor-")
    write_phantoms(f"{work}/raw", n_per_class=a.n, min_size=64, max_size=160, seed=1)
    stats = prepare_images(spark, cfg.tumor, f"{work}/raw", f"{work}/ds").stats
    print(f"shards: {stats['by_split']} at {a.size}px, model {a.architecture}, batch {a.batch_size}/worker, "
          f"{a.epochs} epochs")

    pdf = read_split(spark, f"{work}/ds", S.TRAIN).select(S.LABEL_COL, S.PIXELS_COL).toPandas()
    x, y = pixels_array(list(pdf[S.PIXELS_COL]), a.size), pdf[S.LABEL_COL].to_numpy(np.int32)
    sw = class_weights({0: int((y == 0).sum()), 1: int((y == 1).sum())})[y]
    plain = plain_loop(x, y, sw, a.size, a.epochs, a.batch_size, cfg.tumor)
    plain_rate = float(np.mean(plain[1:]))
    print(f"plain TensorFlow loop:      {plain_rate:8.1f} images/s  (epochs: {', '.join(f'{r:.0f}' for r in plain)})")

    t0 = time.perf_counter()
    one = train_distributed(spark, replace(cfg.tumor, workers=1), f"{work}/ds", f"{work}/m1").workers[0]
    wall1 = time.perf_counter() - t0
    rate1 = float(np.mean([h["images_per_s"] for h in one["history"][1:]]))
    print(f"barrier job, 1 worker:      {rate1:8.1f} images/s  ratio to plain {rate1 / plain_rate:.2f} "
          f"(target >= 0.8); job wall {wall1:.1f}s incl. start-up")

    t0 = time.perf_counter()
    m = train_and_evaluate(spark, replace(cfg.tumor, workers=2), f"{work}/ds", f"{work}/m2")
    rate2 = float(np.mean([h["images_per_s"] for h in m["history"][1:]]))
    print(f"barrier job, 2 workers:     {rate2:8.1f} images/s  ratio to 1 worker {rate2 / rate1:.2f}; "
          f"train wall {m['timings_s']['train']:.1f}s")
    print(f"BER (2 workers, {a.epochs} epochs): {m['ber']:.4f}  accuracy {m['accuracy']:.4f}  "
          f"ROC AUC {m['roc_auc']:.4f}  threshold {m['threshold']:.3f}  "
          f"(at 0.5: BER {m['at_0_5']['ber']:.4f})")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
