"""The one SparkSession builder used by jobs and tests."""
from __future__ import annotations

import os
import sys
from functools import partial
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from batchml.config import SparkSettings

#: a lookup table (id map, bias or factor table) is broadcast to a join with a big table when
#: rows × values-per-row is at most this (3M narrow rows: Netflix's 480k users fit, Amazon's tens
#: of millions do not; rank-50 factors: ~170k rows), so the big side is not shuffled.
BROADCAST_MAX_VALUES = 9_000_000

#: Test-only fault injection (tests/test_faults_retry.py): a Spark conf key naming fault points
#: (comma-separated, or ``*`` for all).  At a named :func:`fault_point` the first attempt of every
#: even-numbered task fails, so a run with ``spark.task.maxFailures`` > 1 (``local[N,F]``) must
#: retry them; its output must equal a clean run's.  Unset (always, outside the tests): no-op.
FAULT_CONF = "spark.batchml.test.failFirstAttempt"


def launched_by_spark_submit() -> bool:
    """True when this Python process was started by ``spark-submit`` (the JVM already exists and
    spark-submit's ``--master`` and memory settings are in force)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(settings: SparkSettings, app_name: str | None = None) -> SparkSession:
    """Build (or return the active) SparkSession from :class:`SparkSettings`.

    Under ``spark-submit`` the master and driver memory come from spark-submit; run directly with
    ``python jobs/x.py`` they come from the settings.  Python workers use this interpreter unless
    ``PYSPARK_PYTHON`` says otherwise.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name or settings.app_name)
    if not launched_by_spark_submit():
        if settings.master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(settings.master).config("spark.driver.memory", settings.driver_memory)
    conf = {
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.sql.files.maxPartitionBytes": f"{settings.max_partition_mb}m",
        "spark.ui.enabled": "true" if settings.ui else "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "true",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        # a barrier stage (distributed TensorFlow) asking for more slots than exist fails in
        # seconds instead of retrying for ten minutes
        "spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures": "3",
        "spark.scheduler.barrier.maxConcurrentTasksCheck.interval": "2s",
    }
    conf.update(settings.extra)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    if settings.checkpoint_dir:
        spark.sparkContext.setCheckpointDir(settings.checkpoint_dir)
    return spark


def local_frame(spark: SparkSession, rows: Sequence[tuple], schema: T.StructType | str) -> DataFrame:
    """A small DataFrame of driver-side ``rows`` (tuples in the order of ``schema``'s fields): see
    :func:`local_columns`."""
    if isinstance(schema, str):
        schema = T.StructType.fromDDL(schema)
    columns = list(zip(*rows)) if rows else [() for _ in schema.fields]
    return local_columns(spark, columns, schema)


def local_columns(spark: SparkSession, columns: Sequence, schema: T.StructType | str) -> DataFrame:
    """A small DataFrame of driver-side ``columns`` (sequences or numpy arrays, in the order of
    ``schema``'s fields), handed to the JVM as one Arrow table: unlike a list of tuples, reading it
    starts no Python worker."""
    if isinstance(schema, str):
        schema = T.StructType.fromDDL(schema)
    arrow_schema = to_arrow_schema(schema)
    arrays = [pa.array(c if isinstance(c, np.ndarray) else list(c), type=f.type)
              for c, f in zip(columns, arrow_schema)]
    return spark.createDataFrame(pa.Table.from_arrays(arrays, schema=arrow_schema), schema)


def maybe_broadcast(df: DataFrame, *, values_per_row: int = 3, n_rows: int | None = None) -> DataFrame:
    """``df`` with a broadcast hint when it is small (see :data:`BROADCAST_MAX_VALUES`); counts it
    unless ``n_rows`` is given (cache or checkpoint ``df`` first)."""
    n = df.count() if n_rows is None else n_rows
    return F.broadcast(df) if n * max(1, values_per_row) <= BROADCAST_MAX_VALUES else df


def fault_point(df: DataFrame, name: str) -> DataFrame:
    """``df`` itself; under the test-only :data:`FAULT_CONF` naming ``name``, ``df`` passed through
    a ``mapInArrow`` whose first attempt fails on even-numbered partitions."""
    points = df.sparkSession.conf.get(FAULT_CONF, "")
    if not points or (points != "*" and name not in points.split(",")):
        return df
    return df.mapInArrow(partial(_fail_first_attempt, name), df.schema)


def _fail_first_attempt(name: str, batches: Iterator) -> Iterator:
    ctx = TaskContext.get()
    if ctx is not None and ctx.attemptNumber() == 0 and ctx.partitionId() % 2 == 0:
        raise RuntimeError(f"batchml test fault at {name}: first attempt of partition {ctx.partitionId()}")
    yield from batches


def materialize(df: DataFrame) -> DataFrame:
    """``df`` computed once and its lineage cut: a local checkpoint in local mode (fast, in the
    executors' block stores), a reliable checkpoint to the session's checkpoint dir on a cluster,
    where a local checkpoint cannot survive the loss of an executor (Spark's documentation)."""
    df = fault_point(df, "materialize")
    sc = df.sparkSession.sparkContext
    if sc.master.startswith("local") or sc.getCheckpointDir() is None:
        return df.localCheckpoint(eager=True)
    return df.checkpoint(eager=True)


def with_global_row_number(df: DataFrame, order: list, col_out: str) -> DataFrame:
    """``df`` plus ``col_out`` int = row_number() over the whole table in ``order`` (make it a
    total order, e.g. end with a unique key), without the single-partition window Spark would
    use: a range-partitioned sort (materialized once), row numbers within each partition, plus the
    number of rows in the partitions before it."""
    pid, local = "_gr_pid", "_gr_local"
    ranked = materialize(df.sort(*order).withColumn(pid, F.spark_partition_id()))
    counts = sorted((r[pid], r["n"]) for r in ranked.groupBy(pid).agg(F.count(F.lit(1)).alias("n"))
                    .collect())
    offsets, total = [], 0
    for p, n in counts:
        offsets.append((p, total))
        total += n
    spark = df.sparkSession
    offset_df = local_frame(spark, offsets, f"{pid} int, _gr_offset long")
    window = Window.partitionBy(pid).orderBy(*order)
    return (ranked.withColumn(local, F.row_number().over(window))
            .join(F.broadcast(offset_df), on=pid, how="left")
            .withColumn(col_out, (F.col("_gr_offset") + F.col(local)).cast("int"))
            .drop(pid, local, "_gr_offset"))
