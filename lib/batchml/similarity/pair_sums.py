"""Worker side of the co-occurrence step: one user bucket's partial XᵀX sums, numpy/scipy on Arrow.

:func:`bucket_partial_products` runs inside ``mapInArrow`` (wired by
:func:`batchml.similarity.pipeline.co_occurrence_partials`): a bucket's (user, item) rows come in as
Arrow batches, the i < j nonzeros of the bucket's sparse products go out as Arrow batches.  Nothing
here touches Spark.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from batchml.numeric import sorted_unique
from batchml.schema import CO_COUNT_COL, ITEM_COL, OTHER_COL

# Bounds of one bucket's work (documented in :func:`bucket_partial_products`).
CHUNK_NNZ = 1 << 25               # bound on the nonzeros of one sparse product in a bucket
DENSE_CELLS = 1 << 24             # buckets with at most this many item pairs sum them densely
OUT_BATCH_ROWS = 1 << 19          # rows per Arrow batch a bucket emits

# value-sum columns of the partial rows: x = value of the item, y = value of the other
SUM_XY, SUM_XX, SUM_YY = "sum_xy", "sum_xx", "sum_yy"
SUM_COLS = (SUM_XY, SUM_XX, SUM_YY)


class _DensePairSums:
    """Sums per item pair (i < j) of a bucket with few local items: packed upper-triangle arrays."""

    def __init__(self, n: int, n_sums: int):
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
        if len(self.runs) <= 1:
            return
        keys = sorted_unique(np.concatenate([r[0][0] for r in self.runs]), inplace=True)
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


@dataclass
class Bucket:
    """One bucket's rows as arrays sorted by (user, salt) group.

    ``items``: the distinct item ids (local index -> id); per row ``grp`` (group 0..n_groups-1),
    ``icol`` (local item index), ``left`` (on the left side of its group) and ``value`` (or None).
    """

    items: np.ndarray
    grp: np.ndarray
    icol: np.ndarray
    left: np.ndarray
    value: np.ndarray | None

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_groups(self) -> int:
        return int(self.grp[-1]) + 1


def read_bucket(batches: Iterable[pa.RecordBatch], *, has_value: bool, salts: int) -> Bucket | None:
    """The input rows of :func:`bucket_partial_products` as a :class:`Bucket` (None when empty)."""
    batches = [b for b in batches if b.num_rows]
    if not batches:
        return None
    tbl = pa.Table.from_batches(batches)

    def col(name, dtype):
        return tbl.column(name).to_numpy().astype(dtype, copy=False)

    user, salt, item = col("_u", np.int64), col("_s", np.int64), col("_i", np.int64)
    items, icol = np.unique(item, return_inverse=True)
    _, grp = np.unique(user * int(salts) + salt, return_inverse=True)
    order = np.argsort(grp, kind="stable")
    value = col("_v", np.float64)[order] if has_value else None
    return Bucket(items=items, grp=grp[order], icol=icol[order], left=col("_l", bool)[order],
                  value=value)


def chunk_bounds(bucket: Bucket, chunk_nnz: int) -> tuple[np.ndarray, np.ndarray]:
    """Group boundaries of the chunks (about ``chunk_nnz`` products each; one chunk when the local
    items squared fit) and the first row of every group: ``(cuts, starts)``."""
    n, n_grp = bucket.n_items, bucket.n_groups
    n_right = np.bincount(bucket.grp, minlength=n_grp)
    starts = np.r_[0, np.cumsum(n_right)]
    if n * n <= chunk_nnz:
        return np.array([0, n_grp]), starts
    work = np.bincount(bucket.grp[bucket.left], minlength=n_grp) * n_right
    chunk_of = (np.cumsum(work) - 1) // int(chunk_nnz)
    return np.r_[0, np.flatnonzero(np.diff(chunk_of)) + 1, n_grp], starts


def _upper(m):
    m = m.tocoo()
    keep = m.row < m.col
    return m.row[keep].astype(np.int64), m.col[keep].astype(np.int64), m.data[keep]


def chunk_products(bucket: Bucket, r0: int, r1: int, g0: int, g1: int):
    """The i < j entries of one chunk's products (rows ``r0:r1``, groups ``g0:g1``).

    Returns ``(co, sums)``: co = upper(Lᵀ R) on binary matrices, and with values the
    ``[sum_xy, sum_xx, sum_yy]`` entries of ``L_vᵀ R_v``, ``(L_v²)ᵀ R``, ``Lᵀ R_v²``; each an
    ``(i, j, v)`` triple of arrays.
    """
    n, m = bucket.n_items, int(g1 - g0)
    g, ic, lf = bucket.grp[r0:r1] - g0, bucket.icol[r0:r1], bucket.left[r0:r1]
    ones = np.ones(r1 - r0, dtype=np.int64)
    lt = sp.csr_matrix((ones[lf], (ic[lf], g[lf])), shape=(n, m))        # L^T, binary
    rb = sp.csr_matrix((ones, (g, ic)), shape=(m, n))                    # R, binary
    co = _upper(lt @ rb)
    if bucket.value is None:
        return co, []
    v = bucket.value[r0:r1]
    v2 = v * v
    lt_v = sp.csr_matrix((v[lf], (ic[lf], g[lf])), shape=(n, m))
    lt_v2 = sp.csr_matrix((v2[lf], (ic[lf], g[lf])), shape=(n, m))
    return co, [_upper(lt_v @ sp.csr_matrix((v, (g, ic)), shape=(m, n))),          # sum_xy
                _upper(lt_v2 @ rb),                                                # sum_xx
                _upper(lt @ sp.csr_matrix((v2, (g, ic)), shape=(m, n)))]           # sum_yy


def record_batches(runs, items: np.ndarray, *, item_col: str, has_value: bool,
                   batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Accumulated runs ``(i, j, co, sums)`` (local indices) as Arrow batches of at most
    ``batch_rows`` rows with the item ids."""
    names = [item_col, OTHER_COL, CO_COUNT_COL] + (list(SUM_COLS) if has_value else [])
    for i, j, co, sums in runs:
        for a in range(0, len(co), batch_rows):
            b = a + batch_rows
            arrays = [pa.array(items[i[a:b]], pa.int64()), pa.array(items[j[a:b]], pa.int64()),
                      pa.array(np.asarray(co[a:b], dtype=np.int64), pa.int64())]
            arrays += [pa.array(np.asarray(s[a:b], dtype=np.float64), pa.float64()) for s in sums]
            yield pa.RecordBatch.from_arrays(arrays, names=names)


