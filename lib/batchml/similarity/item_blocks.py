"""Worker side of the broadcast path: one item block's top-K neighbours against all items, numpy/scipy.

When the (capped) ratings are small, every task gets all of them (a Spark broadcast, wired by
:func:`batchml.similarity.pipeline.blocks_top_k`) and scores the items of its block against
every item: the rows ``X_Bᵀ X`` of the co-occurrence matrix (and of the value products a metric
needs), the metric, ``min_support`` and the top-K, all in the task.  Nothing is shuffled: a task
emits its items' top-K rows only.  Nothing here touches Spark.

The figures are the ones the shuffle path computes in Spark, with the same double arithmetic
(``co / (n_i + n_j - co)``, ``co / sqrt(n_i n_j)``), so Jaccard and binary cosine are bit for bit
the same; cosine and Pearson sums may differ in the last bits (another summation order).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from batchml.schema import CO_COUNT_COL, ITEM_COL, OTHER_COL, RANK_COL, SIMILARITY_COL

# bound on the products (sum over a chunk's items of their users' item counts) of one chunk
CHUNK_PRODUCTS = 1 << 22
# per block summary row (rank null): co-occurring directed pairs of the block's items, and those
# left after min_support and an undefined similarity
PAIRS_COL, SCORED_COL = "_pairs", "_scored"


def dense_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(distinct ids ascending, int32 code of each entry)``: a lookup table in linear time when
    the ids are small non-negative integers (the dense indices of a dataset), else ``np.unique``."""
    ids = np.asarray(ids)
    if len(ids) and ids.dtype.kind in "iu" and ids.min() >= 0 and ids.max() < max(4 * len(ids), 1 << 20):
        seen = np.zeros(int(ids.max()) + 1, dtype=bool)
        seen[ids] = True
        lut = np.cumsum(seen, dtype=np.int32)
        lut -= 1
        return np.flatnonzero(seen).astype(ids.dtype), lut[ids]
    distinct, codes = np.unique(ids, return_inverse=True)
    return distinct, codes.astype(np.int32)


@dataclass(frozen=True)
class UserRows:
    """Ratings grouped by user: the compact form the driver builds once and broadcasts.

    ``items`` (local index -> id, ascending), ``indptr`` (the ratings of user row u are
    ``indptr[u]:indptr[u+1]``), ``indices`` (int32 local item of each rating) and ``values`` (double,
    or None).  About 4 bytes per rating without values, 12 with.
    """

    items: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray | None

    @classmethod
    def of(cls, users: np.ndarray, items: np.ndarray, values: np.ndarray | None) -> "UserRows":
        ids, icol = dense_codes(items)
        _, ucol = dense_codes(users)
        order = np.argsort(ucol, kind="stable")
        indptr = np.zeros((int(ucol.max()) + 2) if len(ucol) else 1, dtype=np.int64)
        np.cumsum(np.bincount(ucol), out=indptr[1:])
        vals = None if values is None else np.asarray(values, dtype=np.float64)[order]
        return cls(ids, indptr, icol[order], vals)


@dataclass(frozen=True)
class Ratings:
    """All ratings as a user x item sparse matrix: ``items`` (local index -> id, ascending),
    ``x`` (binary int32, CSR) and ``xt`` (its transpose, CSR), ``xv`` (the values, or None),
    ``n_item`` (raters per item) and, with values, ``norm_item`` (L2 norm of each item's values).
    The value matrices the metrics multiply (``xvt``, ``xv2``, ``xv2t``) are built once, on first use."""

    items: np.ndarray
    x: sp.csr_matrix
    xt: sp.csr_matrix
    xv: sp.csr_matrix | None
    n_item: np.ndarray
    norm_item: np.ndarray | None

    @classmethod
    def of(cls, users: np.ndarray, items: np.ndarray, values: np.ndarray | None) -> "Ratings":
        return cls.from_rows(UserRows.of(users, items, values))

    @classmethod
    def from_rows(cls, rows: UserRows) -> "Ratings":
        shape = (len(rows.indptr) - 1, len(rows.items))
        ones = np.ones(len(rows.indices), dtype=np.int32)     # co-counts fit int32: at most the users
        x = sp.csr_matrix((ones, rows.indices, rows.indptr), shape=shape)
        n_item = np.bincount(rows.indices, minlength=len(rows.items)).astype(np.int64)
        if rows.values is None:
            return cls(rows.items, x, x.T.tocsr(), None, n_item, None)
        xv = sp.csr_matrix((rows.values, rows.indices, rows.indptr), shape=shape)
        norm = np.sqrt(np.bincount(rows.indices, weights=rows.values * rows.values,
                                   minlength=len(rows.items)))
        return cls(rows.items, x, x.T.tocsr(), xv, n_item, norm)

    @cached_property
    def xvt(self) -> sp.csr_matrix:
        return self.xv.T.tocsr()

    @cached_property
    def xv2(self) -> sp.csr_matrix:
        return self.xv.multiply(self.xv).tocsr()

    @cached_property
    def xv2t(self) -> sp.csr_matrix:
        return self.xv2.T.tocsr()


