"""Train / validation / test splits of the reviews by a hash of the review id.

A review's side depends only on ``(seed, review_id)`` (``xxhash64``), never on ``rand()`` or on the
partitioning: a re-run, a retried task or another ingest of the same files puts it on the same side,
and the three sides are disjoint by construction (one column, one value per row).
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.schema import REVIEW_ID_COL

SPLIT_COL = "split"
TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)
_BUCKETS = 1_000_000


def hash_fraction(key: str, seed: int):
    """A column in [0, 1): the hash of ``(seed, key)`` in one of a million buckets."""
    return F.pmod(F.xxhash64(F.lit(int(seed)), F.col(key)), F.lit(_BUCKETS)) / F.lit(float(_BUCKETS))


def with_split(df: DataFrame, *, validation: float, test: float, seed: int,
               key: str = REVIEW_ID_COL) -> DataFrame:
    """``df`` plus ``split``: ``test`` where the hash fraction of ``(seed, key)`` is below ``test``,
    ``validation`` below ``test + validation``, ``train`` otherwise."""
    u = hash_fraction(key, seed)
    side = F.when(u < test, F.lit(TEST)).when(u < test + validation, F.lit(VALIDATION)).otherwise(F.lit(TRAIN))
    return df.withColumn(SPLIT_COL, side)


def split_frames(df: DataFrame) -> dict[str, DataFrame]:
    """The rows of each side of a :func:`with_split` frame (without the ``split`` column)."""
    return {name: df.where(F.col(SPLIT_COL) == name).drop(SPLIT_COL) for name in SPLITS}
