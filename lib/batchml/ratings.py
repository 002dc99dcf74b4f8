"""Held-out splits of a ratings table, and the ``--test`` spec that names one (the one home of both;
the factorize and recommend jobs read their test rows through :func:`read_test_split`).

Splits (held-out test and validation sets)
------------------------------------------
Every split is deterministic: a row's side is decided by a hash of (seed, user, item), never by
``rand()``, so re-running a job (or re-computing a lost partition) puts each row on the same side.

* ``random:F``   — each rating goes to the test side when its hash fraction is below F.
* ``temporal:F`` — per user, the latest ``floor(F * n_u)`` ratings by ``ts`` (ties and null
  timestamps ordered by the hash) go to the test side; users with fewer than 1/F ratings keep all
  of theirs in training.
* ``probe``      — the dataset's ``probe`` pairs; their ratings are taken from the ratings table
  (or from the probe table when it carries a ``rating`` column), and they are removed from training
  by an anti-join.
* a dataset dir  — another ingest's output (``ratings/``, ``users/``, ``items/``), e.g. the test
  file of a predefined split ingested on its own: its rows are mapped to the training dataset's
  indices through the source ids (``user_id``, ``item_id``), since two ingests number their ids
  independently.  An id the training dataset does not know gets a negative index of its own (never
  a training index), so the row stays in the test set and is scored by each model's fallback.
* ``cutoff:F``   — one global time cut-off: the latest F of all ratings by ``ts`` go to the test side,
  so no test rating precedes a training rating (ratings at the cut-off time or without a time
  stay in training).
* a directory    — a bare Parquet table of the training dataset's indices (user_idx, item_idx and
  optionally rating), removed from training by an anti-join likewise.

:func:`holdout_coverage` counts the test rows whose user or item has no training rating.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window as W
from pyspark.sql import functions as F
from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException, SparkRuntimeException

from batchml.errors import InputError, JobError
from batchml.holdout_spec import TestSpec, parse_test_spec
from batchml.io.atomic import exists
from batchml.schema import (ITEM_COL, ITEM_ID_COL, ITEMS, PROBE, RATING_COL, RATINGS, TS_COL, USER_COL,
                            USER_ID_COL, USERS)
from batchml.spark import maybe_broadcast

HASH_COL = "_split_hash"
_HASH_BUCKETS = 1 << 30


# --------------------------------------------------------------------------------------- splits
def with_split_hash(df: DataFrame, *, seed: int, col_user: str = USER_COL,
                    col_item: str = ITEM_COL, col_hash: str = HASH_COL) -> DataFrame:
    """Add a deterministic pseudo-uniform number in [0, 1) from (seed, user, item).

    Returns the input columns plus ``col_hash`` double.
    """
    h = F.xxhash64(F.lit(int(seed)), F.col(col_user), F.col(col_item))
    return df.withColumn(col_hash, F.pmod(h, F.lit(_HASH_BUCKETS)) / F.lit(float(_HASH_BUCKETS)))


def split_random(ratings_df: DataFrame, *, fraction: float, seed: int, col_user: str = USER_COL,
                 col_item: str = ITEM_COL) -> tuple[DataFrame, DataFrame]:
    """Split ratings into (train, test) by a hash of (seed, user, item); ~``fraction`` to test.

    Returns two DataFrames with the input columns.
    """
    cols = ratings_df.columns
    hashed = with_split_hash(ratings_df, seed=seed, col_user=col_user, col_item=col_item)
    is_test = F.col(HASH_COL) < F.lit(float(fraction))
    return hashed.where(~is_test).select(*cols), hashed.where(is_test).select(*cols)


def sample_users(ratings_df: DataFrame, *, fraction: float, seed: int,
                 col_user: str = USER_COL) -> DataFrame:
    """The ratings of a deterministic ~``fraction`` of the users (chosen by a hash of (seed,
    user)): every kept user keeps all their ratings.  ``fraction`` >= 1 keeps everything.

    Returns ``ratings_df``'s rows of the kept users, with its columns.
    """
    if fraction >= 1.0:
        return ratings_df
    h = F.pmod(F.xxhash64(F.lit(int(seed)), F.col(col_user)), F.lit(_HASH_BUCKETS))
    return ratings_df.where(h / F.lit(float(_HASH_BUCKETS)) < F.lit(float(fraction)))


def split_temporal(ratings_df: DataFrame, *, fraction: float, seed: int, col_user: str = USER_COL,
                   col_item: str = ITEM_COL, col_ts: str = TS_COL) -> tuple[DataFrame, DataFrame]:
    """Per user, put the latest ``floor(fraction * n_u)`` ratings in the test side.

    Ratings are ordered by ``col_ts`` descending (nulls count as oldest), ties by the split hash.

    Returns two DataFrames (train, test) with the input columns.
    """
    cols = ratings_df.columns
    by_user = W.partitionBy(col_user)
    newest_first = by_user.orderBy(F.col(col_ts).desc_nulls_last(), F.col(HASH_COL).asc(),
                                   F.col(col_item).asc())
    ranked = (
        with_split_hash(ratings_df, seed=seed, col_user=col_user, col_item=col_item)
        .withColumn("_n", F.count(F.lit(1)).over(
            by_user.rowsBetween(W.unboundedPreceding, W.unboundedFollowing)))
        .withColumn("_rn", F.row_number().over(newest_first))
    )
    is_test = F.col("_rn") <= F.floor(F.col("_n") * F.lit(float(fraction)))
    return ranked.where(~is_test).select(*cols), ranked.where(is_test).select(*cols)


def split_time_cutoff(ratings_df: DataFrame, *, fraction: float,
                      col_ts: str = TS_COL) -> tuple[DataFrame, DataFrame]:
    """One global time cut-off: ratings after the exact ``1 - fraction`` quantile of ``col_ts`` go
    to the test side, so no test rating precedes any training rating (``temporal:F`` cuts per user
    and can leak the future).  Ratings at the cut-off time and ratings without a time stay in
    training.

    Returns two DataFrames (train, test) with the input columns.
    """
    micros = F.unix_micros(F.col(col_ts))
    cut = ratings_df.agg(F.percentile(micros, F.lit(1.0 - float(fraction))).alias("c")).first()["c"]
    if cut is None:
        raise JobError(f"cutoff:{fraction:g} needs rating times, and no rating has one")
    is_test = F.coalesce(micros > F.lit(int(cut)), F.lit(False))
    return ratings_df.where(~is_test), ratings_df.where(is_test)


def split_holdout(ratings_df: DataFrame, holdout_df: DataFrame, *, col_user: str = USER_COL,
                  col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> tuple[DataFrame, DataFrame]:
    """Remove held-out (user, item) pairs from the ratings: (train, test).

    ``holdout_df`` holds pairs (Netflix probe) or ratings (an explicit test table).  Test ratings
    come from ``holdout_df`` when it has ``col_rating``, else from ``ratings_df`` (pairs that have no
    rating there are dropped from the test side).  Training is ``ratings_df`` anti-joined with the
    pairs, so no held-out pair can reach training.

    Returns two DataFrames: train with the columns of ``ratings_df``; test with ``col_user``,
    ``col_item``, ``col_rating`` and, where ``ratings_df`` has it, ``ts``.
    """
    keys = [col_user, col_item]
    pairs = maybe_broadcast(holdout_df.select(*keys).distinct(), values_per_row=len(keys))
    train = ratings_df.join(pairs, on=keys, how="left_anti")
    if col_rating in holdout_df.columns:
        test = (holdout_df.select(*keys, F.col(col_rating).cast("float").alias(col_rating))
                .dropDuplicates(keys))
    else:
        test = ratings_df.join(pairs, on=keys, how="left_semi")
    return train, test


@dataclass
class TestSplit:
    """(train, test) of a ``--test`` spec.  ``holdout_path`` is the table read for probe / a dir,
    ``holdout`` that table on the training dataset's indices (pairs, or ratings when
    ``holdout_rated``)."""

    train: DataFrame
    test: DataFrame
    spec: TestSpec
    holdout_path: str | None = None
    holdout: DataFrame | None = None
    holdout_rated: bool = True


def is_dataset_dir(path: str) -> bool:
    """Whether ``path`` holds the ratings and both id maps of an ingest."""
    return all(exists(f"{path}/{name}") for name in (RATINGS, USERS, ITEMS))


def _reindex(ids_df: DataFrame, map_df: DataFrame, *, col_idx: str, col_id: str) -> DataFrame:
    """(old ``col_idx``, new ``col_idx`` as ``_new``) of a foreign id map: the training index of the
    same source id, else −1 − old index (unique, never a training index)."""
    own = map_df.select(F.col(col_id).cast("string").alias(col_id), F.col(col_idx).alias("_new"))
    return (ids_df.select(col_idx, F.col(col_id).cast("string").alias(col_id))
            .join(own, on=col_id, how="left")
            .select(col_idx, F.coalesce(F.col("_new"), -1 - F.col(col_idx)).cast("int").alias("_new")))


def map_foreign_ratings(spark: SparkSession, path: str, *, dataset: str) -> DataFrame:
    """The ratings of the dataset dir ``path`` on the indices of ``dataset`` (through the source
    ids; unknown ids get negative indices, see the module docstring).

    Returns columns ``user_idx`` int, ``item_idx`` int, ``rating`` float (and ``ts`` when present).
    """
    raw = spark.read.parquet(f"{path}/{RATINGS}")
    users = _reindex(spark.read.parquet(f"{path}/{USERS}"), spark.read.parquet(f"{dataset}/{USERS}"),
                     col_idx=USER_COL, col_id=USER_ID_COL)
    items = _reindex(spark.read.parquet(f"{path}/{ITEMS}"), spark.read.parquet(f"{dataset}/{ITEMS}"),
                     col_idx=ITEM_COL, col_id=ITEM_ID_COL)
    extra = [TS_COL] if TS_COL in raw.columns else []
    return (raw.join(users, on=USER_COL, how="inner").drop(USER_COL).withColumnRenamed("_new", USER_COL)
            .join(items, on=ITEM_COL, how="inner").drop(ITEM_COL).withColumnRenamed("_new", ITEM_COL)
            .select(USER_COL, ITEM_COL, F.col(RATING_COL).cast("float").alias(RATING_COL), *extra))


def read_index_table(spark: SparkSession, path: str) -> DataFrame:
    """A bare Parquet table of (user_idx, item_idx[, rating]); :class:`InputError` when ``path`` is
    not one (nor a dataset dir)."""
    try:
        df = spark.read.parquet(path)
    except (AnalysisException, SparkRuntimeException, Py4JJavaError) as exc:
        raise InputError(f"test set {path} is neither a dataset dir (ratings/, users/, items/ of "
                         f"jobs/ingest.py) nor a Parquet table of user_idx, item_idx[, rating] "
                         f"({str(exc).splitlines()[0][:200]})") from None
    missing = [c for c in (USER_COL, ITEM_COL) if c not in df.columns]
    if missing:
        raise InputError(f"test set {path} is neither a dataset dir nor a table of {USER_COL}, "
                         f"{ITEM_COL}[, {RATING_COL}]: it lacks {', '.join(missing)}")
    return df


def read_test_split(spark: SparkSession, ratings_df: DataFrame, *, dataset: str, spec: str,
                    seed: int) -> TestSplit:
    """Split ``ratings_df`` by a ``--test`` spec (see the module docstring).

    ``random:F`` / ``temporal:F`` are re-created from ``seed`` (the same rows for the same seed);
    ``probe`` reads ``DATASET/probe``; anything else is a dataset dir or a table of our indices.

    Raises
    ------
    ConfigError for a malformed spec; InputError when the held-out table does not exist or is
    neither a dataset dir nor a table of indices.
    """
    ts = parse_test_spec(spec)
    if ts.kind == "random":
        return TestSplit(*split_random(ratings_df, fraction=ts.fraction, seed=seed), spec=ts)
    if ts.kind == "temporal":
        return TestSplit(*split_temporal(ratings_df, fraction=ts.fraction, seed=seed), spec=ts)
    if ts.kind == "cutoff":
        return TestSplit(*split_time_cutoff(ratings_df, fraction=ts.fraction), spec=ts)
    path = f"{dataset}/{PROBE}" if ts.kind == "probe" else ts.path
    if not exists(path):
        raise InputError(f"test set {path} does not exist"
                         + (" (the dataset has no probe table)" if ts.kind == "probe" else ""))
    if ts.kind == "dir" and is_dataset_dir(path):
        holdout = map_foreign_ratings(spark, path, dataset=dataset)
    else:
        holdout = read_index_table(spark, path)
    train, test = split_holdout(ratings_df, holdout)
    return TestSplit(train, test, spec=ts, holdout_path=path, holdout=holdout,
                     holdout_rated=RATING_COL in holdout.columns)


def holdout_coverage(train_df: DataFrame, test_df: DataFrame, *, col_user: str = USER_COL,
                  col_item: str = ITEM_COL) -> dict:
    """How much of the test set training knows: ``test_rows``; ``unknown_users`` /
    ``unknown_items``, the distinct test users / items without a training rating;
    ``unknown_user_rows`` / ``unknown_item_rows``, the test rows they hold (those rows are scored by
    the models' fallbacks, never dropped)."""
    out = {"test_rows": test_df.count()}
    for side, key in (("user", col_user), ("item", col_item)):
        known = train_df.select(key).distinct()
        unknown = test_df.select(key).join(known, on=key, how="left_anti")
        row = unknown.agg(F.count(F.lit(1)).alias("rows"),
                          F.countDistinct(F.col(key)).alias("ids")).first()
        out[f"unknown_{side}s"] = int(row["ids"])
        out[f"unknown_{side}_rows"] = int(row["rows"])
    return out