def chunks(rows: np.ndarray, ratings: Ratings, limit: int) -> list[np.ndarray]:
    """Split the local item indices ``rows`` into chunks of at most ``limit`` products each
    (an item's products: the item counts of its users summed; a heavier item is a chunk alone)."""
    user_items = np.diff(ratings.x.indptr)
    work = np.asarray(ratings.xt[rows] @ user_items).ravel() if len(rows) else rows
    out, start, acc = [], 0, 0
    for k, w in enumerate(work.tolist()):
        if acc and acc + w > limit:
            out.append(rows[start:k])
            start, acc = k, 0
        acc += w
    if start < len(rows):
        out.append(rows[start:])
    return out


def _aligned(pattern: sp.csr_matrix, m: sp.csr_matrix) -> np.ndarray:
    """The entries of ``m`` at the nonzeros of ``pattern`` (same shape, sorted indices; ``m``'s
    nonzeros are a subset of ``pattern``'s), 0 where ``m`` has none."""
    m.sort_indices()
    n = pattern.shape[1]
    keys = np.repeat(np.arange(pattern.shape[0], dtype=np.int64) * n, np.diff(pattern.indptr))
    keys += pattern.indices
    mk = np.repeat(np.arange(m.shape[0], dtype=np.int64) * n, np.diff(m.indptr)) + m.indices
    out = np.zeros(len(keys), dtype=np.float64)
    out[np.searchsorted(keys, mk)] = m.data
    return out


def _value_sums(ratings: Ratings, rows: np.ndarray, co_m: sp.csr_matrix, metric: str):
    """[sum_xy] (cosine) or [sum_xy, sum_xx, sum_yy] (pearson) at the nonzeros of ``co_m``
    (sums over the co-raters of x = the row item's value, y = the other's)."""
    if metric not in ("cosine", "pearson"):
        return []
    co_m.sort_indices()
    out = [_aligned(co_m, ratings.xvt[rows] @ ratings.xv)]
    if metric == "pearson":
        out.append(_aligned(co_m, ratings.xv2t[rows] @ ratings.x))
        out.append(_aligned(co_m, ratings.xt[rows] @ ratings.xv2))
    return out


def chunk_top_k(ratings: Ratings, rows: np.ndarray, *, metric: str, top_k: int, min_support: int):
    """The top-K of the items ``rows`` (local indices) against every other item.

    Returns ``(a, b, similarity, co, rank, pairs, scored)``: the top-K entries (local indices, by
    a then rank), the directed co-occurring pairs of ``rows`` and those scored (``co >=
    min_support``, similarity defined).
    """
    co_m = ratings.xt[rows] @ ratings.x                   # rows x items, unsorted columns
    sums = _value_sums(ratings, rows, co_m, metric)      # (sorts co_m's columns when it needs to)
    counts = np.diff(co_m.indptr)
    b, co = co_m.indices.astype(np.int64), co_m.data
    a_rep = np.repeat(rows, counts)
    sim = _scores(ratings, rows, counts, a_rep, b, co, sums, metric)
    diag = b == a_rep
    valid = ~diag & (co >= int(min_support)) & ~np.isnan(sim)
    sim[~valid] = -np.inf
    idx = _candidates(sim, co_m.indptr, counts, top_k)
    idx = idx[valid[idx]]
    idx = idx[np.lexsort((b[idx], -sim[idx], a_rep[idx]))]
    first = np.r_[0, np.flatnonzero(np.diff(a_rep[idx])) + 1]
    rank = np.arange(len(idx)) - np.repeat(first, np.diff(np.r_[first, len(idx)])) + 1
    idx, rank = idx[rank <= top_k], rank[rank <= top_k]
    return (a_rep[idx], b[idx], sim[idx], co[idx], rank, len(b) - int(np.count_nonzero(diag)),
            int(np.count_nonzero(valid)))


