"""Distributed training of the tumor CNN: one Spark barrier task per worker, each training on its
shard of the train split with ``MultiWorkerMirroredStrategy`` in a custom loop (``strategy.run``;
Keras 3 ``model.fit`` is broken under that strategy, keras#20585).

Per epoch every worker runs the same number of steps (its shard is reshuffled and wrapped around),
gradients are all-reduced, so all workers end each epoch with identical weights (their checksums are
reported).  A checkpoint (model, optimizer, epoch) is written under ``OUTPUT/checkpoints`` at the end
of every epoch; a re-run with the same output resumes after the last saved epoch.  The chief saves
``OUTPUT/model.keras`` when training ends.

TensorFlow and Keras are imported inside the functions that run on the workers: the driver never
loads them, and a worker loads them only after :mod:`batchml.distributed` has set
``CUDA_VISIBLE_DEVICES`` and ``TF_CONFIG``.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.config import TumorSettings
from batchml.distributed import WorkerContext, make_strategy, run_on_barrier
from batchml.errors import InputError, JobError
from batchml.io.atomic import atomic_dir, exists, write_json
from batchml.logs import stage
from batchml.schema import METRICS_FILE
from batchml.tumor import schema as S
from batchml.tumor.evaluate import draw_grid, evaluate, with_predictions
from batchml.tumor.images import pixels_array
from batchml.tumor.model import augment, build_model, class_weights

LOG = logging.getLogger("batchml.tumor")


@dataclass(frozen=True)
class TrainParams:
    """Everything a worker needs (plain values: pickled to the Spark tasks)."""

    output: str
    size: int
    epochs: int
    batch_size: int
    learning_rate: float
    l2: float
    architecture: str
    augment: bool
    max_rotation_deg: float
    use_class_weights: bool
    seed: int

    @classmethod
    def from_settings(cls, s: TumorSettings, output: str, size: int) -> "TrainParams":
        return cls(output=output, size=size, epochs=s.epochs, batch_size=s.batch_size,
                   learning_rate=s.learning_rate, l2=s.l2, architecture=s.architecture,
                   augment=s.augment, max_rotation_deg=s.max_rotation_deg,
                   use_class_weights=s.class_weights, seed=s.seed)


def weights_checksum(model) -> str:
    """sha256 of all weights' bytes, in order (equal only for bit-identical weights)."""
    h = hashlib.sha256()
    for v in model.weights:
        h.update(np.ascontiguousarray(np.asarray(v)).tobytes())
    return h.hexdigest()[:16]


def checkpoint_dir(output: str) -> str:
    return os.path.join(output, S.CHECKPOINTS)


