"""Distributed training of the tumor CNN, the driver's side: deal the train and validation rows to
the workers, check that the output's checkpoints belong to this run (:mod:`batchml.tumor.checkpoints`),
run one Spark barrier task per worker (:mod:`batchml.tumor.worker`), then score every split with
the best epoch's model and report the test split once, at the threshold chosen on validation.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.config import TumorSettings
from batchml.distributed import run_on_barrier
from batchml.errors import InputError, JobError
from batchml.io.atomic import atomic_dir, exists, read_json, write_json
from batchml.logs import stage
from batchml.schema import METRICS_FILE, STATS_FILE
from batchml.tumor import schema as S
from batchml.tumor.checkpoints import (checkpoint_dir, claim_checkpoints, clean_scratch, data_fingerprint,
                                       run_identity)
from batchml.tumor.evaluate import draw_grid, evaluate, with_predictions
from batchml.tumor.worker import TrainParams, WorkerTrainer

LOG = logging.getLogger("batchml.tumor")

# _stats.json keys of the prepared data that change its pixels or its split
PREPARED_KEYS = ("size", "test_fraction", "validation_fraction", "seed", "preprocessing")


def read_images(spark: SparkSession, data_dir: str) -> DataFrame:
    """The image shards written by :mod:`batchml.tumor.prepare` (every split)."""
    path = f"{data_dir.rstrip('/')}/{S.IMAGES}"
    if not exists(path):
        raise InputError(f"{data_dir} has no {S.IMAGES}/ table: run jobs/tumor_prepare.py first")
    return spark.read.parquet(path)


def read_split(spark: SparkSession, data_dir: str, split: str) -> DataFrame:
    """Rows of one split of the image shards."""
    return read_images(spark, data_dir).where(F.col(S.SPLIT_COL) == split)


def _dealt(df: DataFrame, workers: int):
    """``(worker, row)`` pairs: rows ordered by hash, dealt round-robin."""
    return df.orderBy(S.HASH_COL).rdd.zipWithIndex().map(lambda ri: (ri[1] % workers, ri[0]))


def worker_shards(fit_df: DataFrame, workers: int):
    """An RDD of ``(label, hash, pixels, split)`` rows with exactly ``workers`` partitions: the train
    rows and the validation rows are each dealt round-robin in hash order, so every worker gets an
    equal share (+-1) of both and the shards are deterministic."""
    cols = (S.LABEL_COL, S.HASH_COL, S.PIXELS_COL, S.SPLIT_COL)
    train = _dealt(fit_df.where(F.col(S.SPLIT_COL) == S.TRAIN).select(*cols), workers)
    val = _dealt(fit_df.where(F.col(S.SPLIT_COL) == S.VALIDATION).select(*cols), workers)
    return train.union(val).partitionBy(workers, lambda k: k).values()


def image_size(df: DataFrame) -> int:
    sizes = [r[S.SIZE_COL] for r in df.select(S.SIZE_COL).distinct().limit(2).collect()]
    if len(sizes) != 1:
        raise JobError(f"the image shards must have one size, found {sizes or 'no images'}")
    return int(sizes[0])


def _identity(spark: SparkSession, fit_df: DataFrame, data_dir: str, params: TrainParams, workers: int) -> dict:
    """The run identity of :mod:`batchml.tumor.checkpoints`: training settings and a fingerprint of
    the train and validation rows and of the preparation settings."""
    stats_path = f"{data_dir.rstrip('/')}/{STATS_FILE}"
    stats = read_json(stats_path) if exists(stats_path) else {}
    rows = [(r[S.HASH_COL], int(r[S.LABEL_COL]), r[S.SPLIT_COL])
            for r in fit_df.select(S.HASH_COL, S.LABEL_COL, S.SPLIT_COL).collect()]
    return run_identity(asdict(params), data_fingerprint(rows, {k: stats.get(k) for k in PREPARED_KEYS}),
                        workers)


@dataclass
class TrainResult:
    workers: list[dict]
    size: int
    seconds: float
    params: dict = field(default_factory=dict)


def _worker_failure(exc: Exception) -> JobError:
    """One readable line for a failed barrier stage: a library error raised in a worker, or the
    first line of Spark's reason (a killed worker, say)."""
    text = str(exc)
    m = re.search(r"batchml\.[\w.]*?(\w*Error): ([^\n]+)", text)
    if m:
        return JobError(m.group(2))
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return JobError(f"training failed on a worker ({first[:300]}); re-run the same command to resume "
                    "from the last checkpoint")