def _scores(ratings: Ratings, rows, counts, a_rep, b, co, sums, metric: str) -> np.ndarray:
    """The metric per entry (NaN where undefined) with the shuffle path's double arithmetic:
    ``co / (n_a + n_b - co)``, ``co / sqrt(n_a n_b)``, ``xy / (|a| |b|)``, ``xy / sqrt(xx yy)``."""
    n = ratings.n_item
    if metric == "jaccard":
        den = np.repeat(n[rows], counts)
        den += n[b]
        den -= co
        return co / den                       # int64 / int64: both as double, one division
    if metric == "cosine_binary":
        return co / np.sqrt((np.repeat(n[rows], counts) * n[b]).astype(np.float64))
    if metric == "cosine":
        den = ratings.norm_item[a_rep] * ratings.norm_item[b]
    else:  # pearson
        den = np.sqrt(sums[1] * sums[2])
    out = np.full(len(b), np.nan)
    pos = den > 0
    out[pos] = sums[0][pos] / den[pos]
    return out


def _candidates(sim: np.ndarray, indptr: np.ndarray, counts: np.ndarray, top_k: int) -> np.ndarray:
    """Entries at or above their row's ``top_k``-th largest similarity (all of a shorter row)."""
    thr = np.full(len(counts), -np.inf)
    for r in np.flatnonzero(counts > top_k).tolist():
        seg = sim[indptr[r]:indptr[r + 1]]
        thr[r] = np.partition(seg, len(seg) - top_k)[len(seg) - top_k]
    return np.flatnonzero(sim >= np.repeat(thr, counts))


def block_top_k(ratings: Ratings, block: int, n_blocks: int, *, metric: str, top_k: int,
                min_support: int, item_col: str = ITEM_COL, chunk_products: int = CHUNK_PRODUCTS):
    """Arrow batches of the top-K rows of the items of block ``block`` (every ``n_blocks``-th
    item by id) and one summary row (``_pairs``, ``_scored``: directed pairs counted)."""
    rows = np.arange(block, len(ratings.items), n_blocks, dtype=np.int64)
    n_pairs = n_scored = 0
    for part in chunks(rows, ratings, chunk_products):
        a, b, sim, co, rank, pairs, scored = chunk_top_k(ratings, part, metric=metric,
                                                         top_k=top_k, min_support=min_support)
        n_pairs += pairs
        n_scored += scored
        yield _batch(item_col, ratings.items[a], ratings.items[b], sim, co, rank, None, None)
    yield _batch(item_col, [None], [None], [None], [None], [None], [n_pairs], [n_scored])


def _batch(item_col, item, other, sim, co, rank, pairs, scored) -> pa.RecordBatch:
    n = len(item)
    none = pa.nulls(n, pa.int64())
    return pa.RecordBatch.from_arrays(
        [pa.array(item, pa.int64()), pa.array(other, pa.int64()), pa.array(sim, pa.float64()),
         pa.array(co, pa.int64()), pa.array(rank, pa.int32()),
         none if pairs is None else pa.array(pairs, pa.int64()),
         none if scored is None else pa.array(scored, pa.int64())],
        names=[item_col, OTHER_COL, SIMILARITY_COL, CO_COUNT_COL, RANK_COL, PAIRS_COL, SCORED_COL])


def all_top_k(rows: UserRows, **kwargs) -> pa.Table:
    """Every item's top-K rows and one summary row, in this process (one block): the
    :func:`block_top_k` batches of all items as one table (columns as :func:`_batch`)."""
    ratings = Ratings.from_rows(rows)
    batches = list(block_top_k(ratings, 0, 1, **kwargs)) if len(ratings.items) else []
    item_col = kwargs.get("item_col", ITEM_COL)
    return pa.Table.from_batches(batches, schema=_batch(item_col, [], [], [], [], [], None,
                                                        None).schema)


def block_top_k_fn(shared, n_blocks: int, **kwargs):
    """For ``mapInArrow`` over block ids (column ``id``): ``shared`` is a broadcast of the
    :class:`UserRows` every block scores against."""
    def top_k(batches):
        ratings = None
        for batch in batches:
            for block in batch.column("id").to_pylist():
                if ratings is None:
                    ratings = Ratings.from_rows(shared.value)
                if len(ratings.items):
                    yield from block_top_k(ratings, int(block), n_blocks, **kwargs)
    return top_k
