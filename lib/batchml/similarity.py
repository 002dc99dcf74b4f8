"""Co-occurrence similarity (Jaccard, cosine, Pearson), "because you liked X", item-CF prediction.

Every function works on item-item similarity by default; user-user similarity is the same code with
the roles swapped (``col_user=ITEM_COL, col_item=USER_COL``): the "basket" column is the one the
co-occurrences are grouped on, the "entity" column is the one whose pairs are scored.

Pipeline (pure ``DataFrame -> DataFrame`` steps, wired by :func:`compute_similar`)

1. :func:`filter_user_cap` -- per user keep at most ``max_items_per_user`` items, the ones with the
   smallest ``xxhash64(seed, user, item)`` (deterministic, no ``rand()``).  A user with n items makes
   n(n-1)/2 pairs, so the cap bounds the work of heavy users.
2. :func:`with_pair_values` -- the per-rating value a metric needs (none, the rating, or the rating
   centred by the item mean).
3. :func:`co_occurrences` -- partial products: users are hash-bucketed, each bucket (in
   ``mapInArrow``) builds its sparse user x item matrix X with scipy.sparse and emits the i < j
   nonzeros of XᵀX (and of the value products the metric needs); the buckets' rows are summed per
   pair.  The shuffle carries at most the distinct pairs of each bucket, not every user's
   n(n-1)/2 pairs.  Users with many items are salted (split into ``salt_buckets`` groups by a hash
   of the item on the left side, all their items on the right) so one heavy user is spread over
   several buckets.
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
from pyspark.sql import DataFrame, Observation, Window as W
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
# Bounds of the worker side of :func:`co_occurrences` (documented there).
PAIRS_PER_BUCKET = 1_000_000_000  # compute_similar: user buckets = total pairs / this (at least
                                  # the default parallelism)
CHUNK_NNZ = 1 << 25               # bound on the nonzeros of one sparse product in a bucket
DENSE_CELLS = 1 << 24             # buckets with at most this many item pairs sum them densely
OUT_BATCH_ROWS = 1 << 19          # rows per Arrow batch a bucket emits


def user_buckets(total_pairs: int, *, min_buckets: int,
                 pairs_per_bucket: int = PAIRS_PER_BUCKET) -> int:
    """Number of user buckets for :func:`co_occurrences`: ``ceil(total_pairs / pairs_per_bucket)``,
    at least ``min_buckets`` (the parallelism wanted) and 1."""
    return max(1, int(min_buckets), -(-int(total_pairs) // max(1, int(pairs_per_bucket))))


class _DensePairSums:
    """Sums per item pair (i < j) of a bucket with few local items: packed upper-triangle arrays."""

    def __init__(self, n: int, n_sums: int):
        import numpy as np
        self.n = n
        size = n * (n - 1) // 2
        self.co = np.zeros(size, dtype=np.int64)
        self.sums = [np.zeros(size, dtype=np.float64) for _ in range(n_sums)]

    def _packed(self, i, j):
        return i * (2 * self.n - i - 1) // 2 + (j - i - 1)

    def add(self, co_part, sum_parts) -> None:
        i, j, v = co_part
        self.co[self._packed(i, j)] += v       # entries of one product are unique: no np.add.at
        for acc, (i, j, v) in zip(self.sums, sum_parts):
            acc[self._packed(i, j)] += v

    def full(self) -> bool:
        return False

    def drain(self):
        import numpy as np
        k = np.flatnonzero(self.co)
        starts = np.arange(self.n, dtype=np.int64)
        starts = starts * (2 * self.n - starts - 1) // 2
        i = np.searchsorted(starts, k, side="right") - 1
        j = k - starts[i] + i + 1
        yield i, j, self.co[k], [s[k] for s in self.sums]


class _SparsePairSums:
    """Sums per item pair (i < j) of a bucket with many local items: buffered (key, value) runs
    merged by key when they exceed ``limit`` entries, emitted when merging no longer halves them."""

    def __init__(self, n: int, n_sums: int, limit: int):
        self.n, self.n_sums, self.limit = n, n_sums, limit
        self.runs: list = []
        self.size = 0
        self.ready = None

    def add(self, co_part, sum_parts) -> None:
        i, j, v = co_part
        self.runs.append(((i * self.n + j, v), [(a * self.n + b, w) for a, b, w in sum_parts]))
        self.size += len(v)
        if self.size > self.limit:
            self._merge()
            if self.size > self.limit // 2:
                self.ready = self.runs.pop()
                self.size = 0

    def full(self) -> bool:
        return self.ready is not None

    def _merge(self) -> None:
        import numpy as np
        if len(self.runs) <= 1:
            return
        keys = np.unique(np.concatenate([r[0][0] for r in self.runs]))
        co = np.zeros(len(keys), dtype=np.int64)
        sums = [np.zeros(len(keys), dtype=np.float64) for _ in range(self.n_sums)]
        for (k, v), parts in self.runs:
            co[np.searchsorted(keys, k)] += v
            for acc, (k2, w) in zip(sums, parts):
                acc[np.searchsorted(keys, k2)] += w
        self.runs = [((keys, co), [(keys, s) for s in sums])]
        self.size = len(keys)

    def _emit(self, run):
        (k, v), parts = run
        return k // self.n, k % self.n, v, [w for _, w in parts]

    def drain(self):
        if self.ready is not None:
            run, self.ready = self.ready, None
            yield self._emit(run)
            return
        self._merge()
        for run in self.runs:
            yield self._emit(run)
        self.runs, self.size = [], 0


def bucket_partial_products(batches, *, has_value: bool, salts: int, item_col: str = ITEM_COL,
                            chunk_nnz: int = CHUNK_NNZ, dense_cells: int = DENSE_CELLS,
                            batch_rows: int = OUT_BATCH_ROWS):
    """Worker side of :func:`co_occurrences`: one bucket's Arrow batches in, its partial sums out.

    Input columns: ``_u`` (user), ``_s`` (salt, ``0 <= _s < salts``), ``_i`` (item), ``_l``
    (bool: the row is on the left side of its (user, salt) group), ``_v`` (value, when
    ``has_value``).  Every (user, salt) group is one row of two sparse matrices, L (its left rows)
    and R (all its rows); the bucket's partial co-occurrence counts are the i < j entries of
    ``L^T R`` on binary matrices, and with values ``L_v^T R_v`` (sum_xy), ``(L_v^2)^T R`` (sum_xx),
    ``L^T R_v^2`` (sum_yy).  Without salting L = R = X, the bucket's user x item matrix.

    Groups are multiplied in chunks of about ``chunk_nnz`` products (the nonzeros a product can
    have; one chunk when the local items squared fit), and the chunks' sums are accumulated per
    pair: densely when the bucket has at most ``dense_cells`` item pairs, else by merging sorted
    keys and emitting once merging stops halving them.  Output is streamed in batches of at most
    ``batch_rows`` rows: ``item_col``, ``other_idx`` (long, item < other), ``co_count`` long, and
    ``sum_xy``, ``sum_xx``, ``sum_yy`` double with values.  Each pair appears at most once per
    emitted run; the caller sums the runs of all buckets.
    """
    import numpy as np
    import pyarrow as pa
    import scipy.sparse as sp

    batches = [b for b in batches if b.num_rows]
    if not batches:
        return
    tbl = pa.Table.from_batches(batches)

    def col(name, dtype):
        return tbl.column(name).to_numpy().astype(dtype, copy=False)

    user, salt, item = col("_u", np.int64), col("_s", np.int64), col("_i", np.int64)
    left = col("_l", bool)
    value = col("_v", np.float64) if has_value else None
    del tbl, batches
    items, icol = np.unique(item, return_inverse=True)
    _, grp = np.unique(user * int(salts) + salt, return_inverse=True)
    order = np.argsort(grp, kind="stable")
    grp, icol, left = grp[order], icol[order], left[order]
    if has_value:
        value = value[order]
    del user, salt, item, order
    n, n_grp = len(items), int(grp[-1]) + 1
    n_right = np.bincount(grp, minlength=n_grp)
    work = np.bincount(grp[left], minlength=n_grp) * n_right
    starts = np.r_[0, np.cumsum(n_right)]
    if n * n <= chunk_nnz:
        cuts = np.array([0, n_grp])
    else:
        chunk_of = (np.cumsum(work) - 1) // int(chunk_nnz)
        cuts = np.r_[0, np.flatnonzero(np.diff(chunk_of)) + 1, n_grp]
    n_sums = 3 if has_value else 0
    acc = (_DensePairSums(n, n_sums) if n * (n - 1) // 2 <= dense_cells
           else _SparsePairSums(n, n_sums, int(chunk_nnz)))

    def upper(m):
        m = m.tocoo()
        keep = m.row < m.col
        return m.row[keep].astype(np.int64), m.col[keep].astype(np.int64), m.data[keep]

    def emit(runs):
        for i, j, co, sums in runs:
            for a in range(0, len(co), batch_rows):
                b = a + batch_rows
                arrays = [pa.array(items[i[a:b]], pa.int64()), pa.array(items[j[a:b]], pa.int64()),
                          pa.array(np.asarray(co[a:b], dtype=np.int64), pa.int64())]
                arrays += [pa.array(np.asarray(s[a:b], dtype=np.float64), pa.float64())
                           for s in sums]
                yield pa.RecordBatch.from_arrays(arrays, names=[item_col, OTHER_COL, CO_COUNT_COL]
                                                 + ([SUM_XY, SUM_XX, SUM_YY] if has_value else []))

    for c0, c1 in zip(cuts[:-1], cuts[1:]):
        r0, r1 = starts[c0], starts[c1]
        g, ic, lf = grp[r0:r1] - c0, icol[r0:r1], left[r0:r1]
        m = int(c1 - c0)
        ones = np.ones(r1 - r0, dtype=np.int64)
        lt = sp.csr_matrix((ones[lf], (ic[lf], g[lf])), shape=(n, m))        # L^T, binary
        rb = sp.csr_matrix((ones, (g, ic)), shape=(m, n))                    # R, binary
        co = upper(lt @ rb)
        sums = []
        if has_value:
            v = value[r0:r1]
            v2 = v * v
            lt_v = sp.csr_matrix((v[lf], (ic[lf], g[lf])), shape=(n, m))
            lt_v2 = sp.csr_matrix((v2[lf], (ic[lf], g[lf])), shape=(n, m))
            sums = [upper(lt_v @ sp.csr_matrix((v, (g, ic)), shape=(m, n))),          # sum_xy
                    upper(lt_v2 @ rb),                                                # sum_xx
                    upper(lt @ sp.csr_matrix((v2, (g, ic)), shape=(m, n)))]           # sum_yy
        acc.add(co, sums)
        del lt, rb, co, sums
        if acc.full():
            yield from emit(acc.drain())
    yield from emit(acc.drain())


def _partial_products_fn(**kwargs):
    def partial_products(batches):
        return bucket_partial_products(batches, **kwargs)
    return partial_products


def co_occurrences(values_df: DataFrame, *, salt_buckets: int = 1, salt_min_items: int = 0,
                   seed: int = 0, partitions: int | None = None, chunk_nnz: int = CHUNK_NNZ,
                   dense_cells: int = DENSE_CELLS, col_user: str = USER_COL,
                   col_item: str = ITEM_COL) -> DataFrame:
    """Co-occurrence counts (and value sums) of every item pair sharing a user, item < other.

    Partial products per user bucket, then one aggregation: the (user, item) rows are
    hash-partitioned on (user, salt) into ``partitions`` buckets (default: the default
    parallelism; :func:`compute_similar` sizes it from the pair count with :func:`user_buckets`),
    and each bucket, in ``mapInArrow`` (:func:`bucket_partial_products`), builds its sparse
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
    df = values_df
    salts = int(salt_buckets) if salt_buckets > 1 else 1
    if salts > 1:
        if N_KEPT_COL not in df.columns:
            df = df.withColumn(N_KEPT_COL, F.count(F.lit(1)).over(
                W.partitionBy(col_user).rowsBetween(W.unboundedPreceding, W.unboundedFollowing)))
        n_salts = (F.when(F.col(N_KEPT_COL) > F.lit(int(salt_min_items)), F.lit(salts))
                   .otherwise(F.lit(1)))
        item_salt = F.pmod(F.xxhash64(F.lit(int(seed)), F.col(col_item)), n_salts).cast("int")
        df = (df.withColumn("_item_salt", item_salt)
              .withColumn("_s", F.explode(F.sequence(F.lit(0), n_salts - 1)))
              .withColumn("_l", F.col("_s") == F.col("_item_salt")))
    else:
        df = df.withColumn("_s", F.lit(0)).withColumn("_l", F.lit(True))
    value = [F.col(VALUE_COL).cast("double").alias("_v")] if has_value else []
    rows = df.select(F.col(col_user).cast("long").alias("_u"), F.col("_s").cast("int").alias("_s"),
                     F.col(col_item).cast("long").alias("_i"), F.col("_l"), *value)
    n_parts = int(partitions or max(1, values_df.sparkSession.sparkContext.defaultParallelism))
    schema = (f"{col_item} long, {OTHER_COL} long, {CO_COUNT_COL} long"
              + (f", {SUM_XY} double, {SUM_XX} double, {SUM_YY} double" if has_value else ""))
    fn = _partial_products_fn(has_value=has_value, salts=salts, item_col=col_item,
                              chunk_nnz=int(chunk_nnz), dense_cells=int(dense_cells))
    # an explicit bucket count: adaptive execution does not coalesce a repartition by number
    return rows.repartition(n_parts, "_u", "_s").mapInArrow(fn, schema)


