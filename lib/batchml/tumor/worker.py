"""What one barrier task of the tumor training does (see :func:`batchml.distributed.run_on_barrier`):
load its shard, build its replica of the model under ``MultiWorkerMirroredStrategy``, resume from
the chief's checkpoints (:mod:`batchml.tumor.checkpoints`), train epochs in a custom loop
(``strategy.run``; Keras 3 ``model.fit`` is broken under that strategy, keras#20585), score its share
of the validation rows after every epoch and keep the best epoch's model.

Per epoch every worker runs the same number of steps (its shard is reshuffled and wrapped around),
gradients are all-reduced, so all workers end each epoch with identical weights (their checksums are
reported).  Validation probabilities are gathered from all workers, so every worker sees the same
validation BER and they stop (early stopping) at the same epoch.

TensorFlow and Keras are imported inside the functions: the driver never loads them, and a worker
loads them only after :mod:`batchml.distributed` has set ``CUDA_VISIBLE_DEVICES`` and ``TF_CONFIG``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from batchml import binary_metrics as B
from batchml.config import TumorSettings
from batchml.distributed import WorkerContext, make_strategy
from batchml.errors import JobError
from batchml.tumor import schema as S
from batchml.tumor.checkpoints import checkpoint_dir, restore_latest_good, scratch_dir
from batchml.tumor.images import pixels_array
from batchml.tumor.model import Augmentation, augment, build_model, class_weights, make_optimizer

LOG = logging.getLogger("batchml.tumor")

BEST_FILE = "best.json"  # in the checkpoint dir: the best epoch so far (survives a resume)


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
    width: int
    batch_norm: bool
    lr_schedule: str
    augment: bool
    max_rotation_deg: float
    max_shift: float
    max_zoom: float
    max_brightness: float
    use_class_weights: bool
    seed: int
    patience: int
    fault_kill: str

    @classmethod
    def from_settings(cls, s: TumorSettings, output: str, size: int) -> "TrainParams":
        return cls(output=output, size=size, epochs=s.epochs, batch_size=s.batch_size,
                   learning_rate=s.learning_rate, l2=s.l2, architecture=s.architecture, width=s.width,
                   batch_norm=s.batch_norm, lr_schedule=s.lr_schedule, augment=s.augment,
                   max_rotation_deg=s.max_rotation_deg, max_shift=s.max_shift, max_zoom=s.max_zoom,
                   max_brightness=s.max_brightness, use_class_weights=s.class_weights, seed=s.seed,
                   patience=s.patience, fault_kill=s.fault_kill)

    def augmentation(self) -> Augmentation | None:
        """The train step's random changes (None without ``augment``)."""
        if not self.augment:
            return None
        return Augmentation(flips=True, rotation_deg=self.max_rotation_deg, shift=self.max_shift,
                            zoom=self.max_zoom, brightness=self.max_brightness)


def weights_checksum(model) -> str:
    """sha256 of all weights' bytes, in order (equal only for bit-identical weights)."""
    h = hashlib.sha256()
    for v in model.weights:
        h.update(np.ascontiguousarray(np.asarray(v)).tobytes())
    return h.hexdigest()[:16]


