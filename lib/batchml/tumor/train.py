"""Distributed training of the tumor CNN: one Spark barrier task per worker, each training on its
shard of the train split with ``MultiWorkerMirroredStrategy`` in a custom loop (``strategy.run``;
Keras 3 ``model.fit`` is broken under that strategy, keras#20585).

Per epoch every worker runs the same number of steps (its shard is reshuffled and wrapped around),
gradients are all-reduced, so all workers end each epoch with identical weights (their checksums are
reported).  A checkpoint (model, optimizer, epoch) is written under ``OUTPUT/checkpoints`` at the end
of every epoch; a re-run with the same output resumes after the last saved epoch.  The chief saves
``OUTPUT/model.keras`` when training ends.
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

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.errors import JobError
from batchml.config import TumorSettings
from batchml.distributed import WorkerContext, run_on_barrier
from batchml.io.atomic import exists, write_json
from batchml.logs import stage
from batchml.tumor import schema as S
from batchml.tumor.images import pixels_array

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
    def from_settings(cls, s: TumorSettings, output: str, size: int, **overrides) -> "TrainParams":
        values = dict(output=output, size=size, epochs=s.epochs, batch_size=s.batch_size,
                      learning_rate=s.learning_rate, l2=s.l2, architecture=s.architecture,
                      augment=s.augment, max_rotation_deg=s.max_rotation_deg,
                      use_class_weights=s.class_weights, seed=s.seed)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def weights_checksum(model) -> str:
    """sha256 of all weights' bytes, in order (equal only for bit-identical weights)."""
    h = hashlib.sha256()
    for v in model.weights:
        h.update(np.ascontiguousarray(np.asarray(v)).tobytes())
    return h.hexdigest()[:16]


def checkpoint_dir(output: str) -> str:
    return os.path.join(output, S.CHECKPOINTS)


