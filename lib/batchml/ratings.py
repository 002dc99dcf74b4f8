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
* a directory    — an explicit ratings table (user_idx, item_idx, rating), removed from training by
  an anti-join likewise.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window as W
from pyspark.sql import functions as F


from batchml.errors import InputError
from batchml.io.atomic import exists
from batchml.schema import ITEM_COL, PROBE, RATING_COL, TS_COL, USER_COL
from batchml.holdout_spec import TestSpec, parse_test_spec

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
    pairs = holdout_df.select(*keys).distinct()
    train = ratings_df.join(pairs, on=keys, how="left_anti")
    if col_rating in holdout_df.columns:
        test = (holdout_df.select(*keys, F.col(col_rating).cast("float").alias(col_rating))
                .dropDuplicates(keys))
    else:
        test = ratings_df.join(pairs, on=keys, how="left_semi")
    return train, test


@dataclass
class TestSplit:
    """(train, test) of a ``--test`` spec; ``holdout_path`` is the table read for probe / a dir."""

    train: DataFrame
    test: DataFrame
    spec: TestSpec
    holdout_path: str | None = None


def read_test_split(spark: SparkSession, ratings_df: DataFrame, *, dataset: str, spec: str,
                    seed: int) -> TestSplit:
    """Split ``ratings_df`` by a ``--test`` spec (see the module docstring).

    ``random:F`` / ``temporal:F`` are re-created from ``seed`` (the same rows for the same seed);
    ``probe`` reads ``DATASET/probe``; anything else is a directory of pairs or ratings.

    Raises
    ------
    ConfigError for a malformed spec; InputError when the held-out table does not exist.
    """
    ts = parse_test_spec(spec)
    if ts.kind == "random":
        return TestSplit(*split_random(ratings_df, fraction=ts.fraction, seed=seed), spec=ts)
    if ts.kind == "temporal":
        return TestSplit(*split_temporal(ratings_df, fraction=ts.fraction, seed=seed), spec=ts)
    path = f"{dataset}/{PROBE}" if ts.kind == "probe" else ts.path
    if not exists(path):
        raise InputError(f"test set {path} does not exist"
                         + (" (the dataset has no probe table)" if ts.kind == "probe" else ""))
    train, test = split_holdout(ratings_df, spark.read.parquet(path))
    return TestSplit(train, test, spec=ts, holdout_path=path)