def _epoch_indices(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices into a shard of ``n``: whole shuffled passes, wrapped around."""
    reps = -(-count // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:count]


@dataclass
class Shard:
    """A worker's training and validation rows, with the class balance of the whole train split."""

    x: np.ndarray               # (n, size, size, 1) pixels
    y: np.ndarray               # labels
    total: int                  # training images over all workers
    counts: dict[int, int]      # label -> training images over all workers
    class_weights: np.ndarray   # per label
    sample_weights: np.ndarray  # per row of this shard
    val_x: np.ndarray           # this worker's share of the validation rows
    val_y: np.ndarray


def load_shard(w: WorkerContext, p: TrainParams) -> Shard:
    """Decode this worker's rows and agree with the others on the class counts (a barrier)."""
    train, val = [], []
    for r in w.rows:
        (val if r[S.SPLIT_COL] == S.VALIDATION else train).append((r[S.LABEL_COL], r[S.PIXELS_COL]))
    x = pixels_array([v for _, v in train], p.size)
    y = np.array([lb for lb, _ in train], np.int32)
    val_x = pixels_array([v for _, v in val], p.size)
    val_y = np.array([lb for lb, _ in val], np.int32)
    del train, val
    shards = w.all_gather({"n": int(len(y)), "pos": int(y.sum())})
    total = sum(s["n"] for s in shards)
    if any(s["n"] == 0 for s in shards):
        raise JobError(f"a worker has an empty shard ({[s['n'] for s in shards]}); use fewer workers")
    counts = {1: sum(s["pos"] for s in shards), 0: total - sum(s["pos"] for s in shards)}
    cw = class_weights(counts) if p.use_class_weights else np.ones(2, np.float32)
    return Shard(x=x, y=y, total=total, counts=counts, class_weights=cw, sample_weights=cw[y],
                 val_x=val_x, val_y=val_y)


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


def build_replica(strategy, p: TrainParams, w: WorkerContext, steps: int) -> Replica:
    """Build the model and optimizer (``steps`` per epoch, for the learning-rate schedule) under
    ``strategy`` and restore the chief's newest readable checkpoint (every worker must pick the same
    one)."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(p.seed)
    with strategy.scope():
        model = build_model(p.architecture, p.size, p.l2, width=p.width, batch_norm=p.batch_norm)
        optimizer = make_optimizer(p.learning_rate, p.lr_schedule, p.epochs * steps)
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    chief_dir = checkpoint_dir(p.output)
    own_dir = chief_dir if w.is_chief else scratch_dir(p.output, w.rank)
    latest = restore_latest_good(ckpt, chief_dir)
    if len(set(w.all_gather(latest))) != 1:
        raise JobError(f"the workers restored different checkpoints from {chief_dir}")
    manager = tf.train.CheckpointManager(ckpt, own_dir, max_to_keep=2)
    return Replica(model=model, optimizer=optimizer, epoch_var=epoch_var, manager=manager, own_dir=own_dir,
                   latest=latest, start=int(epoch_var.numpy()))


def make_train_step(strategy, model, optimizer, global_batch: int, p: TrainParams, rank: int):
    """A ``tf.function`` running one synchronous step on every replica (the worker's seeded
    augmentation fused in); returns ``[loss, tp, fn, tn, fp]`` summed over the replicas as one tensor
    (no host sync per step): the loss and the confusion counts of the step's own predictions (class
    1 where its probability is >= 0.5) on its augmented batch."""
    import keras
    import tensorflow as tf
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")
    aug_gen = tf.random.Generator.from_seed(p.seed * 1000 + rank)
    aug = p.augmentation()

    def replica_step(xb, yb, wb):
        if aug is not None:
            xb = augment(xb, aug_gen, aug)
        with tf.GradientTape() as tape:
            probs = model(xb, training=True)
            per_example = loss_fn(yb, probs) * wb
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return tf.concat([tf.reshape(loss, [1]), step_confusion(yb, probs)], axis=0)

    @tf.function
    def train_step(xb, yb, wb):
        per_replica = strategy.run(replica_step, args=(xb, yb, wb))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return train_step


def step_confusion(labels, probs):
    """``[tp, fn, tn, fp]`` (float32) of a batch's predictions: class 1 where ``probs[:, 1] >= 0.5``."""
    import tensorflow as tf
    pred = probs[:, 1] >= 0.5
    pos = tf.equal(tf.cast(labels, tf.int32), 1)

    def count(mask):
        return tf.reduce_sum(tf.cast(mask, tf.float32))
    return tf.stack([count(pos & pred), count(pos & ~pred), count(~pos & ~pred), count(~pos & pred)])


def balanced_error(tp: float, fn: float, tn: float, fp: float) -> float:
    """Mean of the two classes' error rates (NaN where a class has no examples)."""
    fnr = fn / (tp + fn) if tp + fn else float("nan")
    fpr = fp / (tn + fp) if tn + fp else float("nan")
    return 0.5 * (fnr + fpr)