def latest_epoch(output: str) -> int:
    """Epochs completed by the checkpoints under ``output`` (0 when there are none)."""
    import tensorflow as tf
    latest = tf.train.latest_checkpoint(checkpoint_dir(output))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def _epoch_indices(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices into a shard of ``n``: whole shuffled passes, wrapped around."""
    reps = -(-count // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:count]


class WorkerTrainer:
    """The function each barrier task runs (see :func:`batchml.distributed.run_on_barrier`)."""

    def __init__(self, params: TrainParams):
        self.params = params

    def __call__(self, w: WorkerContext) -> dict:
        p = self.params
        import keras
        import tensorflow as tf
        from batchml.distributed import make_strategy
        from batchml.tumor.model import augment, build_model, class_weights

        log = logging.getLogger("batchml.tumor")
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
        sw = cw[y]
        global_batch = p.batch_size * w.num_workers
        steps = max(1, math.ceil(total / global_batch))

        strategy = make_strategy()
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
        start = int(epoch_var.numpy())
        start_checksum = weights_checksum(model)
        if w.is_chief:
            log.info("training %s on %d images (%s), %d workers x batch %d, %d steps/epoch, epochs %d..%d%s",
                     p.architecture, total, counts, w.num_workers, p.batch_size, steps, start + 1, p.epochs,
                     f" (resumed from {latest})" if latest else "")

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

        aug_gen = tf.random.Generator.from_seed(p.seed * 1000 + w.rank)
        aug = tf.function(lambda b: augment(b, aug_gen, p.max_rotation_deg))
        history = []
        for epoch in range(start, p.epochs):
            rng = np.random.default_rng([p.seed, epoch, w.rank])
            idx = _epoch_indices(len(y), steps * p.batch_size, rng)
            t0 = time.perf_counter()
            total_loss = 0.0
            for s in range(steps):
                b = idx[s * p.batch_size:(s + 1) * p.batch_size]
                xb = tf.constant(x[b])
                if p.augment:
                    xb = aug(xb)
                total_loss += float(train_step(xb, tf.constant(y[b]), tf.constant(sw[b])))
            seconds = time.perf_counter() - t0
            epoch_var.assign(epoch + 1)
            manager.save(checkpoint_number=epoch + 1)
            record = {"epoch": epoch + 1, "loss": total_loss / steps, "seconds": round(seconds, 3),
                      "images_per_s": round(steps * global_batch / seconds, 1),
                      "checksum": weights_checksum(model)}
            history.append(record)
            if w.is_chief:
                log.info("epoch %d/%d: loss %.4f, %.1fs, %.0f images/s", epoch + 1, p.epochs,
                         record["loss"], seconds, record["images_per_s"])
        if not w.is_chief:
            shutil.rmtree(own_dir, ignore_errors=True)
        elif history or not os.path.exists(os.path.join(p.output, S.MODEL_FILE)):
            tmp = os.path.join(p.output, f".{S.MODEL_FILE}.tmp-{os.getpid()}.keras")
            model.save(tmp)
            os.replace(tmp, os.path.join(p.output, S.MODEL_FILE))
        return {"rank": w.rank, "shard": int(len(y)), "start_epoch": start + 1, "start_checksum": start_checksum,
                "resumed_from": latest, "history": history,
                "steps_per_epoch": steps, "global_batch": global_batch, "total": total,
                "class_counts": {str(k): v for k, v in counts.items()},
                "class_weights": [float(c) for c in cw], "final_checksum": weights_checksum(model)}


def read_split(spark: SparkSession, data_dir: str, split: str) -> DataFrame:
    """Rows of one split of the image shards written by :mod:`batchml.tumor.prepare`."""
    path = f"{data_dir.rstrip('/')}/{S.IMAGES}"
    if not exists(path):
        raise JobError(f"{data_dir} has no {S.IMAGES}/ table: run jobs/tumor_prepare.py first")
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


def train_distributed(spark: SparkSession, settings: TumorSettings, data_dir: str, output: str,
                      workers: int | None = None, **overrides) -> TrainResult:
    """Train on the train split of ``data_dir`` with ``workers`` barrier tasks; checkpoints and the
    model go under ``output`` (which must be on storage every worker sees).

    ``overrides`` (``epochs``, ``batch_size``, ...) replace the settings of the same name.
    """
    workers = workers or settings.workers
    train_df = read_split(spark, data_dir, S.TRAIN)
    size = image_size(train_df)
    params = TrainParams.from_settings(settings, os.path.abspath(output) if "://" not in output else output,
                                       size, **overrides)
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
    write_json(os.path.join(params.output, "train_history.json"),
               {"params": asdict(params), "workers": results, "seconds": seconds})
    return TrainResult(workers=results, size=size, seconds=seconds, params=asdict(params))


def train_and_evaluate(spark: SparkSession, settings: TumorSettings, data_dir: str, output: str,
                       workers: int | None = None, **overrides) -> dict:
    """Train (resuming from ``output``'s checkpoints), then score both splits and write
    ``metrics.json``, ``predictions/`` (Parquet) and ``test_grid.png`` under ``output``.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    from batchml.io.atomic import atomic_dir
    from batchml.tumor.evaluate import draw_grid, evaluate, with_predictions

    timings: dict = {}
    t0 = time.perf_counter()
    result = train_distributed(spark, settings, data_dir, output, workers=workers, **overrides)
    timings["train"] = round(result.seconds, 3)
    output = result.params["output"]
    model_path = os.path.join(output, S.MODEL_FILE)
    images = spark.read.parquet(f"{data_dir.rstrip('/')}/{S.IMAGES}")
    with stage("predict", spark, timings) as st:
        with atomic_dir(os.path.join(output, S.PREDICTIONS)) as tmp:
            with_predictions(images, model_path, result.size).write.mode("overwrite").parquet(tmp)
        preds = spark.read.parquet(os.path.join(output, S.PREDICTIONS))
        pdf = preds.select(S.LABEL_COL, S.SPLIT_COL, S.PROB_COL).toPandas()
        st.set_rows(len(pdf))
    tr, te = pdf[pdf[S.SPLIT_COL] == S.TRAIN], pdf[pdf[S.SPLIT_COL] == S.TEST]
    if te.empty:
        raise JobError(f"{data_dir} has no test images")
    metrics = evaluate(tr[S.LABEL_COL].to_numpy(), tr[S.PROB_COL].to_numpy(),
                       te[S.LABEL_COL].to_numpy(), te[S.PROB_COL].to_numpy())
    with stage("grid of test scans", spark, timings):
        n = settings.grid_images
        if n:
            sample = (preds.where(F.col(S.SPLIT_COL) == S.TEST).orderBy(S.HASH_COL).limit(n)
                      .join(images.select(S.HASH_COL, S.PIXELS_COL), on=S.HASH_COL, how="inner")
                      .orderBy(S.HASH_COL).collect())
            tiles = [{"pixels": r[S.PIXELS_COL], "label": r[S.LABEL_COL], "prob_tumor": r[S.PROB_COL],
                      "prediction": int(r[S.PROB_COL] >= metrics["threshold"])} for r in sample]
            draw_grid(tiles, result.size, os.path.join(output, S.GRID_FILE))
    chief = result.workers[0]
    history = chief["history"]
    timings["total"] = round(time.perf_counter() - t0, 3)
    metrics.update({
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
    })
    write_json(os.path.join(output, S.METRICS_FILE), metrics)
    LOG.info("test BER %.4f (threshold %.3f from training data), accuracy %.4f, ROC AUC %.4f",
             metrics["ber"], metrics["threshold"], metrics["accuracy"], metrics["roc_auc"])
    return metrics