def bucket_partial_products(batches, *, has_value: bool, salts: int, item_col: str = ITEM_COL,
                            chunk_nnz: int = CHUNK_NNZ, dense_cells: int = DENSE_CELLS,
                            batch_rows: int = OUT_BATCH_ROWS):
    """One bucket's Arrow batches in, its partial sums out.

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
    bucket = read_bucket(batches, has_value=has_value, salts=salts)
    if bucket is None:
        return
    n, n_sums = bucket.n_items, 3 if has_value else 0
    acc = (_DensePairSums(n, n_sums) if n * (n - 1) // 2 <= dense_cells
           else _SparsePairSums(n, n_sums, int(chunk_nnz)))
    cuts, starts = chunk_bounds(bucket, chunk_nnz)
    out = dict(item_col=item_col, has_value=has_value, batch_rows=batch_rows)
    for g0, g1 in zip(cuts[:-1], cuts[1:]):
        co, sums = chunk_products(bucket, starts[g0], starts[g1], g0, g1)
        acc.add(co, sums)
        del co, sums
        if acc.full():
            yield from record_batches(acc.drain(), bucket.items, **out)
    yield from record_batches(acc.drain(), bucket.items, **out)


def partial_products_fn(**kwargs):
    """:func:`bucket_partial_products` with its keyword arguments bound (for ``mapInArrow``)."""
    def partial_products(batches):
        return bucket_partial_products(batches, **kwargs)
    return partial_products