def current_learning_rate(optimizer) -> float:
    """The rate the optimizer's next step uses (its schedule at its step counter)."""
    import tensorflow as tf
    return float(tf.convert_to_tensor(optimizer.learning_rate))


def _maybe_die(p: TrainParams, rank: int, epoch: int, step: int) -> None:
    """Test-only fault injection (``tumor.fault_kill = "RANK:EPOCH:STEP"``): SIGKILL this worker."""
    if p.fault_kill and p.fault_kill == f"{rank}:{epoch + 1}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def train_epoch(train_step, shard: Shard, p: TrainParams, epoch: int, rank: int,
                steps: int) -> tuple[float, float, float]:
    """One epoch of ``steps`` batches from this worker's shard: ``(mean loss, training BER,
    seconds)``; the BER is that of the train steps' own predictions (all workers', augmented
    images, weights changing during the epoch): a cheap sign of under- or over-fitting."""
    import tensorflow as tf
    rng = np.random.default_rng([p.seed, epoch, rank])
    idx = _epoch_indices(len(shard.y), steps * p.batch_size, rng)
    t0 = time.perf_counter()
    total = tf.zeros([5])
    for s in range(steps):
        _maybe_die(p, rank, epoch, s)
        b = idx[s * p.batch_size:(s + 1) * p.batch_size]
        total += train_step(tf.constant(shard.x[b]), tf.constant(shard.y[b]),
                            tf.constant(shard.sample_weights[b]))
    loss, tp, fn, tn, fp = (float(v) for v in total.numpy())
    return loss / steps, balanced_error(tp, fn, tn, fp), time.perf_counter() - t0


def validate(w: WorkerContext, model, shard: Shard, batch: int = 256) -> dict:
    """Score this worker's validation rows, gather all workers' and return the validation BER at its
    best threshold, that threshold and the ROC AUC (the same on every worker)."""
    probs = [np.asarray(model(shard.val_x[i:i + batch], training=False))[:, 1]
             for i in range(0, len(shard.val_y), batch)]
    mine = np.concatenate(probs) if probs else np.zeros(0)
    gathered = w.all_gather({"y": shard.val_y.tolist(), "p": [round(float(v), 7) for v in mine]})
    y = np.array([v for g in gathered for v in g["y"]], np.int32)
    prob = np.array([v for g in gathered for v in g["p"]], np.float64)
    if len(y) == 0:
        return {"val_ber": float("nan"), "val_threshold": 0.5, "val_auc": float("nan"), "val_images": 0}
    counts = B.ScoreCounts.of(y, prob)
    threshold, ber = B.best_threshold(counts)
    return {"val_ber": ber, "val_threshold": threshold, "val_auc": B.roc_auc(counts), "val_images": int(len(y))}


def is_better(record: dict, best: dict | None) -> bool:
    """Lower validation BER wins, then higher AUC; without validation figures the later epoch wins."""
    if best is None or np.isnan(record["val_ber"]) or np.isnan(best["val_ber"]):
        return True
    auc, best_auc = np.nan_to_num(record["val_auc"]), np.nan_to_num(best["val_auc"])
    return (record["val_ber"], -auc) < (best["val_ber"], -best_auc)


def read_best(output: str) -> dict | None:
    path = os.path.join(checkpoint_dir(output), BEST_FILE)
    if not os.path.exists(path) or not os.path.exists(os.path.join(output, S.MODEL_FILE)):
        return None
    with open(path) as f:
        return json.load(f)