def train_distributed(spark: SparkSession, settings: TumorSettings, data_dir: str, output: str) -> TrainResult:
    """Train on the train split of ``data_dir`` with ``settings.workers`` barrier tasks, choosing the
    epoch on its validation split; checkpoints and the model go under ``output`` (which must be on
    storage every worker sees).  A re-run resumes only a run of the same inputs."""
    workers = settings.workers
    fit_df = read_images(spark, data_dir).where(F.col(S.SPLIT_COL).isin(S.TRAIN, S.VALIDATION))
    size = image_size(fit_df)
    params = TrainParams.from_settings(settings, os.path.abspath(output) if "://" not in output else output,
                                       size)
    with stage("shard the train split", spark) as st:
        shards = worker_shards(fit_df, workers)
        st.set_rows(fit_df.where(F.col(S.SPLIT_COL) == S.TRAIN).count())
        if st.rows < workers:
            raise JobError(f"{st.rows} training images cannot feed {workers} workers")
        resumable = claim_checkpoints(params.output, _identity(spark, fit_df, data_dir, params, workers))
    LOG.info("%s checkpoints in %s", "resuming from the" if resumable else "no",
             checkpoint_dir(params.output))
    clean_scratch(params.output)
    t0 = time.perf_counter()
    try:
        with stage(f"train on {workers} workers", spark):
            results = run_on_barrier(spark, WorkerTrainer(params), workers, shards,
                                     port_range=settings.port_range, threads=settings.threads_per_worker,
                                     use_gpu=settings.use_gpu)
    except JobError:
        raise
    except Exception as exc:  # noqa: BLE001  (Py4J: a worker raised or died)
        raise _worker_failure(exc) from None
    finally:
        clean_scratch(params.output)
    seconds = time.perf_counter() - t0
    write_json(os.path.join(params.output, S.HISTORY_FILE),
               {"params": asdict(params), "workers": results, "seconds": seconds})
    return TrainResult(workers=results, size=size, seconds=seconds, params=asdict(params))


def train_and_evaluate(spark: SparkSession, settings: TumorSettings, data_dir: str, output: str) -> dict:
    """Train (resuming from ``output``'s checkpoints), then score every split with the best epoch's
    model, choose the threshold on validation, score the test split once, and write ``metrics.json``, ``predictions/`` (Parquet) and ``test_grid.png`` under ``output``.

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
    images = read_images(spark, data_dir)
    preds, pdf = _predict(spark, images, os.path.join(output, S.MODEL_FILE), result.size, output, timings)
    metrics = _score_test_once(pdf, data_dir)
    with stage("grid of test scans", spark, timings):
        if settings.grid_images:
            _draw_test_grid(preds, images, settings.grid_images, metrics["threshold"], result.size,
                            os.path.join(output, S.GRID_FILE))
    timings["total"] = round(time.perf_counter() - t0, 3)
    metrics.update(_training_summary(result, data_dir, timings))
    write_json(os.path.join(output, METRICS_FILE), metrics)
    LOG.info("test BER %.4f (threshold %.3f from the %s split), accuracy %.4f, ROC AUC %.4f",
             metrics["ber"], metrics["threshold"], metrics["threshold_from"], metrics["accuracy"],
             metrics["roc_auc"])
    return metrics


def _score_test_once(pdf: pd.DataFrame, data_dir: str) -> dict:
    """Test figures at the threshold chosen on the validation split (the train split where the data
    has none: prepared before validation splits existed)."""
    te = pdf[pdf[S.SPLIT_COL] == S.TEST]
    if te.empty:
        raise JobError(f"{data_dir} has no test images")
    source = S.VALIDATION if (pdf[S.SPLIT_COL] == S.VALIDATION).any() else S.TRAIN
    if source == S.TRAIN:
        LOG.warning("%s has no validation split (re-run jobs/tumor_prepare.py): the threshold is chosen "
                    "on the train split", data_dir)
    va = pdf[pdf[S.SPLIT_COL] == source]
    metrics = evaluate(va[S.LABEL_COL].to_numpy(), va[S.PROB_COL].to_numpy(),
                       te[S.LABEL_COL].to_numpy(), te[S.PROB_COL].to_numpy())
    metrics["threshold_from"] = source
    metrics["train_images"] = int((pdf[S.SPLIT_COL] == S.TRAIN).sum())
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
        "history": history, "best_epoch": (chief["best"] or {}).get("epoch"),
        "images_per_s": (round(sum(h["images_per_s"] for h in history) / len(history), 1)
                         if history else None),
        "worker_checksums": [w["final_checksum"] for w in result.workers],
        "timings_s": timings,
    }
