"""Scoring: candidate item arrays and the blocked top-N of every user (Spark) or of one user.

Top-N (:func:`top_n_per_user`) never builds the users × items pair table: users travel with their
bias, factors and the list of items they have rated; ``mapInArrow`` scores them in blocks of
``block_size`` users with one numpy matrix product against the candidate items (collected once to
the driver and broadcast: 17,770 × rank floats for the Netflix catalog), masks the rated items and
keeps the best N with ``argpartition``.  Memory per task is about block_size × n_items ×
:data:`SCORE_BYTES` × :data:`WORKING_COPIES` bytes, so the block is sized from a memory budget
(:func:`block_size_for`): a catalogue of millions of items gets blocks of a few users.  The same block scorer gives the popular-list and random
baselines of the ranking evaluation (no factor term; the item score is the shrunk mean, or a
seeded hash of (user, item)).  The score is the one of :mod:`batchml.recommend`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.schema import (BIAS_COL, COUNT_COL, FEATURES_COL, ITEM_COL, RANK_COL,
                            RECOMMENDATIONS_SCHEMA, SCORE_COL, USER_COL)

SEEN_COL = "_seen"



# ------------------------------------------------------------------------------ candidate items
@dataclass(frozen=True)
class ItemArrays:
    """Driver-side arrays of the candidate items.

    Attributes
    ----------
    idx : int32 (m,) item indices.
    offset : float64 (m,) the per-item part of the score (μ + b_i for a model, the shrunk mean for
        the popular list).
    factors : float32 (m, rank) γ·q_i, or None (no factor term).
    """

    idx: np.ndarray
    offset: np.ndarray
    factors: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return 0 if self.factors is None else int(self.factors.shape[1])

    def __len__(self) -> int:
        return len(self.idx)


def _stack_features(values: Sequence, rank: int) -> np.ndarray:
    """(n, rank) float32 from a sequence of arrays/lists or None (None → zeros)."""
    out = np.zeros((len(values), rank), dtype=np.float32)
    for k, v in enumerate(values):
        if v is not None and len(v):
            out[k] = np.asarray(v, dtype=np.float32)
    return out


def model_item_arrays(items_pdf: pd.DataFrame, *, mu: float, gamma: float, rank: int,
                      min_ratings: int = 0, col_item: str = ITEM_COL) -> ItemArrays:
    """Candidate items of a model: those with a bias or factors (trained), and at least
    ``min_ratings`` ratings when ``n_ratings`` is given.

    Parameters
    ----------
    items_pdf : pandas DataFrame with ``col_item``, ``bias`` (null ok), ``features`` (null ok) and
        optionally ``n_ratings``.
    """
    pdf = items_pdf
    trained = pdf[BIAS_COL].notna() | pdf[FEATURES_COL].notna()
    if min_ratings > 0:
        counts = pdf[COUNT_COL].fillna(0) if COUNT_COL in pdf.columns else 0
        trained &= counts >= min_ratings
    pdf = pdf[trained].sort_values(col_item)
    factors = _stack_features(list(pdf[FEATURES_COL]), rank) * np.float32(gamma) if rank else None
    return ItemArrays(idx=pdf[col_item].to_numpy(np.int32),
                      offset=float(mu) + pdf[BIAS_COL].fillna(0.0).to_numpy(np.float64),
                      factors=factors)


# ------------------------------------------------------------------------------- block scoring
SCORE_BYTES = 4        # a float32 score per (user, item) of the block
WORKING_COPIES = 6     # peak of score_block in score-sized arrays (measured: 3 for the model's
                       # scores + int64 argpartition indices, 6 for the random list's 64-bit hash)


def block_size_for(n_items: int, *, max_users: int, memory_mb: float) -> int:
    """Users per scoring block: ``max_users``, fewer when a block's score matrices would exceed
    ``memory_mb`` MiB (n_items × :data:`SCORE_BYTES` × :data:`WORKING_COPIES` bytes per user);
    at least 1."""
    per_user = max(1, int(n_items)) * SCORE_BYTES * WORKING_COPIES
    return max(1, min(int(max_users), int(memory_mb * 2 ** 20) // per_user))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def uniform_hash(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random numbers in [0, 1) for every (user, item): (len(users), len(items)).

    A splitmix64 finalizer of (user, item, seed); independent of partitioning and block size.
    """
    with np.errstate(over="ignore"):
        x = (users.astype(np.uint64)[:, None] * _GOLDEN
             ^ (items.astype(np.uint64)[None, :] + np.uint64(seed) * np.uint64(0xBF58476D1CE4E5B9)))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def score_block(items: ItemArrays, user_idx: np.ndarray, user_offset: np.ndarray,
                user_factors: np.ndarray | None, seen_rows: np.ndarray, seen_pos: np.ndarray,
                n: int, random_seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top ``n`` candidates of a block of users, seen items excluded.

    Parameters
    ----------
    items : the candidate items.
    user_idx : int (b,) user indices (used by the random scorer only).
    user_offset : float (b,) per-user part of the score (b_u).
    user_factors : float32 (b, rank) p_u, or None (no factor term).
    seen_rows, seen_pos : int arrays: row of the block and position in ``items`` of each seen item.
    n : list length.
    random_seed : when set, scores are :func:`uniform_hash` values (the random baseline).

    Returns
    -------
    (rows, positions, scores, ranks): flat arrays, one entry per recommendation, ordered by row then
    rank; ``positions`` index ``items``; ``scores`` float64 exact (μ + b_u + b_i + γ·p·q); ranks 1-based.
    Ties are broken by the smaller item index.
    """
    b, m = len(user_idx), len(items)
    k = min(n, m)
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64),
             np.empty(0, np.int32))
    if b == 0 or k == 0:
        return empty
    hashed = None
    if random_seed is not None:
        hashed = uniform_hash(user_idx, items.idx, random_seed)
        s = hashed.astype(np.float32)
    elif user_factors is not None and items.factors is not None:
        s = user_factors @ items.factors.T
        s += items.offset.astype(np.float32)[None, :]
        s += user_offset.astype(np.float32)[:, None]
    else:
        s = np.broadcast_to(items.offset.astype(np.float32)[None, :]
                            + user_offset.astype(np.float32)[:, None], (b, m)).copy()
    if len(seen_rows):
        s[seen_rows, seen_pos] = -np.inf
    if k < m:
        top = np.argpartition(s, m - k, axis=1)[:, m - k:]   # the k largest, unordered
    else:
        top = np.broadcast_to(np.arange(m), (b, m)).copy()
    approx = np.take_along_axis(s, top, axis=1)
    if hashed is not None:
        exact = np.take_along_axis(hashed, top, axis=1)
    else:
        exact = items.offset[top] + np.asarray(user_offset, np.float64)[:, None]
        if user_factors is not None and items.factors is not None:
            exact = exact + np.einsum("br,bkr->bk", user_factors.astype(np.float64),
                                      items.factors[top].astype(np.float64))
    exact = np.where(np.isneginf(approx), -np.inf, exact)
    order = np.lexsort((items.idx[top], -exact), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    exact = np.take_along_axis(exact, order, axis=1)
    ranks = np.broadcast_to(np.arange(1, k + 1, dtype=np.int32), (b, k))
    keep = ~np.isneginf(exact)
    rows = np.broadcast_to(np.arange(b)[:, None], (b, k))
    return rows[keep], top[keep], exact[keep], ranks[keep]


def position_lookup(items: ItemArrays) -> np.ndarray:
    """int64 array mapping an item index to its position in ``items`` (-1: not a candidate)."""
    size = int(items.idx.max()) + 1 if len(items) else 1
    pos = np.full(size, -1, dtype=np.int64)
    pos[items.idx] = np.arange(len(items))
    return pos


def _seen_positions(lookup: np.ndarray, values: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.repeat(np.arange(len(lengths)), lengths)
    values = values.astype(np.int64)
    ok = (values >= 0) & (values < len(lookup))
    pos = np.full(len(values), -1, dtype=np.int64)
    pos[ok] = lookup[values[ok]]
    keep = pos >= 0
    return rows[keep], pos[keep]


def _list_column(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, lengths) of a list array without nulls."""
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    return values, lengths


def _make_block_scorer(bc, *, n: int, rank: int, block_size: int, random_seed: int | None,
                       use_factors: bool):
    def score_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        items: ItemArrays = bc.value
        lookup = position_lookup(items)
        for batch in batches:
            users = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
            offset = batch.column(1).to_numpy(zero_copy_only=False).astype(np.float64)
            factors = None
            if use_factors:
                flat, _ = _list_column(batch.column(2))
                factors = flat.astype(np.float32).reshape(len(users), rank)
            seen_vals, seen_len = _list_column(batch.column(3))
            starts = np.concatenate([[0], np.cumsum(seen_len)])
            for s0 in range(0, len(users), block_size):
                s1 = min(s0 + block_size, len(users))
                rows, pos = _seen_positions(lookup, seen_vals[starts[s0]:starts[s1]],
                                            seen_len[s0:s1])
                r, p, sc, rk = score_block(items, users[s0:s1], offset[s0:s1],
                                           None if factors is None else factors[s0:s1], rows, pos,
                                           n, random_seed)
                yield pa.RecordBatch.from_arrays(
                    [pa.array(users[s0:s1][r].astype(np.int32), pa.int32()),
                     pa.array(items.idx[p].astype(np.int32), pa.int32()),
                     pa.array(sc, pa.float64()), pa.array(rk, pa.int32())],
                    names=[USER_COL, ITEM_COL, SCORE_COL, RANK_COL])
    return score_batches


def top_n_per_user(users_df: DataFrame, items: ItemArrays, *, n: int, seen_df: DataFrame | None = None,
                   block_size: int = 1024, random_seed: int | None = None,
                   partitions: int | None = None, col_user: str = USER_COL,
                   col_item: str = ITEM_COL) -> DataFrame:
    """Top ``n`` candidate items per user, by score, excluding the items each user has rated.

    Parameters
    ----------
    users_df : ``col_user`` and optionally ``bias`` (b_u, null → 0) and ``features`` (p_u, null →
        zeros; used when ``items.factors`` is set).  One row per user.
    items : candidate items (:func:`model_item_arrays`, :func:`popular_item_arrays`).
    seen_df : (``col_user``, ``col_item``) pairs never recommended.
    block_size : users per numpy matrix product.
    random_seed : score by a seeded hash instead (the random baseline).
    partitions : tasks to score in (default: twice the default parallelism, more for many users).

    Returns
    -------
    DataFrame ``recommendations``: ``user_idx`` int, ``item_idx`` int, ``score`` double, ``rank``
    int (1 = best).  A user with fewer than ``n`` unseen candidates gets fewer rows.
    """
    spark = users_df.sparkSession
    rank = items.rank
    use_factors = rank > 0 and FEATURES_COL in users_df.columns and random_seed is None
    bias = (F.coalesce(F.col(BIAS_COL).cast("double"), F.lit(0.0)) if BIAS_COL in users_df.columns
            else F.lit(0.0)).alias(BIAS_COL)
    feats = (F.coalesce(F.col(FEATURES_COL).cast("array<float>"),
                        F.array_repeat(F.lit(0.0).cast("float"), rank))
             if use_factors else F.lit(None).cast("array<float>")).alias(FEATURES_COL)
    base = users_df.select(F.col(col_user).cast("int").alias(USER_COL), bias, feats)
    if seen_df is not None:
        seen_lists = (seen_df.select(F.col(col_user).cast("int").alias(USER_COL),
                                     F.col(col_item).cast("int").alias(ITEM_COL))
                      .groupBy(USER_COL).agg(F.collect_list(ITEM_COL).alias(SEEN_COL)))
        base = base.join(seen_lists, on=USER_COL, how="left")
    else:
        base = base.withColumn(SEEN_COL, F.lit(None).cast("array<int>"))
    prepared = base.select(USER_COL, BIAS_COL, FEATURES_COL,
                           F.coalesce(F.col(SEEN_COL), F.array().cast("array<int>")).alias(SEEN_COL))
    parts = partitions or 2 * max(1, spark.sparkContext.defaultParallelism)
    bc = spark.sparkContext.broadcast(items)
    scorer = _make_block_scorer(bc, n=n, rank=rank, block_size=block_size, random_seed=random_seed,
                                use_factors=use_factors)
    out = prepared.repartition(parts).mapInArrow(scorer, RECOMMENDATIONS_SCHEMA)
    return out.select(F.col(USER_COL).alias(col_user), F.col(ITEM_COL).alias(col_item),
                      SCORE_COL, RANK_COL)


# ------------------------------------------------------------------------------------ one user
def recommend_for_vector(items: ItemArrays, *, bias: float, factors: np.ndarray | None, n: int,
                         exclude: Iterable[int] = ()) -> pd.DataFrame:
    """Top ``n`` items for one user given by b_u and p_u (the score of :mod:`batchml.recommend`).

    Returns
    -------
    pandas DataFrame ``item_idx``, ``score``, ``rank``.
    """
    lookup = position_lookup(items)
    ex = np.asarray(list(exclude), dtype=np.int64)
    rows, pos = _seen_positions(lookup, ex, np.array([len(ex)]))
    uf = None
    if factors is not None and items.factors is not None and len(factors):
        uf = np.asarray(factors, dtype=np.float32)[None, :]
    _, p, sc, rk = score_block(items, np.array([0]), np.array([float(bias)]), uf, rows, pos, n)
    return pd.DataFrame({ITEM_COL: items.idx[p].astype(np.int64), SCORE_COL: sc, RANK_COL: rk})