def save_best_model(p: TrainParams, model, record: dict) -> None:
    """The chief writes ``model.keras`` (atomically) and ``best.json``."""
    tmp = os.path.join(p.output, f".{S.MODEL_FILE}.tmp-{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, os.path.join(p.output, S.MODEL_FILE))
    tmp_json = os.path.join(checkpoint_dir(p.output), f".{BEST_FILE}.tmp")
    with open(tmp_json, "w") as f:
        json.dump(record, f)
    os.replace(tmp_json, os.path.join(checkpoint_dir(p.output), BEST_FILE))


def _log_start(w: WorkerContext, p: TrainParams, shard: Shard, replica: Replica, steps: int) -> None:
    if w.is_chief:
        LOG.info("training %s on %d images (%s), %d validation rows on this worker, %d workers x batch %d, "
                 "%d steps/epoch, epochs %d..%d%s", p.architecture, shard.total, shard.counts,
                 len(shard.val_y), w.num_workers, p.batch_size, steps, replica.start + 1, p.epochs,
                 f" (resumed from {replica.latest})" if replica.latest else "")


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
        replica = build_replica(strategy, p, w, steps)
        start_checksum = weights_checksum(replica.model)
        _log_start(w, p, shard, replica, steps)
        train_step = make_train_step(strategy, replica.model, replica.optimizer, global_batch, p, w.rank)
        history, best = self.epochs(w, shard, replica, train_step, steps, global_batch)
        if not w.is_chief:
            shutil.rmtree(replica.own_dir, ignore_errors=True)
        elif not os.path.exists(os.path.join(p.output, S.MODEL_FILE)):
            save_best_model(p, replica.model, {"epoch": replica.start, "val_ber": float("nan"),
                                               "val_auc": float("nan")})
        return {"rank": w.rank, "shard": int(len(shard.y)), "start_epoch": replica.start + 1,
                "start_checksum": start_checksum, "resumed_from": replica.latest, "history": history,
                "best": best, "steps_per_epoch": steps, "global_batch": global_batch, "total": shard.total,
                "class_counts": {str(k): v for k, v in shard.counts.items()},
                "class_weights": [float(c) for c in shard.class_weights],
                "final_checksum": weights_checksum(replica.model)}

    def epochs(self, w: WorkerContext, shard: Shard, replica: Replica, train_step, steps: int,
               global_batch: int) -> tuple[list[dict], dict | None]:
        """Train the remaining epochs (early stopping after ``patience`` epochs without a better
        validation BER); the chief keeps the best epoch's model.  Returns ``(history, best)``."""
        p = self.params
        best = read_best(p.output) if replica.start else None
        history = []
        started = time.perf_counter()
        for epoch in range(replica.start, p.epochs):
            if best is not None and p.patience and epoch - best["epoch"] >= p.patience:
                if w.is_chief:
                    LOG.info("early stop after epoch %d: no better validation BER since epoch %d",
                             epoch, best["epoch"])
                break
            loss, train_ber, seconds = train_epoch(train_step, shard, p, epoch, w.rank, steps)
            t0 = time.perf_counter()
            record = {"epoch": epoch + 1, "loss": loss, "train_ber": train_ber, "seconds": round(seconds, 3),
                      "learning_rate": current_learning_rate(replica.optimizer),
                      "images_per_s": round(steps * global_batch / seconds, 1),
                      **validate(w, replica.model, shard), "val_seconds": 0.0,
                      "checksum": weights_checksum(replica.model)}
            record["val_seconds"] = round(time.perf_counter() - t0, 3)
            if is_better(record, best):
                best = {k: record[k] for k in ("epoch", "val_ber", "val_auc", "val_threshold")}
                if w.is_chief:
                    save_best_model(p, replica.model, best)
            replica.epoch_var.assign(epoch + 1)
            replica.manager.save(checkpoint_number=epoch + 1)
            history.append(record)
            if w.is_chief:
                elapsed = time.perf_counter() - started
                eta = elapsed / (epoch + 1 - replica.start) * (p.epochs - epoch - 1)
                LOG.info("epoch %d/%d: loss %.4f, training BER %.4f, %.1fs, %.0f images/s; validation BER %.4f, "
                         "AUC %.4f%s; elapsed %.0fs, ETA %.0fs", epoch + 1, p.epochs, loss, train_ber, seconds,
                         record["images_per_s"], record["val_ber"], record["val_auc"],
                         " (best)" if best["epoch"] == epoch + 1 else "", elapsed, eta)
        return history, best
