"""The Spark pipeline of co-occurrence similarity (Jaccard, cosine, Pearson): ratings -> top-K table.

Every function works on item-item similarity by default; user-user similarity is the same code with
the roles swapped (``col_user=ITEM_COL, col_item=USER_COL``): the "basket" column is the one the
co-occurrences are grouped on, the "entity" column is the one whose pairs are scored.

Pipeline (pure ``DataFrame -> DataFrame`` steps, wired by :func:`similar_items` and, staged and
reported, by :func:`compute_similar`)

1. :func:`filter_user_cap` -- per user keep at most ``max_items_per_user`` items, the ones with the
   smallest ``xxhash64(seed, user, item)`` (deterministic, no ``rand()``).  A user with n items makes
   n(n-1)/2 pairs, so the cap bounds the work of heavy users.
2. :func:`with_pair_values` -- the per-rating value a metric needs (none, the rating, or the rating
   centred by the item mean).
3. :func:`co_occurrences` -- partial products: users are hash-bucketed, each bucket (in
   ``mapInArrow``, :mod:`batchml.similarity.pair_sums`) builds its sparse user x item matrix X with
   scipy.sparse and emits the i < j nonzeros of XᵀX (and of the value products the metric needs);
   the buckets' rows are summed per pair.  The shuffle carries at most the distinct pairs of each
   bucket, not every user's n(n-1)/2 pairs.  Users with many items are salted (split into
   ``salt_buckets`` groups by a hash of the item on the left side, all their items on the right)
   so one heavy user is spread over several buckets.
4. :func:`with_similarity` -- joined with per-item statistics (:func:`item_stats`), the metric, and
   ``min_support`` (pairs with fewer co-occurrences are dropped).
5. :func:`top_k_similar` -- both directions, the ``top_k`` most similar per item, ties broken by
   ``other_idx`` ascending.

Broadcast path (:func:`blocks_top_k`, chosen by :func:`compute_similar` when there are at most
``broadcast_max_ratings`` input ratings): steps 3 to 5 run in the tasks instead.  The capped ratings
are collected and broadcast, and each of ``item_blocks`` tasks scores every ``item_blocks``-th item
against all items (:mod:`batchml.similarity.item_blocks`), applies ``min_support`` and emits the
top-K rows only: no shuffle, no Spark join or window over the pairs.  When the capped ratings
generate at most ``driver_max_pairs`` pairs, the driver does it (:func:`driver_top_k`, the same
code as one block): the tasks' Python workers would take longer to start than the work.  Same
result (Jaccard and binary cosine bit for bit).

Metrics (sums run over the users of the capped ratings)

* ``jaccard``: co / (n_i + n_j - co)
* ``cosine_binary``: co / sqrt(n_i * n_j)
* ``cosine``: sum_u r_ui r_uj / (||r_i|| ||r_j||), norms over all raters of each item
* ``pearson``: sum_u x_ui x_uj / sqrt(sum_u x_ui^2 * sum_u x_uj^2) over co-raters u, with
  x_ui = r_ui - mean_i (the item's mean over all its ratings); pairs with a zero denominator are
  dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Observation, Window as W
from pyspark.sql import functions as F, types as T

from batchml.errors import ConfigError
from batchml.logs import stage
from batchml.spark import fault_point
from batchml.schema import (CO_COUNT_COL, ITEM_COL, OTHER_COL, RANK_COL, RATING_COL,
                            SIMILARITY_COL, USER_COL)
from batchml.similarity.item_blocks import (PAIRS_COL, SCORED_COL, UserRows, all_top_k,
                                            block_top_k_fn, dense_codes)
from batchml.similarity.pair_sums import (CHUNK_NNZ, DENSE_CELLS, SUM_COLS, SUM_XX, SUM_XY,
                                          SUM_YY, partial_products_fn)

METRICS = ("jaccard", "cosine", "cosine_binary", "pearson")

# helper columns (documented where they appear)
N_ALL_COL = "n_user_items"      # items of the user before the cap
N_KEPT_COL = "n_user_kept"      # items of the user after the cap
VALUE_COL = "_value"            # per-rating value for the cosine / pearson sums
N_ITEM_COL = "n_item"
NORM_ITEM_COL = "norm_item"

# compute_similar: user buckets = total pairs / this (at least the default parallelism)
PAIRS_PER_BUCKET = 1_000_000_000


def check_metric(metric: str) -> None:
    """Raise :class:`~batchml.errors.ConfigError` unless ``metric`` is one of :data:`METRICS`."""
    if metric not in METRICS:
        raise ConfigError(f"unknown similarity metric {metric!r} (one of {', '.join(METRICS)})")


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
    cap; the latter is the pair work of :func:`co_occurrences`), ``max_items_per_user`` (0: no cap) and the
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


def cap_figures(users, n_all, *, max_items_per_user: int) -> dict:
    """The figures of :func:`cap_report` from collected rows of a :func:`filter_user_cap` output
    (numpy arrays of ``col_user`` and ``n_user_items``, one entry per kept row: a user's kept rows
    are its ``n_user_kept``)."""
    _, ucol = dense_codes(users)
    k = np.bincount(ucol).astype(np.int64)
    n = np.zeros(len(k), dtype=np.int64)
    n[ucol] = n_all                                   # the same figure on every row of a user
    out = {"users": len(k), "users_capped": int(np.count_nonzero(n > k)),
           "ratings_in": int(n.sum()), "ratings_kept": int(k.sum()),
           "pairs_without_cap": int((n * (n - 1) // 2).sum()),
           "pairs_generated": int((k * (k - 1) // 2).sum()),
           "max_user_items": int(n.max(initial=0)), "max_user_items_kept": int(k.max(initial=0))}
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
    check_metric(metric)
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
def user_buckets(total_pairs: int, *, min_buckets: int,
                 pairs_per_bucket: int = PAIRS_PER_BUCKET) -> int:
    """Number of user buckets for :func:`co_occurrences`: ``ceil(total_pairs / pairs_per_bucket)``,
    at least ``min_buckets`` (the parallelism wanted) and 1."""
    return max(1, int(min_buckets), -(-int(total_pairs) // max(1, int(pairs_per_bucket))))


def co_occurrences(values_df: DataFrame, *, salt_buckets: int = 1, salt_min_items: int = 0,
                   seed: int = 0, partitions: int | None = None, chunk_nnz: int = CHUNK_NNZ,
                   dense_cells: int = DENSE_CELLS, col_user: str = USER_COL,
                   col_item: str = ITEM_COL) -> DataFrame:
    """Co-occurrence counts (and value sums) of every item pair sharing a user, item < other.

    Partial products per user bucket, then one aggregation: the (user, item) rows are
    hash-partitioned on (user, salt) into ``partitions`` buckets (default: the default
    parallelism; :func:`compute_similar` sizes it from the pair count with :func:`user_buckets`),
    and each bucket, in ``mapInArrow``
    (:func:`batchml.similarity.pair_sums.bucket_partial_products`), builds its sparse
    user x item matrix X with scipy.sparse and emits the i < j nonzeros of its XᵀX (and of the
    value products) once per pair; :func:`sum_partials` adds the buckets' rows per pair.  The
    shuffle carries at most the distinct pairs of each bucket instead of every user's
    n(n-1)/2 pairs.  A bucket's memory is bounded by multiplying its users in chunks of about
    ``chunk_nnz`` products, whatever the bucket size.

    Users with more than ``salt_min_items`` items (``n_user_kept`` when present, else counted
    here) are salted: they become ``salt_buckets`` groups (user, s), each with the user's items of
    salt s (``xxhash64(seed, item)``) on the left and all the user's items on the right, so their
    pairs are computed in up to ``salt_buckets`` buckets.  Salting never changes the result.

    Returns
    -------
    DataFrame: ``col_item`` (i), ``other_idx`` (j > i), ``co_count`` long; when ``values_df`` has
    ``_value`` also ``sum_xy``, ``sum_xx``, ``sum_yy`` double (sums over the co-raters of x = value
    of i, y = value of j).
    """
    partials = co_occurrence_partials(values_df, salt_buckets=salt_buckets,
                                      salt_min_items=salt_min_items, seed=seed,
                                      partitions=partitions, chunk_nnz=chunk_nnz,
                                      dense_cells=dense_cells, col_user=col_user, col_item=col_item)
    return sum_partials(partials, item_type=values_df.schema[col_item].dataType, col_item=col_item)


def with_salt_groups(values_df: DataFrame, *, salts: int, salt_min_items: int, seed: int,
                     col_user: str = USER_COL, col_item: str = ITEM_COL) -> DataFrame:
    """Add ``_s`` (the salt group, int) and ``_l`` (bool: the row is on the left side of it).

    Unsalted (``salts <= 1``) every row is in group 0 on the left.  Otherwise a user with more
    than ``salt_min_items`` items has every row in each of ``salts`` groups, on the left in the
    group of its item's salt (``xxhash64(seed, item)``).
    """
    if salts <= 1:
        return values_df.withColumn("_s", F.lit(0)).withColumn("_l", F.lit(True))
    df = values_df
    if N_KEPT_COL not in df.columns:
        df = df.withColumn(N_KEPT_COL, F.count(F.lit(1)).over(
            W.partitionBy(col_user).rowsBetween(W.unboundedPreceding, W.unboundedFollowing)))
    n_salts = (F.when(F.col(N_KEPT_COL) > F.lit(int(salt_min_items)), F.lit(int(salts)))
               .otherwise(F.lit(1)))
    item_salt = F.pmod(F.xxhash64(F.lit(int(seed)), F.col(col_item)), n_salts).cast("int")
    return (df.withColumn("_item_salt", item_salt)
            .withColumn("_s", F.explode(F.sequence(F.lit(0), n_salts - 1)))
            .withColumn("_l", F.col("_s") == F.col("_item_salt")))


def co_occurrence_partials(values_df: DataFrame, *, salt_buckets: int = 1, salt_min_items: int = 0,
                           seed: int = 0, partitions: int | None = None,
                           chunk_nnz: int = CHUNK_NNZ, dense_cells: int = DENSE_CELLS,
                           col_user: str = USER_COL, col_item: str = ITEM_COL) -> DataFrame:
    """The per-bucket partial rows of :func:`co_occurrences` (a pair may appear in several rows).

    Returns
    -------
    DataFrame: ``col_item`` long, ``other_idx`` long, ``co_count`` long and, with ``_value``,
    ``sum_xy``, ``sum_xx``, ``sum_yy`` double.
    """
    has_value = VALUE_COL in values_df.columns
    salts = int(salt_buckets) if salt_buckets > 1 else 1
    df = with_salt_groups(values_df, salts=salts, salt_min_items=salt_min_items, seed=seed,
                          col_user=col_user, col_item=col_item)
    value = [F.col(VALUE_COL).cast("double").alias("_v")] if has_value else []
    rows = df.select(F.col(col_user).cast("long").alias("_u"), F.col("_s").cast("int").alias("_s"),
                     F.col(col_item).cast("long").alias("_i"), F.col("_l"), *value)
    n_parts = int(partitions or max(1, values_df.sparkSession.sparkContext.defaultParallelism))
    schema = (f"{col_item} long, {OTHER_COL} long, {CO_COUNT_COL} long"
              + (f", {SUM_XY} double, {SUM_XX} double, {SUM_YY} double" if has_value else ""))
    fn = partial_products_fn(has_value=has_value, salts=salts, item_col=col_item,
                             chunk_nnz=int(chunk_nnz), dense_cells=int(dense_cells))
    # an explicit bucket count: adaptive execution does not coalesce a repartition by number
    buckets = fault_point(rows.repartition(n_parts, "_u", "_s"), "similarity")
    return buckets.mapInArrow(fn, schema)


def sum_partials(partials_df: DataFrame, *, item_type=None, col_item: str = ITEM_COL) -> DataFrame:
    """Add up the partial rows of :func:`co_occurrence_partials` per pair (``item_type``: the
    Spark type the item columns are cast back to, default long).

    Returns
    -------
    DataFrame: the columns of :func:`co_occurrences`, one row per pair.
    """
    sums = [F.sum(F.col(c)).alias(c) for c in SUM_COLS if c in partials_df.columns]
    agg = (partials_df.groupBy(col_item, OTHER_COL)
           .agg(F.sum(F.col(CO_COUNT_COL)).cast("long").alias(CO_COUNT_COL), *sums))
    if item_type is None:
        return agg
    return agg.select(F.col(col_item).cast(item_type).alias(col_item),
                      F.col(OTHER_COL).cast(item_type).alias(OTHER_COL),
                      CO_COUNT_COL, *[s for s in SUM_COLS if s in agg.columns])


# ---------------------------------------------------------------------------------- similarity
def _similarity_expr(metric: str):
    """The metric over the aliased pair ``p`` and item stats ``a`` (item) and ``b`` (other)."""
    co = F.col(f"p.{CO_COUNT_COL}").cast("double")
    n_a, n_b = F.col(f"a.{N_ITEM_COL}"), F.col(f"b.{N_ITEM_COL}")
    if metric == "jaccard":
        return co / (n_a + n_b - F.col(f"p.{CO_COUNT_COL}")).cast("double")
    if metric == "cosine_binary":
        return co / F.sqrt((n_a * n_b).cast("double"))
    if metric == "cosine":
        den = F.col(f"a.{NORM_ITEM_COL}") * F.col(f"b.{NORM_ITEM_COL}")
    else:  # pearson
        den = F.sqrt(F.col(f"p.{SUM_XX}") * F.col(f"p.{SUM_YY}"))
    return F.when(den > 0, F.col(f"p.{SUM_XY}") / den)


def with_similarity(pairs_df: DataFrame, stats_df: DataFrame, *, metric: str, min_support: int = 1,
                    col_item: str = ITEM_COL) -> DataFrame:
    """Score pairs from :func:`co_occurrences` with per-item stats from :func:`item_stats`.

    Pairs with ``co_count < min_support`` and pairs whose similarity is undefined (Pearson with a
    zero variance) are dropped.

    Returns
    -------
    DataFrame: ``col_item``, ``other_idx``, ``similarity`` double, ``co_count`` long.
    """
    check_metric(metric)
    a = stats_df.alias("a")
    b = stats_df.alias("b")
    p = pairs_df.where(F.col(CO_COUNT_COL) >= F.lit(int(min_support))).alias("p")
    return (
        p.join(a, on=F.col(f"p.{col_item}") == F.col(f"a.{col_item}"), how="inner")
        .join(b, on=F.col(f"p.{OTHER_COL}") == F.col(f"b.{col_item}"), how="inner")
        .select(F.col(f"p.{col_item}").alias(col_item), F.col(f"p.{OTHER_COL}").alias(OTHER_COL),
                _similarity_expr(metric).cast("double").alias(SIMILARITY_COL),
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


# --------------------------------------------------------------------------------- broadcast
def collect_ratings(values_df: DataFrame, *, col_user: str = USER_COL, col_item: str = ITEM_COL,
                    extra: tuple[str, ...] = ()) -> dict:
    """``values_df`` collected (an action) as numpy arrays: ``col_user`` and ``col_item`` (int32
    when their column is an int, else int64), ``_value`` (double, or None without one) and the
    ``extra`` columns (counts, as int32): the driver holds every row, so 4 bytes where they do."""
    has_value = VALUE_COL in values_df.columns

    def key(name):
        small = isinstance(values_df.schema[name].dataType, (T.IntegerType, T.ShortType, T.ByteType))
        return F.col(name).cast("int" if small else "long").alias(name)

    cols = [key(col_user), key(col_item)] + [F.col(c).cast("int").alias(c) for c in extra]
    cols += [F.col(VALUE_COL).cast("double").alias(VALUE_COL)] if has_value else []
    tbl = values_df.select(*cols).toArrow()
    out = {name: tbl.column(name).to_numpy() for name in tbl.column_names}
    out.setdefault(VALUE_COL, None)
    return out


def user_rows(ratings: dict, *, col_user: str = USER_COL, col_item: str = ITEM_COL) -> UserRows:
    """The :class:`UserRows` of :func:`collect_ratings` arrays (what the broadcast path ships)."""
    return UserRows.of(ratings[col_user], ratings[col_item], ratings[VALUE_COL])


def blocks_top_k(spark, rows: UserRows, *, metric: str, top_k: int, min_support: int = 1,
                 item_blocks: int | None = None, col_item: str = ITEM_COL) -> DataFrame:
    """Top-K per item with the collected ratings (:func:`user_rows`) broadcast to ``item_blocks``
    tasks (default: the default parallelism), each scoring its items (every ``item_blocks``-th
    by id) against all items (:mod:`batchml.similarity.item_blocks`).

    Rows are those of :func:`top_k_similar` (items as longs) plus one summary row per block
    (``rank`` null, ``_pairs``: directed co-occurring pairs, ``_scored``: those scored);
    :func:`from_blocks` separates them.
    """
    check_metric(metric)
    n = int(item_blocks or max(1, spark.sparkContext.defaultParallelism))
    shared = spark.sparkContext.broadcast(rows)
    fn = block_top_k_fn(shared, n, metric=metric, top_k=int(top_k), min_support=int(min_support),
                        item_col=col_item)
    schema = (f"{col_item} long, {OTHER_COL} long, {SIMILARITY_COL} double, {CO_COUNT_COL} long, "
              f"{RANK_COL} int, {PAIRS_COL} long, {SCORED_COL} long")
    return fault_point(spark.range(0, n, 1, n), "similarity").mapInArrow(fn, schema)


def driver_top_k(spark, rows: UserRows, *, metric: str, top_k: int, min_support: int = 1,
                 col_item: str = ITEM_COL) -> DataFrame:
    """The rows of :func:`blocks_top_k` computed here, in the driver, as one block (for work so
    small that starting the tasks' Python workers would cost more), as a DataFrame."""
    check_metric(metric)
    table = all_top_k(rows, metric=metric, top_k=int(top_k), min_support=int(min_support),
                      item_col=col_item)
    return fault_point(spark.createDataFrame(table), "similarity")


def broadcast_top_k(values_df: DataFrame, *, metric: str, top_k: int, min_support: int = 1,
                    item_blocks: int | None = None, col_user: str = USER_COL,
                    col_item: str = ITEM_COL) -> DataFrame:
    """:func:`blocks_top_k` of ``values_df`` (collected now: for ratings that fit in the driver
    and in every task)."""
    rows = user_rows(collect_ratings(values_df, col_user=col_user, col_item=col_item),
                     col_user=col_user, col_item=col_item)
    return blocks_top_k(values_df.sparkSession, rows, metric=metric, top_k=top_k,
                        min_support=min_support, item_blocks=item_blocks, col_item=col_item)


def from_blocks(blocks_df: DataFrame, *, item_type=None, col_item: str = ITEM_COL) -> DataFrame:
    """The top-K table of a :func:`broadcast_top_k` output (summary rows dropped, items cast
    to ``item_type``, default long): the columns of :func:`top_k_similar`."""
    item = F.col(col_item) if item_type is None else F.col(col_item).cast(item_type)
    other = F.col(OTHER_COL) if item_type is None else F.col(OTHER_COL).cast(item_type)
    return blocks_df.where(F.col(RANK_COL).isNotNull()).select(
        item.alias(col_item), other.alias(OTHER_COL), SIMILARITY_COL, CO_COUNT_COL, RANK_COL)


def similar_items(ratings_df: DataFrame, *, metric: str = "jaccard", top_k: int = 20,
                  min_support: int = 1, max_items_per_user: int = 0, salt_buckets: int = 1,
                  salt_min_items: int = 0, seed: int = 0, partitions: int | None = None,
                  broadcast: bool = False, col_user: str = USER_COL, col_item: str = ITEM_COL,
                  col_rating: str = RATING_COL) -> DataFrame:
    """Top-K similar items in one chain (cap, values, co-occurrences, similarity, top-K).

    The defaults compute the exact result (no cap, ``min_support=1``).  Swap ``col_user`` and
    ``col_item`` for user-user similarity.  ``partitions``: user buckets of :func:`co_occurrences`
    (default: the default parallelism).  ``broadcast``: the broadcast path
    (:func:`broadcast_top_k`, for small ratings: it collects the capped ratings now, the rest
    stays lazy) instead of the lazy shuffle chain.  :func:`compute_similar` is the staged,
    persisted and reported version the job uses.

    Returns
    -------
    DataFrame: ``col_item``, ``other_idx``, ``similarity`` double, ``co_count`` long, ``rank`` int.
    """
    capped = (filter_user_cap(ratings_df, max_items_per_user=max_items_per_user, seed=seed,
                              col_user=col_user, col_item=col_item)
              if max_items_per_user > 0 else ratings_df)
    values = with_pair_values(capped, metric=metric, col_item=col_item, col_rating=col_rating)
    if broadcast:
        blocks = broadcast_top_k(values, metric=metric, top_k=top_k, min_support=min_support,
                                 col_user=col_user, col_item=col_item)
        return from_blocks(blocks, item_type=values.schema[col_item].dataType, col_item=col_item)
    pairs = co_occurrences(values, salt_buckets=salt_buckets, salt_min_items=salt_min_items,
                           seed=seed, partitions=partitions, col_user=col_user, col_item=col_item)
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
    pairs_per_bucket: int = PAIRS_PER_BUCKET
    broadcast_max_ratings: int = 0      # 0: always the shuffle path
    driver_max_pairs: int = 0           # 0: the broadcast path always runs in tasks

    @classmethod
    def from_settings(cls, s) -> "SimilarityParams":
        """From a ``SimilaritySettings``; ``exact`` turns off the cap and ``min_support``."""
        return cls(metric=s.metric, top_k=s.top_k,
                   min_support=1 if s.exact else s.min_support,
                   max_items_per_user=0 if s.exact else s.max_items_per_user,
                   salt_buckets=s.salt_buckets, salt_min_items=s.salt_min_items, seed=s.seed,
                   broadcast_max_ratings=s.broadcast_max_ratings,
                   driver_max_pairs=s.driver_max_pairs)

    def broadcast(self, n_ratings: int) -> bool:
        """Whether :func:`compute_similar` takes the broadcast path for this many input ratings."""
        return self.broadcast_max_ratings > 0 and n_ratings <= self.broadcast_max_ratings


_LEVEL = StorageLevel.MEMORY_AND_DISK


def _cap_stage(ratings_df: DataFrame, params: SimilarityParams, *, col_user: str, col_item: str,
               col_rating: str, timings: dict | None, prefix: str) -> tuple[DataFrame, dict]:
    """Stage ``cap``: the capped ratings with their pair values (persisted) and :func:`cap_report`."""
    with stage(f"{prefix}cap", ratings_df.sparkSession, timings) as st:
        values = _capped_values(ratings_df, params, col_user=col_user, col_item=col_item,
                                col_rating=col_rating).persist(_LEVEL)
        report = cap_report(values, max_items_per_user=params.max_items_per_user,
                            col_user=col_user)
        st.set_rows(report["ratings_kept"])
        st.info.update(users_capped=report["users_capped"],
                       pairs_generated=f"{report['pairs_generated']:,}")
    return values, report


def _pairs_stage(values: DataFrame, params: SimilarityParams, pairs_generated: int, *,
                 col_user: str, col_item: str, timings: dict | None,
                 prefix: str) -> tuple[DataFrame, dict]:
    """Stage ``pairs``: the summed co-occurrences (persisted) and the bucket figures."""
    spark = values.sparkSession
    with stage(f"{prefix}pairs", spark, timings) as st:
        buckets = user_buckets(pairs_generated, pairs_per_bucket=params.pairs_per_bucket,
                               min_buckets=spark.sparkContext.defaultParallelism)
        partials = co_occurrence_partials(values, salt_buckets=params.salt_buckets,
                                          salt_min_items=params.salt_min_items, seed=params.seed,
                                          partitions=buckets, col_user=col_user, col_item=col_item)
        emitted = Observation()
        pairs = sum_partials(partials.observe(emitted, F.count(F.lit(1)).alias("rows")),
                             item_type=values.schema[col_item].dataType,
                             col_item=col_item).persist(_LEVEL)
        report = {"distinct_pairs": st.set_rows(pairs.count()), "user_buckets": buckets,
                  "partial_rows": int(emitted.get["rows"])}
        st.info.update(user_buckets=buckets, partial_rows=f"{report['partial_rows']:,}")
    return pairs, report


def _capped_values(ratings_df: DataFrame, params: SimilarityParams, *, col_user: str,
                   col_item: str, col_rating: str) -> DataFrame:
    """The capped ratings (:func:`filter_user_cap`) with their pair values (lazy)."""
    capped = filter_user_cap(ratings_df.select(col_user, col_item, col_rating),
                             max_items_per_user=params.max_items_per_user, seed=params.seed,
                             col_user=col_user, col_item=col_item)
    return with_pair_values(capped, metric=params.metric, col_item=col_item,
                            col_rating=col_rating)


def _collect_stage(ratings_df: DataFrame, params: SimilarityParams, *, col_user: str,
                   col_item: str, col_rating: str, timings: dict | None,
                   prefix: str) -> tuple[UserRows | None, dict]:
    """Stage ``cap`` of the broadcast path: with at most ``broadcast_max_ratings`` input ratings,
    the capped ratings collected as :class:`UserRows` and :func:`cap_figures`; else ``(None, {})``
    (one count)."""
    with stage(f"{prefix}cap", ratings_df.sparkSession, timings) as st:
        if not params.broadcast(ratings_df.count()):
            st.info.update(method="shuffle")
            return None, {}
        values = _capped_values(ratings_df, params, col_user=col_user, col_item=col_item,
                                col_rating=col_rating)
        ratings = collect_ratings(values, col_user=col_user, col_item=col_item, extra=(N_ALL_COL,))
        report = cap_figures(ratings[col_user], ratings.pop(N_ALL_COL),
                             max_items_per_user=params.max_items_per_user)
        rows = user_rows(ratings, col_user=col_user, col_item=col_item)
        del ratings
        st.set_rows(report["ratings_kept"])
        st.info.update(users_capped=report["users_capped"],
                       pairs_generated=f"{report['pairs_generated']:,}")
    return rows, report


def _broadcast_stage(spark, rows: UserRows, params: SimilarityParams, pairs_generated: int, *,
                     col_user: str, col_item: str, item_type, timings: dict | None,
                     prefix: str) -> tuple[DataFrame, dict]:
    """Stage ``top_k`` of the broadcast path (in the driver when ``pairs_generated`` is at most
    ``params.driver_max_pairs``): the persisted top-K table and its figures."""
    with stage(f"{prefix}top_k", spark, timings) as st:
        knobs = dict(metric=params.metric, top_k=params.top_k, min_support=params.min_support,
                     col_item=col_item)
        if 0 < params.driver_max_pairs and pairs_generated <= params.driver_max_pairs:
            method, n_blocks = "driver", 1
            blocks = driver_top_k(spark, rows, **knobs)
        else:
            method, n_blocks = "broadcast", max(1, spark.sparkContext.defaultParallelism)
            blocks = blocks_top_k(spark, rows, item_blocks=n_blocks, **knobs)
        seen = Observation()
        observed = blocks.observe(seen, F.sum(F.col(PAIRS_COL)).alias("pairs"),
                                  F.sum(F.col(SCORED_COL)).alias("scored"))
        top = from_blocks(observed, item_type=item_type, col_item=col_item).persist(_LEVEL)
        rows = st.set_rows(top.count())
        got = seen.get
        report = {"pairs_method": method, "item_blocks": n_blocks,
                  "distinct_pairs": int(got["pairs"] or 0) // 2,
                  "pairs_after_min_support": int(got["scored"] or 0) // 2, "rows": rows}
        st.info.update(method=method, item_blocks=n_blocks,
                       distinct_pairs=f"{report['distinct_pairs']:,}")
    return top, report


def _shuffle_stages(values: DataFrame, params: SimilarityParams, pairs_generated: int, *,
                    col_user: str, col_item: str, timings: dict | None,
                    prefix: str) -> tuple[DataFrame, dict]:
    """Stages ``pairs``, ``similarity`` and ``top_k`` of the shuffle path (persisting between
    them): the persisted top-K table and its figures."""
    spark = values.sparkSession
    pairs, report = _pairs_stage(values, params, pairs_generated, col_user=col_user,
                                 col_item=col_item, timings=timings, prefix=prefix)
    report["pairs_method"] = "shuffle"
    with stage(f"{prefix}similarity", spark, timings) as st:
        sim = with_similarity(pairs, item_stats(values, col_item=col_item), metric=params.metric,
                              min_support=params.min_support, col_item=col_item).persist(_LEVEL)
        report["pairs_after_min_support"] = st.set_rows(sim.count())
        pairs.unpersist()
    with stage(f"{prefix}top_k", spark, timings) as st:
        top = top_k_similar(sim, top_k=params.top_k, col_item=col_item).persist(_LEVEL)
        report["rows"] = st.set_rows(top.count())
        sim.unpersist()
    return top, report


def compute_similar(ratings_df: DataFrame, params: SimilarityParams, *, col_user: str = USER_COL,
                    col_item: str = ITEM_COL, col_rating: str = RATING_COL,
                    timings: dict | None = None, prefix: str = "") -> tuple[DataFrame, dict]:
    """Run the pipeline stage by stage (persisting between stages) and report its figures.

    The broadcast path (:func:`blocks_top_k`, stages ``cap`` and ``top_k``: the capped ratings
    are collected, nothing is persisted but the table) runs when there are at most
    ``params.broadcast_max_ratings`` input ratings (one count), else the shuffle path (stages
    ``cap``, ``pairs``, ``similarity``, ``top_k``); both give the same table and figures.

    Returns
    -------
    (top_k_df, report): the persisted top-K table (columns as :func:`top_k_similar`; the caller
    unpersists it) and a dict with the :func:`cap_report` figures plus ``pairs_method``
    (``driver``, ``broadcast`` or ``shuffle``), ``distinct_pairs`` (pairs with a co-occurrence),
    ``pairs_after_min_support``, ``rows``, and ``item_blocks`` (driver: 1, broadcast: tasks) or
    ``user_buckets`` (shuffle: from ``pairs_generated`` by :func:`user_buckets`) and
    ``partial_rows`` (rows the buckets emitted into the shuffle).
    """
    check_metric(params.metric)
    report: dict = {"params": params.__dict__.copy()}
    spark = ratings_df.sparkSession
    cols = dict(col_user=col_user, col_item=col_item, timings=timings, prefix=prefix)
    rows, figures = (_collect_stage(ratings_df, params, col_rating=col_rating, **cols)
                     if params.broadcast_max_ratings > 0 else (None, {}))
    if rows is not None:
        report.update(figures)
        top, figures = _broadcast_stage(spark, rows, params, report["pairs_generated"],
                                        item_type=ratings_df.schema[col_item].dataType, **cols)
        report.update(figures)
        return top, report
    values, figures = _cap_stage(ratings_df, params, col_rating=col_rating, **cols)
    report.update(figures)
    top, figures = _shuffle_stages(values, params, report["pairs_generated"], **cols)
    report.update(figures)
    values.unpersist()
    return top, report
