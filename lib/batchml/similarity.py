"""Co-occurrence similarity (Jaccard, cosine, Pearson), "because you liked X", item-CF prediction.

Every function works on item-item similarity by default; user-user similarity is the same code with
the roles swapped (``col_user=ITEM_COL, col_item=USER_COL``): the "basket" column is the one the
self-join groups on, the "entity" column is the one whose pairs are scored.

Pipeline (pure ``DataFrame -> DataFrame`` steps, wired by :func:`compute_similar`)

1. :func:`filter_user_cap` -- per user keep at most ``max_items_per_user`` items, the ones with the
   smallest ``xxhash64(seed, user, item)`` (deterministic, no ``rand()``).  A user with n items makes
   n(n-1)/2 pairs, so the cap bounds the work of heavy users.
2. :func:`with_pair_values` -- the per-rating value a metric needs (none, the rating, or the rating
   centred by the item mean).
3. :func:`co_occurrences` -- self-join on user with ``item < other``; users with many items are
   salted (their left rows split into ``salt_buckets`` groups by a hash of the item, the right rows
   replicated per group) so one heavy user is spread over many tasks; aggregated per pair.
4. :func:`with_similarity` -- joined with per-item statistics (:func:`item_stats`), the metric, and
   ``min_support`` (pairs with fewer co-occurrences are dropped).
5. :func:`top_k_similar` -- both directions, the ``top_k`` most similar per item, ties broken by
   ``other_idx`` ascending.

Metrics (sums run over the users of the capped ratings)

* ``jaccard``: co / (n_i + n_j - co)
* ``cosine_binary``: co / sqrt(n_i * n_j)
* ``cosine``: sum_u r_ui r_uj / (||r_i|| ||r_j||), norms over all raters of each item
* ``pearson``: sum_u x_ui x_uj / sqrt(sum_u x_ui^2 * sum_u x_uj^2) over co-raters u, with
  x_ui = r_ui - mean_i (the item's mean over all its ratings); pairs with a zero denominator are
  dropped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window as W
from pyspark.sql import functions as F

from batchml.logs import stage
from batchml.schema import ITEM_COL, RATING_COL, TITLE_COL, USER_COL

LOG = logging.getLogger("batchml.similarity")

METRICS = ("jaccard", "cosine", "cosine_binary", "pearson")

OTHER_COL = "other_idx"
SIMILARITY_COL = "similarity"
CO_COUNT_COL = "co_count"
RANK_COL = "rank"
PREDICTION_COL = "prediction"
SCORE_COL = "score"
BECAUSE_COL = "because_idx"
BECAUSE_RATING_COL = "because_rating"

SIMILAR_ITEMS = "similar_items"
SIMILAR_USERS = "similar_users"
METRICS_FILE = "metrics.json"

# helper columns (documented where they appear)
N_ALL_COL = "n_user_items"      # items of the user before the cap
N_KEPT_COL = "n_user_kept"      # items of the user after the cap
VALUE_COL = "_value"            # per-rating value for the cosine / pearson sums
N_ITEM_COL = "n_item"
NORM_ITEM_COL = "norm_item"
SUM_XY, SUM_XX, SUM_YY = "sum_xy", "sum_xx", "sum_yy"


# ------------------------------------------------------------------------------------------- cap
def filter_user_cap(ratings_df: DataFrame, *, max_items_per_user: int, seed: int,
                    col_user: str = USER_COL, col_item: str = ITEM_COL) -> DataFrame:
    """Keep at most ``max_items_per_user`` items per user, chosen deterministically.

    A user with more items keeps the ones with the smallest ``xxhash64(seed, user, item)`` (ties by
    item), so the choice does not depend on partitioning or on re-runs.  ``max_items_per_user=0``
    keeps everything.

    Returns
    -------
    DataFrame with the input columns plus ``n_user_items`` (long: the user's items before the cap)
    and ``n_user_kept`` (long: after the cap).
    """
    cols = ratings_df.columns
    if max_items_per_user <= 0:
        by_user = W.partitionBy(col_user).rowsBetween(W.unboundedPreceding, W.unboundedFollowing)
        n_all = F.count(F.lit(1)).over(by_user)
        return (ratings_df.withColumn(N_ALL_COL, n_all)
                .withColumn(N_KEPT_COL, F.col(N_ALL_COL))
                .select(*cols, N_ALL_COL, N_KEPT_COL))
    order = W.partitionBy(col_user).orderBy(F.col("_h").asc(), F.col(col_item).asc())
    cap = F.lit(int(max_items_per_user)).cast("long")
    return (
        ratings_df
        .withColumn("_h", F.xxhash64(F.lit(int(seed)), F.col(col_user), F.col(col_item)))
        .withColumn(N_ALL_COL, F.count(F.lit(1)).over(order.rowsBetween(W.unboundedPreceding,
                                                                          W.unboundedFollowing)))
        .withColumn("_pos", F.row_number().over(order))
        .where(F.col("_pos") <= cap)
        .withColumn(N_KEPT_COL, F.least(F.col(N_ALL_COL), cap))
        .select(*cols, N_ALL_COL, N_KEPT_COL)
    )


def cap_report(capped_df: DataFrame, *, max_items_per_user: int, col_user: str = USER_COL) -> dict:
    """Figures of a :func:`filter_user_cap` output (one aggregation, an action).

    Returns
    -------
    dict: ``users``, ``users_capped``, ``ratings_in``, ``ratings_kept``, ``ratings_dropped_by_cap``,
    ``pairs_without_cap`` and ``pairs_generated`` (sum over users of n(n-1)/2 before and after the
    cap; the latter is the row count of the self-join), ``max_items_per_user`` (0: no cap) and the
    largest user before and after the cap.
    """
    per_user = capped_df.groupBy(col_user).agg(F.first(F.col(N_ALL_COL)).alias("n"),
                                               F.first(F.col(N_KEPT_COL)).alias("k"))
    n, k = F.col("n"), F.col("k")
    row = per_user.agg(
        F.count(F.lit(1)).alias("users"),
        F.sum(F.when(n > k, 1).otherwise(0)).alias("users_capped"),
        F.sum(n).alias("ratings_in"),
        F.sum(k).alias("ratings_kept"),
        F.sum(n * (n - 1) / 2).alias("pairs_without_cap"),
        F.sum(k * (k - 1) / 2).alias("pairs_generated"),
        F.max(n).alias("max_user_items"),
        F.max(k).alias("max_user_items_kept"),
    ).first()
    out = {key: int(row[key] or 0) for key in row.asDict()}
    out["ratings_dropped_by_cap"] = out["ratings_in"] - out["ratings_kept"]
    out["max_items_per_user"] = int(max_items_per_user)
    return out


# ---------------------------------------------------------------------------------------- values
def with_pair_values(ratings_df: DataFrame, *, metric: str, col_item: str = ITEM_COL,
                     col_rating: str = RATING_COL) -> DataFrame:
    """Add the per-rating value the metric sums over co-raters.

    ``jaccard`` and ``cosine_binary`` need none (the input is returned unchanged); ``cosine`` uses
    the rating; ``pearson`` the rating minus the item's mean rating (over the rows given).

    Returns
    -------
    DataFrame with the input columns plus ``_value`` double (cosine, pearson).
    """
    _check_metric(metric)
    if metric in ("jaccard", "cosine_binary"):
        return ratings_df
    if metric == "cosine":
        return ratings_df.withColumn(VALUE_COL, F.col(col_rating).cast("double"))
    means = ratings_df.groupBy(col_item).agg(F.avg(F.col(col_rating).cast("double")).alias("_mean"))
    return (ratings_df.join(means, on=col_item, how="inner")
            .withColumn(VALUE_COL, F.col(col_rating).cast("double") - F.col("_mean"))
            .select(*ratings_df.columns, VALUE_COL))


def item_stats(values_df: DataFrame, *, col_item: str = ITEM_COL) -> DataFrame:
    """Per-item counts (and L2 norm of ``_value`` where present).

    Returns
    -------
    DataFrame: ``col_item``, ``n_item`` long, and ``norm_item`` double when ``_value`` exists.
    """
    aggs = [F.count(F.lit(1)).alias(N_ITEM_COL)]
    if VALUE_COL in values_df.columns:
        aggs.append(F.sqrt(F.sum(F.col(VALUE_COL) * F.col(VALUE_COL))).alias(NORM_ITEM_COL))
    return values_df.groupBy(col_item).agg(*aggs)


# --------------------------------------------------------------------------------------- pairs
def co_occurrences(values_df: DataFrame, *, salt_buckets: int = 1, salt_min_items: int = 0,
                   seed: int = 0, partitions: int | None = None, col_user: str = USER_COL,
                   col_item: str = ITEM_COL) -> DataFrame:
    """Co-occurrence counts (and value sums) of every item pair sharing a user, item < other.

    A self-join of (user, item) on user with ``item < other``.  Users with more than
    ``salt_min_items`` items (``n_user_kept`` when present, else counted here) are salted: their
    left rows go to one of ``salt_buckets`` groups by ``xxhash64(seed, item)`` and their right rows
    are replicated once per group, so their n(n-1)/2 pairs are produced by up to ``salt_buckets``
    tasks instead of one.  Salting never changes the result.

    Both sides are explicitly hash-partitioned on (user, salt) into ``partitions`` (default
    ``spark.sql.shuffle.partitions``): the join input is small while its output is quadratic, so
    adaptive execution would otherwise coalesce the join into very few tasks.

    Returns
    -------
    DataFrame: ``col_item`` (i), ``other_idx`` (j > i), ``co_count`` long; when ``values_df`` has
    ``_value`` also ``sum_xy``, ``sum_xx``, ``sum_yy`` double (sums over the co-raters of x = value
    of i, y = value of j).
    """
    has_value = VALUE_COL in values_df.columns
    df = values_df
    salted = salt_buckets > 1
    if salted:
        if N_KEPT_COL not in df.columns:
            df = df.withColumn(N_KEPT_COL, F.count(F.lit(1)).over(
                W.partitionBy(col_user).rowsBetween(W.unboundedPreceding, W.unboundedFollowing)))
        n_salts = (F.when(F.col(N_KEPT_COL) > F.lit(int(salt_min_items)), F.lit(int(salt_buckets)))
                   .otherwise(F.lit(1)))
        left_salt = F.pmod(F.xxhash64(F.lit(int(seed)), F.col(col_item)), n_salts).cast("int")
        right_salt = F.explode(F.sequence(F.lit(0), n_salts - 1))
    else:
        left_salt = right_salt = F.lit(0)
    value = [F.col(VALUE_COL)] if has_value else []
    left_df = df.select(F.col(col_user).alias("_u"), F.col(col_item).alias("_i"),
                        *[v.alias("_x") for v in value], left_salt.alias("_salt"))
    right_df = df.select(F.col(col_user).alias("_u"), F.col(col_item).alias("_j"),
                         *[v.alias("_y") for v in value], right_salt.alias("_salt"))
    n_parts = int(partitions or values_df.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    left_df = left_df.repartition(n_parts, "_u", "_salt")
    right_df = right_df.repartition(n_parts, "_u", "_salt")
    cond = [F.col("l._u") == F.col("r._u"), F.col("l._salt") == F.col("r._salt"),
            F.col("l._i") < F.col("r._j")]
    aggs = [F.count(F.lit(1)).alias(CO_COUNT_COL)]
    if has_value:
        x, y = F.col("l._x"), F.col("r._y")
        aggs += [F.sum(x * y).alias(SUM_XY), F.sum(x * x).alias(SUM_XX), F.sum(y * y).alias(SUM_YY)]
    return (
        left_df.alias("l")
        .join(right_df.alias("r"), on=cond, how="inner")
        .groupBy(F.col("l._i").alias(col_item), F.col("r._j").alias(OTHER_COL))
        .agg(*aggs)
    )


def with_similarity(pairs_df: DataFrame, stats_df: DataFrame, *, metric: str, min_support: int = 1,
                    col_item: str = ITEM_COL) -> DataFrame:
    """Score pairs from :func:`co_occurrences` with per-item stats from :func:`item_stats`.

    Pairs with ``co_count < min_support`` and pairs whose similarity is undefined (Pearson with a
    zero variance) are dropped.

    Returns
    -------
    DataFrame: ``col_item``, ``other_idx``, ``similarity`` double, ``co_count`` long.
    """
    _check_metric(metric)
    a = stats_df.alias("a")
    b = stats_df.alias("b")
    p = pairs_df.where(F.col(CO_COUNT_COL) >= F.lit(int(min_support))).alias("p")
    co = F.col(f"p.{CO_COUNT_COL}").cast("double")
    n_a, n_b = F.col(f"a.{N_ITEM_COL}"), F.col(f"b.{N_ITEM_COL}")
    if metric == "jaccard":
        sim = co / (n_a + n_b - F.col(f"p.{CO_COUNT_COL}")).cast("double")
    elif metric == "cosine_binary":
        sim = co / F.sqrt((n_a * n_b).cast("double"))
    elif metric == "cosine":
        den = F.col(f"a.{NORM_ITEM_COL}") * F.col(f"b.{NORM_ITEM_COL}")
        sim = F.when(den > 0, F.col(f"p.{SUM_XY}") / den)
    else:  # pearson
        den = F.sqrt(F.col(f"p.{SUM_XX}") * F.col(f"p.{SUM_YY}"))
        sim = F.when(den > 0, F.col(f"p.{SUM_XY}") / den)
    return (
        p.join(a, on=F.col(f"p.{col_item}") == F.col(f"a.{col_item}"), how="inner")
        .join(b, on=F.col(f"p.{OTHER_COL}") == F.col(f"b.{col_item}"), how="inner")
        .select(F.col(f"p.{col_item}").alias(col_item), F.col(f"p.{OTHER_COL}").alias(OTHER_COL),
                sim.cast("double").alias(SIMILARITY_COL),
                F.col(f"p.{CO_COUNT_COL}").cast("long").alias(CO_COUNT_COL))
        .where(F.col(SIMILARITY_COL).isNotNull())
    )


def top_k_similar(sim_df: DataFrame, *, top_k: int, col_item: str = ITEM_COL) -> DataFrame:
    """The ``top_k`` most similar others of every item, from pairs listed once (item < other).

    Each pair is used in both directions; per item, others are ranked by similarity descending,
    ties broken by ``other_idx`` ascending.

    Returns
    -------
    DataFrame (the ``similar_items`` table): ``col_item``, ``other_idx``, ``similarity`` double,
    ``co_count`` long, ``rank`` int (1 = most similar).
    """
    def side(a: str, b: str):
        return F.struct(F.col(a).alias(col_item), F.col(b).alias(OTHER_COL),
                        F.col(SIMILARITY_COL).alias(SIMILARITY_COL),
                        F.col(CO_COUNT_COL).alias(CO_COUNT_COL))

    order = W.partitionBy(col_item).orderBy(F.col(SIMILARITY_COL).desc(), F.col(OTHER_COL).asc())
    return (
        sim_df.select(F.explode(F.array(side(col_item, OTHER_COL), side(OTHER_COL, col_item)))
                      .alias("_p"))
        .select("_p.*")
        .withColumn(RANK_COL, F.row_number().over(order).cast("int"))
        .where(F.col(RANK_COL) <= F.lit(int(top_k)))
        .select(col_item, OTHER_COL, SIMILARITY_COL, CO_COUNT_COL, RANK_COL)
    )


def similar_items(ratings_df: DataFrame, *, metric: str = "jaccard", top_k: int = 20,
                  min_support: int = 1, max_items_per_user: int = 0, salt_buckets: int = 1,
                  salt_min_items: int = 0, seed: int = 0, col_user: str = USER_COL,
                  col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> DataFrame:
    """Top-K similar items in one lazy chain (cap, values, co-occurrences, similarity, top-K).

    The defaults compute the exact result (no cap, ``min_support=1``).  Swap ``col_user`` and
    ``col_item`` for user-user similarity.  :func:`compute_similar` is the staged, persisted and
    reported version the job uses.

    Returns
    -------
    DataFrame: ``col_item``, ``other_idx``, ``similarity`` double, ``co_count`` long, ``rank`` int.
    """
    capped = (filter_user_cap(ratings_df, max_items_per_user=max_items_per_user, seed=seed,
                              col_user=col_user, col_item=col_item)
              if max_items_per_user > 0 else ratings_df)
    values = with_pair_values(capped, metric=metric, col_item=col_item, col_rating=col_rating)
    pairs = co_occurrences(values, salt_buckets=salt_buckets, salt_min_items=salt_min_items,
                           seed=seed, col_user=col_user, col_item=col_item)
    sim = with_similarity(pairs, item_stats(values, col_item=col_item), metric=metric,
                          min_support=min_support, col_item=col_item)
    return top_k_similar(sim, top_k=top_k, col_item=col_item)


# ------------------------------------------------------------------------------------ staged run
@dataclass(frozen=True)
class SimilarityParams:
    """The knobs of :func:`compute_similar` (built from ``SimilaritySettings`` by the job)."""

    metric: str = "jaccard"
    top_k: int = 20
    min_support: int = 1
    max_items_per_user: int = 0
    salt_buckets: int = 1
    salt_min_items: int = 0
    seed: int = 0

    @classmethod
    def from_settings(cls, s) -> "SimilarityParams":
        """From a ``SimilaritySettings``; ``exact`` turns off the cap and ``min_support``."""
        return cls(metric=s.metric, top_k=s.top_k,
                   min_support=1 if s.exact else s.min_support,
                   max_items_per_user=0 if s.exact else s.max_items_per_user,
                   salt_buckets=s.salt_buckets, salt_min_items=s.salt_min_items, seed=s.seed)


def compute_similar(ratings_df: DataFrame, params: SimilarityParams, *, col_user: str = USER_COL,
                    col_item: str = ITEM_COL, col_rating: str = RATING_COL,
                    timings: dict | None = None, prefix: str = "") -> tuple[DataFrame, dict]:
    """Run the pipeline stage by stage (persisting between stages) and report its figures.

    Returns
    -------
    (top_k_df, report): the persisted top-K table (columns as :func:`top_k_similar`; the caller
    unpersists it) and a dict with the :func:`cap_report` figures plus ``distinct_pairs`` (pairs
    with a co-occurrence), ``pairs_after_min_support`` and ``rows``.
    """
    _check_metric(params.metric)
    spark = ratings_df.sparkSession
    level = StorageLevel.MEMORY_AND_DISK
    report: dict = {"params": params.__dict__.copy()}
    with stage(f"{prefix}cap", spark, timings) as st:
        capped = filter_user_cap(
            ratings_df.select(col_user, col_item, col_rating),
            max_items_per_user=params.max_items_per_user, seed=params.seed,
            col_user=col_user, col_item=col_item)
        values = with_pair_values(capped, metric=params.metric, col_item=col_item,
                                  col_rating=col_rating).persist(level)
        report.update(cap_report(values, max_items_per_user=params.max_items_per_user,
                                 col_user=col_user))
        st.set_rows(report["ratings_kept"])
        st.info.update(users_capped=report["users_capped"],
                       pairs_generated=f"{report['pairs_generated']:,}")
    with stage(f"{prefix}pairs", spark, timings) as st:
        pairs = co_occurrences(values, salt_buckets=params.salt_buckets,
                               salt_min_items=params.salt_min_items, seed=params.seed,
                               col_user=col_user, col_item=col_item).persist(level)
        report["distinct_pairs"] = st.set_rows(pairs.count())
    with stage(f"{prefix}similarity", spark, timings) as st:
        stats = item_stats(values, col_item=col_item)
        sim = with_similarity(pairs, stats, metric=params.metric, min_support=params.min_support,
                              col_item=col_item).persist(level)
        report["pairs_after_min_support"] = st.set_rows(sim.count())
        pairs.unpersist()
        values.unpersist()
    with stage(f"{prefix}top_k", spark, timings) as st:
        top = top_k_similar(sim, top_k=params.top_k, col_item=col_item).persist(level)
        report["rows"] = st.set_rows(top.count())
        sim.unpersist()
    return top, report


# -------------------------------------------------------------------------------- readable view
def with_titles(similar_df: DataFrame, items_df: DataFrame, *, col_item: str = ITEM_COL,
                col_title: str = TITLE_COL) -> DataFrame:
    """Add the titles (or any label column) of both sides of a ``similar_items`` table.

    Returns
    -------
    DataFrame: ``col_item``, ``col_title``, ``rank``, ``other_idx``, ``other_<col_title>``,
    ``similarity``, ``co_count`` (left joins: a missing label is null).
    """
    names = items_df.select(col_item, col_title)
    a = names.alias("a")
    b = names.alias("b")
    s = similar_df.alias("s")
    return (
        s.join(a, on=F.col(f"s.{col_item}") == F.col(f"a.{col_item}"), how="left")
        .join(b, on=F.col(f"s.{OTHER_COL}") == F.col(f"b.{col_item}"), how="left")
        .select(F.col(f"s.{col_item}").alias(col_item), F.col(f"a.{col_title}").alias(col_title),
                F.col(f"s.{RANK_COL}").alias(RANK_COL), F.col(f"s.{OTHER_COL}").alias(OTHER_COL),
                F.col(f"b.{col_title}").alias(f"other_{col_title}"),
                F.col(f"s.{SIMILARITY_COL}").alias(SIMILARITY_COL),
                F.col(f"s.{CO_COUNT_COL}").alias(CO_COUNT_COL))
    )


# --------------------------------------------------------------------------- because you liked X
def because_you_liked(ratings_df: DataFrame, similar_df: DataFrame, *, users: list[int] | None = None,
                      min_rating: float = 4.0, top_n: int = 10, col_user: str = USER_COL,
                      col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> DataFrame:
    """"Because you liked X": items most similar to the items a user rated highly, unseen ones only.

    A user's liked items are those rated ``>= min_rating``.  Every neighbour Y of a liked item X
    (from ``similar_df``, a ``similar_items`` table) that the user has not rated is a candidate,
    scored by sim(X, Y); when several liked items lead to Y, the most similar X explains it (ties:
    the higher-rated X, then the smaller index).  ``users`` restricts the output to those users.

    Returns
    -------
    DataFrame: ``col_user``, ``col_item`` (the recommended Y), ``score`` double (sim(X, Y)),
    ``because_idx`` (X), ``because_rating`` (the user's rating of X), ``rank`` int (1..top_n per
    user, by score descending then item ascending).
    """
    rated = ratings_df.select(col_user, col_item, col_rating)
    if users is not None:
        rated = rated.where(F.col(col_user).isin([int(u) for u in users]))
    liked = (rated.where(F.col(col_rating) >= F.lit(float(min_rating)))
             .select(col_user, F.col(col_item).alias(BECAUSE_COL),
                     F.col(col_rating).cast("double").alias(BECAUSE_RATING_COL)))
    nbrs = similar_df.select(F.col(col_item).alias(BECAUSE_COL), F.col(OTHER_COL).alias(col_item),
                             F.col(SIMILARITY_COL).alias(SCORE_COL))
    best_reason = W.partitionBy(col_user, col_item).orderBy(
        F.col(SCORE_COL).desc(), F.col(BECAUSE_RATING_COL).desc(), F.col(BECAUSE_COL).asc())
    by_user = W.partitionBy(col_user).orderBy(F.col(SCORE_COL).desc(), F.col(col_item).asc())
    candidates = (
        liked.join(nbrs, on=BECAUSE_COL, how="inner")
        .join(rated.select(col_user, col_item), on=[col_user, col_item], how="left_anti")
        .withColumn("_r", F.row_number().over(best_reason))
        .where(F.col("_r") == 1)
    )
    return (
        candidates.withColumn(RANK_COL, F.row_number().over(by_user).cast("int"))
        .where(F.col(RANK_COL) <= F.lit(int(top_n)))
        .select(col_user, col_item, SCORE_COL, BECAUSE_COL, BECAUSE_RATING_COL, RANK_COL)
    )


def with_because_titles(recs_df: DataFrame, items_df: DataFrame, *, col_item: str = ITEM_COL,
                        col_title: str = TITLE_COL) -> DataFrame:
    """Add the titles of the recommended item and of its reason to a :func:`because_you_liked`
    output.

    Returns
    -------
    DataFrame: the columns of ``recs_df`` plus ``col_title`` and ``because_<col_title>``.
    """
    names = items_df.select(col_item, col_title)
    a = names.alias("a")
    b = names.alias("b")
    r = recs_df.alias("r")
    return (
        r.join(a, on=F.col(f"r.{col_item}") == F.col(f"a.{col_item}"), how="left")
        .join(b, on=F.col(f"r.{BECAUSE_COL}") == F.col(f"b.{col_item}"), how="left")
        .select(*[F.col(f"r.{c}").alias(c) for c in recs_df.columns],
                F.col(f"a.{col_title}").alias(col_title),
                F.col(f"b.{col_title}").alias(f"because_{col_title}"))
    )


# ----------------------------------------------------------------------------- item-CF predict
def with_item_cf_scores(train_df: DataFrame, pairs_df: DataFrame, similar_df: DataFrame, *,
                        col_user: str = USER_COL, col_item: str = ITEM_COL,
                        col_rating: str = RATING_COL, col_prediction: str = PREDICTION_COL,
                        global_mean: float | None = None) -> DataFrame:
    """:func:`predict_item_cf` plus ``n_neighbours`` (int: rated neighbours used; 0 = fallback).

    Returns
    -------
    DataFrame: the columns of ``pairs_df`` plus ``col_prediction`` double and ``n_neighbours`` int.
    """
    keys = [col_user, col_item]
    targets = pairs_df.select(*keys).dropDuplicates(keys)
    nbrs = (similar_df.where(F.col(SIMILARITY_COL) > 0)
            .select(col_item, F.col(OTHER_COL).alias("_j"), SIMILARITY_COL))
    rated = train_df.select(col_user, F.col(col_item).alias("_j"),
                            F.col(col_rating).cast("double").alias("_r"))
    sums = (
        targets.join(nbrs, on=col_item, how="inner")
        .join(rated, on=[col_user, "_j"], how="inner")
        .groupBy(*keys)
        .agg(F.sum(F.col(SIMILARITY_COL) * F.col("_r")).alias("_num"),
             F.sum(F.col(SIMILARITY_COL)).alias("_den"),
             F.count(F.lit(1)).cast("int").alias("n_neighbours"))
    )
    if global_mean is None:
        mean_df = train_df.agg(F.avg(F.col(col_rating).cast("double")).alias("_mu"))
    else:
        mean_df = train_df.sparkSession.range(1).select(F.lit(float(global_mean)).alias("_mu"))
    cols = [c for c in pairs_df.columns if c not in (col_prediction, "n_neighbours")]
    return (
        pairs_df.select(*cols)
        .join(sums, on=keys, how="left")
        .crossJoin(F.broadcast(mean_df))
        .select(*cols,
                F.coalesce(F.col("_num") / F.col("_den"), F.col("_mu")).cast("double")
                .alias(col_prediction),
                F.coalesce(F.col("n_neighbours"), F.lit(0)).alias("n_neighbours"))
    )


def predict_item_cf(train_df: DataFrame, pairs_df: DataFrame, similar_df: DataFrame, *,
                    col_user: str = USER_COL, col_item: str = ITEM_COL, col_rating: str = RATING_COL,
                    col_prediction: str = PREDICTION_COL,
                    global_mean: float | None = None) -> DataFrame:
    """Item-CF rating prediction: r(u,i) = sum_j sim(i,j) r_uj / sum_j sim(i,j).

    j runs over the neighbours of i in ``similar_df`` (a ``similar_items`` table, so i's top-K)
    with a positive similarity that user u rated in ``train_df``.  Where there is none, the
    prediction is the global mean (``global_mean``, default: the mean rating of ``train_df``).
    Pure and lazy; swap ``col_user``/``col_item`` (with a ``similar_users`` table) for user-CF.
    The prediction is a weighted mean of ratings, so it stays on the rating scale.

    Parameters
    ----------
    train_df : ratings to predict from: ``col_user``, ``col_item``, ``col_rating``.
    pairs_df : the (user, item) pairs to predict; any other columns (e.g. the held-out
        ``rating``) are passed through, one output row per input row.
    similar_df : ``col_item``, ``other_idx``, ``similarity`` (e.g. the ``similar_items`` table).

    Returns
    -------
    DataFrame: the columns of ``pairs_df`` (``col_user``, ``col_item``, ...) plus
    ``col_prediction`` double.
    """
    return with_item_cf_scores(train_df, pairs_df, similar_df, col_user=col_user,
                               col_item=col_item, col_rating=col_rating,
                               col_prediction=col_prediction,
                               global_mean=global_mean).drop("n_neighbours")


def jaccard_top_k(ratings_df: DataFrame, *, k: int = 20, col_user: str = USER_COL,
                  col_item: str = ITEM_COL) -> DataFrame:
    """Exact Jaccard top-``k`` similar items (no cap, ``min_support=1``): a ``similar_items``
    table for :func:`predict_item_cf`.

    Returns
    -------
    DataFrame: ``col_item``, ``other_idx``, ``similarity`` double, ``co_count`` long, ``rank`` int.
    """
    return similar_items(ratings_df, metric="jaccard", top_k=k, col_user=col_user,
                         col_item=col_item, col_rating=RATING_COL)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown similarity metric {metric!r} (one of {', '.join(METRICS)})")


# ---------------------------------------------------------------------------------- evaluation
def evaluate_item_cf(ratings_df: DataFrame, params: SimilarityParams, *, holdout_fraction: float,
                     seed: int, col_user: str = USER_COL, col_item: str = ITEM_COL,
                     col_rating: str = RATING_COL, timings: dict | None = None) -> dict:
    """Hold out ~``holdout_fraction`` of the ratings (hash of seed, user, item), compute the
    similarities on the rest, predict the held-out ratings by item-CF, and compare with the global
    mean.  With ``col_user``/``col_item`` swapped this evaluates user-CF.

    Returns
    -------
    dict: ``holdout_fraction``, ``train``/``test`` row counts, ``item_cf`` and ``global_mean``
    (each ``rmse``, ``mae``, ``n``, ``n_missing`` from :func:`batchml.metrics.regression_metrics`),
    ``coverage`` (share of test rows predicted from at least one neighbour), ``global_mean_value``
    and the ``similarity`` report of the training run.
    """
    from batchml.metrics import regression_metrics
    from batchml.ratings import split_random

    spark = ratings_df.sparkSession
    level = StorageLevel.MEMORY_AND_DISK
    with stage("eval_split", spark, timings) as st:
        train, test = split_random(ratings_df.select(col_user, col_item, col_rating),
                                   fraction=holdout_fraction, seed=seed, col_user=col_user,
                                   col_item=col_item)
        train, test = train.persist(level), test.persist(level)
        n_test = test.count()
        st.set_rows(n_test)
        mu = train.agg(F.avg(F.col(col_rating).cast("double")).alias("mu")).first()["mu"]
    top, sim_report = compute_similar(train, params, col_user=col_user, col_item=col_item,
                                      col_rating=col_rating, timings=timings, prefix="eval_")
    with stage("eval_predict", spark, timings) as st:
        scored = (
            with_item_cf_scores(train, test, top, col_user=col_user, col_item=col_item,
                                col_rating=col_rating, global_mean=mu)
            .persist(level)
        )
        cf = regression_metrics(scored, col_rating=col_rating, col_prediction=PREDICTION_COL)
        base = regression_metrics(test.withColumn(PREDICTION_COL, F.lit(float(mu))),
                                  col_rating=col_rating, col_prediction=PREDICTION_COL)
        covered = scored.where(F.col("n_neighbours") > 0).count()
        st.set_rows(cf["n"])
        st.info.update(rmse_item_cf=round(cf["rmse"], 4) if cf["rmse"] is not None else None,
                       rmse_global_mean=round(base["rmse"], 4) if base["rmse"] is not None else None)
    out = {
        "holdout_fraction": holdout_fraction, "seed": seed,
        "train": sim_report["ratings_in"], "test": n_test,
        "global_mean_value": mu, "item_cf": cf, "global_mean": base,
        "coverage": covered / n_test if n_test else None,
        "similarity": sim_report,
    }
    for df in (scored, top, train, test):
        df.unpersist()
    return out
