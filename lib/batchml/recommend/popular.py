"""The popular list for new users: items by shrunk mean rating, and by the model's item bias.

The shrunk (Bayesian) mean

    shrunk_i = (n_i · mean_i + m · μ) / (n_i + m)

pulls an item with few ratings toward the global mean μ with the weight of ``m`` (prior strength)
pseudo-ratings, so two 5-star ratings do not beat ten thousand ratings averaging 4.6.  The model's
item bias b_i gives a second ranking (``bias_rank``).

The formula (:func:`shrunk_mean`) and both orders (:func:`shrunk_order`, :func:`bias_order`) are
written once here and used by the Spark job (:func:`popular_items`) and the terminal query and
web page (:func:`popular_items_streamed`, :func:`items_by_bias_pandas`) alike.  The streamed list
reads the ratings as Arrow record batches and keeps per-item counts and sums in numpy arrays
indexed by the dense item index: O(items) memory, whatever the number of ratings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batchml.recommend.scoring import ItemArrays
from batchml.schema import (BIAS_COL, BIAS_RANK_COL, COUNT_COL, ITEM_COL, MEAN_COL, RANK_COL,
                            RATING_COL, SHRUNK_COL)
from batchml.spark import with_global_row_number

Numbers = TypeVar("Numbers", Column, pd.Series)
Order = Sequence[tuple[str, bool]]   # (column, ascending) pairs, most significant first


# ------------------------------------------------------------------------------ formula, orders
def shrunk_mean(n: Numbers, mean: Numbers, *, mu: float, prior_strength: float) -> Numbers:
    """(n·mean + m·μ) / (n + m), of Spark columns or pandas Series alike."""
    m = float(prior_strength)
    return (n * mean + m * float(mu)) / (n + m)


def shrunk_order(col_item: str = ITEM_COL) -> Order:
    """The popular-list order: shrunk mean descending, ties by more ratings then smaller index."""
    return [(SHRUNK_COL, False), (COUNT_COL, False), (col_item, True)]


def bias_order(col_item: str = ITEM_COL) -> Order:
    """The bias ranking: model item bias descending (nulls last), ties by smaller index."""
    return [(BIAS_COL, False), (col_item, True)]


def _spark_order(order: Order) -> list[Column]:
    # Spark's desc() puts nulls last, as pandas' sort_values does
    return [F.col(c).asc() if ascending else F.col(c).desc() for c, ascending in order]


def _sort_pandas(pdf: pd.DataFrame, order: Order) -> pd.DataFrame:
    return pdf.sort_values([c for c, _ in order], ascending=[a for _, a in order])


# ------------------------------------------------------------------------------------- Spark
def item_rating_stats(ratings_df: DataFrame, *, col_item: str = ITEM_COL,
                      col_rating: str = RATING_COL) -> DataFrame:
    """Per item: ``n_ratings`` long and ``mean_rating`` double."""
    return (ratings_df.groupBy(col_item)
            .agg(F.count(F.lit(1)).alias(COUNT_COL),
                 F.avg(F.col(col_rating).cast("double")).alias(MEAN_COL)))


def popular_items(ratings_df: DataFrame, *, prior_strength: float, min_ratings: int = 0,
                  mu: float | None = None, item_bias_df: DataFrame | None = None,
                  col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> DataFrame:
    """Items ranked by shrunk mean rating (and by model item bias when given).

    Parameters
    ----------
    ratings_df : ratings to average.
    prior_strength : m, the number of pseudo-ratings at the global mean added to every item.
    min_ratings : items with fewer ratings are left out.
    mu : the global mean (default: the mean of ``ratings_df``).
    item_bias_df : ``col_item``, ``bias`` (the model's b_i).

    Returns
    -------
    DataFrame ``popular``: ``item_idx`` int, ``n_ratings`` long, ``mean_rating`` double,
    ``shrunk_mean`` double, ``bias`` double (null without a model bias), ``rank`` int (by shrunk
    mean, ties by more ratings then smaller index), ``bias_rank`` int (by bias, nulls last).
    Empty ratings give an empty table.
    """
    if mu is None:
        mu = ratings_df.agg(F.avg(F.col(col_rating).cast("double"))).first()[0]
        mu = float(mu) if mu is not None else 0.0
    stats = item_rating_stats(ratings_df, col_item=col_item, col_rating=col_rating)
    if min_ratings > 0:
        stats = stats.where(F.col(COUNT_COL) >= min_ratings)
    if item_bias_df is not None:
        stats = stats.join(item_bias_df.select(col_item, F.col(BIAS_COL).cast("double")),
                           on=col_item, how="left")
    else:
        stats = stats.withColumn(BIAS_COL, F.lit(None).cast("double"))
    stats = stats.withColumn(SHRUNK_COL, shrunk_mean(F.col(COUNT_COL), F.col(MEAN_COL), mu=mu,
                                                     prior_strength=prior_strength))
    ranked = with_global_row_number(
        with_global_row_number(stats, _spark_order(shrunk_order(col_item)), RANK_COL),
        _spark_order(bias_order(col_item)), BIAS_RANK_COL)
    return (ranked
            .select(F.col(col_item).cast("int").alias(col_item), COUNT_COL, MEAN_COL, SHRUNK_COL,
                    BIAS_COL, F.col(RANK_COL).cast("int"), F.col(BIAS_RANK_COL).cast("int")))


def popular_item_arrays(popular_pdf: pd.DataFrame, *, col_item: str = ITEM_COL) -> ItemArrays:
    """Candidate arrays scoring every item by its shrunk mean (the popular-list baseline)."""
    pdf = popular_pdf.sort_values(col_item)
    return ItemArrays(idx=pdf[col_item].to_numpy(np.int32),
                      offset=pdf[SHRUNK_COL].to_numpy(np.float64), factors=None)


# ------------------------------------------------------------------------ streamed (no Spark)
@dataclass(frozen=True)
class ItemTotals:
    """Per-item rating counts and sums indexed by the dense item index, and the global mean."""

    count: np.ndarray   # int64 (max item index + 1,)
    total: np.ndarray   # float64, same shape

    @property
    def n_ratings(self) -> int:
        return int(self.count.sum())

    @property
    def mu(self) -> float:
        """The mean of every rating (0 without ratings)."""
        n = self.n_ratings
        return float(self.total.sum()) / n if n else 0.0


def _grow(arr: np.ndarray, size: int) -> np.ndarray:
    return arr if len(arr) >= size else np.concatenate([arr, np.zeros(size - len(arr), arr.dtype)])


def item_totals(batches: Iterable[pa.RecordBatch], *, col_item: str = ITEM_COL,
                col_rating: str = RATING_COL) -> ItemTotals:
    """Accumulate :class:`ItemTotals` over record batches holding ``col_item`` (dense, >= 0) and
    ``col_rating``; memory is O(items), not O(ratings)."""
    count, total = np.zeros(0, np.int64), np.zeros(0, np.float64)
    for batch in batches:
        items = batch.column(col_item).to_numpy(zero_copy_only=False).astype(np.int64)
        if not len(items):
            continue
        ratings = batch.column(col_rating).to_numpy(zero_copy_only=False).astype(np.float64)
        size = int(items.max()) + 1
        count, total = _grow(count, size), _grow(total, size)
        count[:size] += np.bincount(items, minlength=size)
        total[:size] += np.bincount(items, weights=ratings, minlength=size)
    return ItemTotals(count=count, total=total)


def popular_items_streamed(totals: ItemTotals, *, prior_strength: float, mu: float | None = None,
                           min_ratings: int = 0, col_item: str = ITEM_COL) -> pd.DataFrame:
    """:func:`popular_items` of :func:`item_totals` without Spark (no bias columns).

    Returns
    -------
    pandas DataFrame ``col_item``, ``n_ratings``, ``mean_rating``, ``shrunk_mean`` in popular-list
    order (items with no rating, or fewer than ``min_ratings``, left out).
    """
    rated = np.flatnonzero(totals.count >= max(1, min_ratings))
    n = totals.count[rated]
    stats = pd.DataFrame({col_item: rated.astype(np.int64), COUNT_COL: n,
                          MEAN_COL: totals.total[rated] / n})
    stats[SHRUNK_COL] = shrunk_mean(stats[COUNT_COL], stats[MEAN_COL],
                                    mu=totals.mu if mu is None else mu, prior_strength=prior_strength)
    return _sort_pandas(stats, shrunk_order(col_item))


def items_by_bias_pandas(items_pdf: pd.DataFrame, *, min_ratings: int = 0,
                         col_item: str = ITEM_COL) -> pd.DataFrame:
    """The model's items with a bias (and at least ``min_ratings`` ratings when the table has
    ``n_ratings``), in bias-rank order."""
    items = items_pdf[items_pdf[BIAS_COL].notna()]
    if min_ratings and COUNT_COL in items.columns:
        items = items[items[COUNT_COL].fillna(0) >= min_ratings]
    return _sort_pandas(items, bias_order(col_item))