def sum_partials(partials_df: DataFrame, *, item_type=None, col_item: str = ITEM_COL) -> DataFrame:
    """Add up the partial rows of :func:`co_occurrence_partials` per pair (``item_type``: the
    Spark type the item columns are cast back to, default long).

    Returns
    -------
    DataFrame: the columns of :func:`co_occurrences`, one row per pair.
    """
    sums = [F.sum(F.col(c)).alias(c) for c in (SUM_XY, SUM_XX, SUM_YY) if c in partials_df.columns]
    agg = (partials_df.groupBy(col_item, OTHER_COL)
           .agg(F.sum(F.col(CO_COUNT_COL)).cast("long").alias(CO_COUNT_COL), *sums))
    if item_type is None:
        return agg
    return agg.select(F.col(col_item).cast(item_type).alias(col_item),
                      F.col(OTHER_COL).cast(item_type).alias(OTHER_COL),
                      CO_COUNT_COL, *[s for s in (SUM_XY, SUM_XX, SUM_YY) if s in agg.columns])


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
                  salt_min_items: int = 0, seed: int = 0, partitions: int | None = None,
                  col_user: str = USER_COL, col_item: str = ITEM_COL,
                  col_rating: str = RATING_COL) -> DataFrame:
    """Top-K similar items in one lazy chain (cap, values, co-occurrences, similarity, top-K).

    The defaults compute the exact result (no cap, ``min_support=1``).  Swap ``col_user`` and
    ``col_item`` for user-user similarity.  ``partitions``: user buckets of :func:`co_occurrences`
    (default: the default parallelism).  :func:`compute_similar` is the staged, persisted and
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
    unpersists it) and a dict with the :func:`cap_report` figures plus ``user_buckets`` (from
    ``pairs_generated`` by :func:`user_buckets`), ``partial_rows`` (rows the buckets emitted into
    the shuffle), ``distinct_pairs`` (pairs with a co-occurrence), ``pairs_after_min_support`` and
    ``rows``.
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
        buckets = user_buckets(report["pairs_generated"], pairs_per_bucket=params.pairs_per_bucket,
                               min_buckets=spark.sparkContext.defaultParallelism)
        partials = co_occurrence_partials(values, salt_buckets=params.salt_buckets,
                                          salt_min_items=params.salt_min_items, seed=params.seed,
                                          partitions=buckets, col_user=col_user, col_item=col_item)
        emitted = Observation()
        pairs = sum_partials(partials.observe(emitted, F.count(F.lit(1)).alias("rows")),
                             item_type=values.schema[col_item].dataType,
                             col_item=col_item).persist(level)
        report["distinct_pairs"] = st.set_rows(pairs.count())
        report["user_buckets"] = buckets
        report["partial_rows"] = int(emitted.get["rows"])
        st.info.update(user_buckets=buckets, partial_rows=f"{report['partial_rows']:,}")
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
