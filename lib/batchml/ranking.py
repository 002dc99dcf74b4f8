"""Ranking metrics of top-k lists against held-out ratings, as Spark aggregations.

Definitions (per user u with R_u = the held-out items u rated >= the relevance threshold, R_u
non-empty; L_u = u's list, ranks 1..k; hit(i) = 1 when the item at rank i is in R_u):

    precision@k = Σ_i≤k hit(i) / k
    recall@k    = Σ_i≤k hit(i) / |R_u|
    NDCG@k      = DCG / IDCG,  DCG = Σ_i≤k hit(i) / log2(i + 1),  IDCG = Σ_i≤min(|R_u|,k) 1 / log2(i + 1)
    AP@k        = Σ_i≤k hit(i) · precision@i / min(|R_u|, k)

and each metric is the mean over the users with a non-empty R_u (a user with no list scores 0).
Catalog coverage = distinct recommended items / catalog size; mean popularity = mean number of
training ratings of the recommended items (one term per recommendation).
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F, Window as W

from batchml.schema import ITEM_COL, RATING_COL, USER_COL

RANK_COL = "rank"
COUNT_COL = "n_ratings"
METRIC_NAMES = ("precision", "recall", "ndcg", "map")


def relevant_items(test_df: DataFrame, *, threshold: float | None, col_user: str = USER_COL,
                   col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> DataFrame:
    """Distinct (user, item) pairs of ``test_df`` rated >= ``threshold`` (every pair when
    ``threshold`` is None or the table has no ``col_rating``).

    Returns
    -------
    DataFrame ``col_user``, ``col_item``.
    """
    df = test_df
    if threshold is not None and col_rating in df.columns:
        df = df.where(F.col(col_rating) >= F.lit(float(threshold)))
    return df.select(col_user, col_item).distinct()


def ranking_metrics(recs_df: DataFrame, test_df: DataFrame, *, k: int,
                    threshold: float | None = 4.0, col_user: str = USER_COL,
                    col_item: str = ITEM_COL, col_rank: str = RANK_COL,
                    col_rating: str = RATING_COL) -> dict:
    """precision@k, recall@k, NDCG@k and MAP@k (module docstring) of ``recs_df`` on ``test_df``.

    Parameters
    ----------
    recs_df : ``col_user``, ``col_item``, ``col_rank`` (1 = best); ranks above ``k`` are ignored.
    test_df : held-out ratings (``col_user``, ``col_item``, ``col_rating``) or pairs.
    threshold : relevance threshold on ``col_rating`` (None: every held-out pair is relevant).

    Returns
    -------
    dict with ``precision``, ``recall``, ``ndcg``, ``map`` (None when no user has a relevant item),
    ``users`` (users averaged over) and ``k``.
    """
    rel = relevant_items(test_df, threshold=threshold, col_user=col_user, col_item=col_item,
                         col_rating=col_rating)
    n_rel = rel.groupBy(col_user).agg(F.count(F.lit(1)).alias("_n_rel"))
    recs = (recs_df.where(F.col(col_rank) <= k)
            .select(col_user, col_item, F.col(col_rank).cast("int").alias("_rank")))
    by_rank = (W.partitionBy(col_user).orderBy(F.col("_rank").asc())
               .rowsBetween(W.unboundedPreceding, W.currentRow))
    hits = (recs.join(rel, on=[col_user, col_item], how="inner")
            .withColumn("_hits_so_far", F.count(F.lit(1)).over(by_rank)))
    per_user_hits = hits.groupBy(col_user).agg(
        F.count(F.lit(1)).alias("_hits"),
        F.sum(F.lit(1.0) / F.log2(F.col("_rank") + 1)).alias("_dcg"),
        F.sum(F.col("_hits_so_far") / F.col("_rank")).alias("_ap_sum"))
    cut = F.least(F.col("_n_rel"), F.lit(k))
    idcg = F.aggregate(F.sequence(F.lit(1), cut), F.lit(0.0),
                       lambda acc, i: acc + F.lit(1.0) / F.log2(i + 1))
    per_user = (n_rel.join(per_user_hits, on=col_user, how="left")
                .select(col_user, "_n_rel",
                        F.coalesce(F.col("_hits"), F.lit(0)).alias("_hits"),
                        F.coalesce(F.col("_dcg"), F.lit(0.0)).alias("_dcg"),
                        F.coalesce(F.col("_ap_sum"), F.lit(0.0)).alias("_ap_sum"),
                        cut.alias("_cut"), idcg.alias("_idcg")))
    row = per_user.agg(
        F.count(F.lit(1)).alias("users"),
        F.avg(F.col("_hits") / F.lit(float(k))).alias("precision"),
        F.avg(F.col("_hits") / F.col("_n_rel")).alias("recall"),
        F.avg(F.col("_dcg") / F.col("_idcg")).alias("ndcg"),
        F.avg(F.col("_ap_sum") / F.col("_cut")).alias("map"),
    ).first()
    out = {name: (float(row[name]) if row[name] is not None else None) for name in METRIC_NAMES}
    out.update(users=int(row["users"]), k=int(k))
    return out


def list_metrics(recs_df: DataFrame, item_counts_df: DataFrame, *, catalog_size: int,
                 col_item: str = ITEM_COL, col_count: str = COUNT_COL) -> dict:
    """Catalog coverage and mean popularity of the recommended items.

    Parameters
    ----------
    recs_df : recommendations (``col_item``).
    item_counts_df : ``col_item``, ``col_count`` (training ratings per item; missing items count 0).
    catalog_size : number of items that could be recommended.

    Returns
    -------
    dict with ``coverage`` (distinct recommended / catalog_size), ``distinct_items``,
    ``mean_popularity`` (mean ``col_count`` over the recommendations; None when there are none)
    and ``recommendations``.
    """
    counts = item_counts_df.select(col_item, F.col(col_count).cast("double").alias("_pop"))
    row = (recs_df.select(col_item).join(counts, on=col_item, how="left")
           .agg(F.countDistinct(col_item).alias("distinct"), F.count(F.lit(1)).alias("n"),
                F.avg(F.coalesce(F.col("_pop"), F.lit(0.0))).alias("pop"))).first()
    distinct = int(row["distinct"] or 0)
    return {"coverage": distinct / catalog_size if catalog_size else None,
            "distinct_items": distinct,
            "mean_popularity": float(row["pop"]) if row["pop"] is not None else None,
            "recommendations": int(row["n"] or 0)}