def _epoch_indices(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices into a shard of ``n``: whole shuffled passes, wrapped around."""
    reps = -(-count // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:count]


@dataclass
class Shard:
    """A worker's training rows, with the class balance of the whole train split."""

    x: np.ndarray               # (n, size, size, 1) pixels
    y: np.ndarray               # labels
    total: int                  # images over all workers
    counts: dict[int, int]      # label -> images over all workers
    class_weights: np.ndarray   # per label
    sample_weights: np.ndarray  # per row of this shard


def load_shard(w: WorkerContext, p: TrainParams) -> Shard:
    """Decode this worker's rows and agree with the others on the class counts (a barrier)."""
    rows = list(w.rows)
    x = pixels_array([r[S.PIXELS_COL] for r in rows], p.size)
    y = np.array([r[S.LABEL_COL] for r in rows], np.int32)
    del rows
    shards = w.all_gather({"n": int(len(y)), "pos": int(y.sum())})
    total = sum(s["n"] for s in shards)
    if any(s["n"] == 0 for s in shards):
        raise RuntimeError(f"a worker has an empty shard ({[s['n'] for s in shards]}); use fewer workers")
    counts = {1: sum(s["pos"] for s in shards), 0: total - sum(s["pos"] for s in shards)}
    cw = class_weights(counts) if p.use_class_weights else np.ones(2, np.float32)
    return Shard(x=x, y=y, total=total, counts=counts, class_weights=cw, sample_weights=cw[y])


@dataclass
class Replica:
    """A worker's copy of the model, its optimizer and checkpoints (TensorFlow objects)."""

    model: Any
    optimizer: Any
    epoch_var: Any          # epochs completed, saved in the checkpoints
    manager: Any            # tf.train.CheckpointManager writing to ``own_dir``
    own_dir: str            # the chief's checkpoint dir, or a worker's scratch dir
    latest: str | None      # the checkpoint restored from
    start: int              # epochs already completed


def build_replica(strategy, p: TrainParams, w: WorkerContext) -> Replica:
    """Build the model and optimizer under ``strategy`` and restore the chief's latest checkpoint."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(p.seed)
    with strategy.scope():
        model = build_model(p.architecture, p.size, p.l2)
        optimizer = keras.optimizers.Adam(p.learning_rate)
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    chief_dir = checkpoint_dir(p.output)
    own_dir = chief_dir if w.is_chief else tempfile.mkdtemp(prefix=f"tumor-ckpt-w{w.rank}-")
    manager = tf.train.CheckpointManager(ckpt, own_dir, max_to_keep=2)
    latest = tf.train.latest_checkpoint(chief_dir)
    if latest:
        ckpt.restore(latest).assert_existing_objects_matched()
    return Replica(model=model, optimizer=optimizer, epoch_var=epoch_var, manager=manager, own_dir=own_dir,
                   latest=latest, start=int(epoch_var.numpy()))


def make_train_step(strategy, model, optimizer, global_batch: int):
    """A ``tf.function`` running one synchronous step on every replica; returns the summed loss."""
    import keras
    import tensorflow as tf
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")

    def replica_step(xb, yb, wb):
        with tf.GradientTape() as tape:
            probs = model(xb, training=True)
            per_example = loss_fn(yb, probs) * wb
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step(xb, yb, wb):
        per_replica = strategy.run(replica_step, args=(xb, yb, wb))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return train_step


def make_augment(p: TrainParams, rank: int):
    """The worker's seeded augmentation of a batch (a ``tf.function``)."""
    import tensorflow as tf
    aug_gen = tf.random.Generator.from_seed(p.seed * 1000 + rank)
    return tf.function(lambda b: augment(b, aug_gen, p.max_rotation_deg))


def train_epoch(train_step, aug, shard: Shard, p: TrainParams, epoch: int, rank: int,
                steps: int) -> tuple[float, float]:
    """One epoch of ``steps`` batches from this worker's shard: ``(mean loss, seconds)``."""
    import tensorflow as tf
    rng = np.random.default_rng([p.seed, epoch, rank])
    idx = _epoch_indices(len(shard.y), steps * p.batch_size, rng)
    t0 = time.perf_counter()
    total_loss = 0.0
    for s in range(steps):
        b = idx[s * p.batch_size:(s + 1) * p.batch_size]
        xb = tf.constant(shard.x[b])
        if p.augment:
            xb = aug(xb)
        total_loss += float(train_step(xb, tf.constant(shard.y[b]), tf.constant(shard.sample_weights[b])))
    return total_loss / steps, time.perf_counter() - t0


def save_final_model(w: WorkerContext, p: TrainParams, replica: Replica, trained: bool) -> None:
    """The chief writes ``model.keras`` (atomically) when it trained or none exists yet; the other
    workers drop their scratch checkpoints."""
    if not w.is_chief:
        shutil.rmtree(replica.own_dir, ignore_errors=True)
    elif trained or not os.path.exists(os.path.join(p.output, S.MODEL_FILE)):
        tmp = os.path.join(p.output, f".{S.MODEL_FILE}.tmp-{os.getpid()}.keras")
        replica.model.save(tmp)
        os.replace(tmp, os.path.join(p.output, S.MODEL_FILE))


class WorkerTrainer:
    """The function each barrier task runs (see :func:`batchml.distributed.run_on_barrier`)."""

    def __init__(self, params: TrainParams):
        self.params = params

    def __call__(self, w: WorkerContext) -> dict:
        p = self.params
        shard = load_shard(w, p)
        global_batch = p.batch_size * w.num_workers
        steps = max(1, math.ceil(shard.total / global_batch))
        strategy = make_strategy()
        replica = build_replica(strategy, p, w)
        start_checksum = weights_checksum(replica.model)
        if w.is_chief:
            LOG.info("training %s on %d images (%s), %d workers x batch %d, %d steps/epoch, epochs %d..%d%s",
                     p.architecture, shard.total, shard.counts, w.num_workers, p.batch_size, steps,
                     replica.start + 1, p.epochs, f" (resumed from {replica.latest})" if replica.latest else "")
        train_step = make_train_step(strategy, replica.model, replica.optimizer, global_batch)
        aug = make_augment(p, w.rank)
        history = []
        for epoch in range(replica.start, p.epochs):
            loss, seconds = train_epoch(train_step, aug, shard, p, epoch, w.rank, steps)
            replica.epoch_var.assign(epoch + 1)
            replica.manager.save(checkpoint_number=epoch + 1)
            record = {"epoch": epoch + 1, "loss": loss, "seconds": round(seconds, 3),
                      "images_per_s": round(steps * global_batch / seconds, 1),
                      "checksum": weights_checksum(replica.model)}
            history.append(record)
            if w.is_chief:
                LOG.info("epoch %d/%d: loss %.4f, %.1fs, %.0f images/s", epoch + 1, p.epochs,
                         record["loss"], seconds, record["images_per_s"])
        save_final_model(w, p, replica, trained=bool(history))
        return {"rank": w.rank, "shard": int(len(shard.y)), "start_epoch": replica.start + 1,
                "start_checksum": start_checksum, "resumed_from": replica.latest, "history": history,
                "steps_per_epoch": steps, "global_batch": global_batch, "total": shard.total,
                "class_counts": {str(k): v for k, v in shard.counts.items()},
                "class_weights": [float(c) for c in shard.class_weights],
                "final_checksum": weights_checksum(replica.model)}


def read_split(spark: SparkSession, data_dir: str, split: str) -> DataFrame:
    """Rows of one split of the image shards written by :mod:`batchml.tumor.prepare`."""
    path = f"{data_dir.rstrip('/')}/{S.IMAGES}"
    if not exists(path):
        raise InputError(f"{data_dir} has no {S.IMAGES}/ table: run jobs/tumor_prepare.py first")
    return spark.read.parquet(path).where(F.col(S.SPLIT_COL) == split)


def worker_shards(train_df: DataFrame, workers: int):
    """An RDD of ``(label, hash, pixels)`` rows with exactly ``workers`` partitions of equal size
    (+-1): rows ordered by hash are dealt round-robin, so the shards are deterministic."""
    rows = train_df.select(S.LABEL_COL, S.HASH_COL, S.PIXELS_COL).orderBy(S.HASH_COL).rdd
    return (rows.zipWithIndex().map(lambda ri: (ri[1] % workers, ri[0]))
            .partitionBy(workers, lambda k: k).values())


def image_size(df: DataFrame) -> int:
    sizes = [r[S.SIZE_COL] for r in df.select(S.SIZE_COL).distinct().limit(2).collect()]
    if len(sizes) != 1:
        raise JobError(f"the image shards must have one size, found {sizes or 'no images'}")
    return int(sizes[0])


@dataclass
class TrainResult:
    workers: list[dict]
    size: int
    seconds: float
    params: dict = field(default_factory=dict)


def train_distributed(spark: SparkSession, settings: TumorSettings, data_dir: str, output: str) -> TrainResult:
    """Train on the train split of ``data_dir`` with ``settings.workers`` barrier tasks; checkpoints
    and the model go under ``output`` (which must be on storage every worker sees)."""
    workers = settings.workers
    train_df = read_split(spark, data_dir, S.TRAIN)
    size = image_size(train_df)
    params = TrainParams.from_settings(settings, os.path.abspath(output) if "://" not in output else output,
                                       size)
    os.makedirs(checkpoint_dir(params.output), exist_ok=True)
    with stage("shard the train split", spark) as st:
        shards = worker_shards(train_df, workers)
        st.set_rows(train_df.count())
        if st.rows < workers:
            raise JobError(f"{st.rows} training images cannot feed {workers} workers")
    t0 = time.perf_counter()
    with stage(f"train on {workers} workers", spark):
        results = run_on_barrier(spark, WorkerTrainer(params), workers, shards,
                                 port_range=settings.port_range, threads=settings.threads_per_worker,
                                 use_gpu=settings.use_gpu)
    seconds = time.perf_counter() - t0
    write_json(os.path.join(params.output, S.HISTORY_FILE),
               {"params": asdict(params), "workers": results, "seconds": seconds})
    return TrainResult(workers=results, size=size, seconds=seconds, params=asdict(params))


def train_and_evaluate(spark: SparkSession, settings: TumorSettings, data_dir: str, output: str) -> dict:
    """Train (resuming from ``output``'s checkpoints), then score both splits and write
    ``metrics.json``, ``predictions/`` (Parquet) and ``test_grid.png`` under ``output``.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    timings: dict = {}
    t0 = time.perf_counter()
    result = train_distributed(spark, settings, data_dir, output)
    timings["train"] = round(result.seconds, 3)
    output = result.params["output"]
    images = spark.read.parquet(f"{data_dir.rstrip('/')}/{S.IMAGES}")
    preds, pdf = _predict(spark, images, os.path.join(output, S.MODEL_FILE), result.size, output, timings)
    tr, te = pdf[pdf[S.SPLIT_COL] == S.TRAIN], pdf[pdf[S.SPLIT_COL] == S.TEST]
    if te.empty:
        raise JobError(f"{data_dir} has no test images")
    metrics = evaluate(tr[S.LABEL_COL].to_numpy(), tr[S.PROB_COL].to_numpy(),
                       te[S.LABEL_COL].to_numpy(), te[S.PROB_COL].to_numpy())
    with stage("grid of test scans", spark, timings):
        if settings.grid_images:
            _draw_test_grid(preds, images, settings.grid_images, metrics["threshold"], result.size,
                            os.path.join(output, S.GRID_FILE))
    timings["total"] = round(time.perf_counter() - t0, 3)
    metrics.update(_training_summary(result, data_dir, timings))
    write_json(os.path.join(output, METRICS_FILE), metrics)
    LOG.info("test BER %.4f (threshold %.3f from training data), accuracy %.4f, ROC AUC %.4f",
             metrics["ber"], metrics["threshold"], metrics["accuracy"], metrics["roc_auc"])
    return metrics


def _predict(spark: SparkSession, images: DataFrame, model_path: str, size: int, output: str,
             timings: dict) -> tuple[DataFrame, pd.DataFrame]:
    """Stage: score every image, write ``predictions/`` (atomically); return it and its
    ``label, split, prob_tumor`` columns collected."""
    with stage("predict", spark, timings) as st:
        with atomic_dir(os.path.join(output, S.PREDICTIONS)) as tmp:
            with_predictions(images, model_path, size).write.mode("overwrite").parquet(tmp)
        preds = spark.read.parquet(os.path.join(output, S.PREDICTIONS))
        pdf = preds.select(S.LABEL_COL, S.SPLIT_COL, S.PROB_COL).toPandas()
        st.set_rows(len(pdf))
    return preds, pdf


def _draw_test_grid(preds: DataFrame, images: DataFrame, n: int, threshold: float, size: int,
                    path: str) -> None:
    """A PNG of the first ``n`` test scans by hash, with truth and prediction at ``threshold``."""
    sample = (preds.where(F.col(S.SPLIT_COL) == S.TEST).orderBy(S.HASH_COL).limit(n)
              .join(images.select(S.HASH_COL, S.PIXELS_COL), on=S.HASH_COL, how="inner")
              .orderBy(S.HASH_COL).collect())
    tiles = [{"pixels": r[S.PIXELS_COL], "label": r[S.LABEL_COL], "prob_tumor": r[S.PROB_COL],
              "prediction": int(r[S.PROB_COL] >= threshold)} for r in sample]
    draw_grid(tiles, size, path)


def _training_summary(result: TrainResult, data_dir: str, timings: dict) -> dict:
    """The training half of ``metrics.json``: workers, settings, history, throughput, checksums."""
    chief = result.workers[0]
    history = chief["history"]
    return {
        "data": data_dir, "workers": len(result.workers), "size": result.size,
        "architecture": result.params["architecture"], "epochs": result.params["epochs"],
        "start_epoch": chief["start_epoch"], "batch_size_per_worker": result.params["batch_size"],
        "global_batch": chief["global_batch"], "steps_per_epoch": chief["steps_per_epoch"],
        "train_class_counts": chief["class_counts"], "class_weights": chief["class_weights"],
        "history": history,
        "images_per_s": (round(sum(h["images_per_s"] for h in history) / len(history), 1)
                         if history else None),
        "worker_checksums": [w["final_checksum"] for w in result.workers],
        "timings_s": timings,
    }
