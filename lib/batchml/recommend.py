"""Recommendations from a factor model: top-N per user, popular lists, fold-in of a new user.

Scores
------
For a model dir written by :func:`batchml.factorize.save_model` (layout in that module's docstring)
the score of user u for item i is

    s(u, i) = μ + b_u + b_i + γ·p_u·q_i

with a missing bias or factor counting as 0.  Ranking uses this unclipped score (clipping to the
rating scale would tie every item above the top of the scale); the ``score`` column holds it too.

Top-N (:func:`top_n_per_user`) never builds the users × items pair table: users travel with their
bias, factors and the list of items they have rated; ``mapInArrow`` scores them in blocks of
``block_size`` users with one numpy matrix product against the candidate items (collected once to
the driver and broadcast: 17,770 × rank floats for the Netflix catalog), masks the rated items and
keeps the best N with ``argpartition``.  Memory per task is about 3 × block_size × n_items × 4
bytes (scores and partition indices).  The same block scorer gives the popular-list and random
baselines of the ranking evaluation (no factor term; the item score is the shrunk mean, or a
seeded hash of (user, item)).

Popular list (:func:`popular_items`): the shrunk (Bayesian) mean

    shrunk_i = (n_i · mean_i + m · μ) / (n_i + m)

pulls an item with few ratings toward the global mean μ with the weight of ``m`` (prior strength)
pseudo-ratings, so two 5-star ratings do not beat ten thousand ratings averaging 4.6.  The model's
item bias b_i gives a second ranking (``bias_rank``).

Fold-in (:func:`fold_in`): a new user's b_u and p_u by ridge regression against the fixed item
biases and factors, minimizing

    Σ_i (r_ui − μ − b_i − b_u − γ·p_u·q_i)² + λ_b·b_u² + λ·n_u·|p_u|²

(the λ·n_u scaling is the one MLlib ALS uses), solved in closed form on the driver.
"""
from __future__ import annotations

import csv
import difflib
import logging
import math
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F, types as T

from batchml.model_dir import load_model
from batchml.ratings import read_test_split
from batchml.schema import (BIAS_COL, BIAS_RANK_COL, COUNT_COL, FEATURES_COL, ITEM_COL, ITEM_ID_COL,
                            MEAN_COL, POPULAR, RANK_COL, RATING_COL, RECOMMENDATIONS,
                            RECOMMENDATIONS_READABLE, SCORE_COL, SHRUNK_COL, TITLE_COL, USER_COL,
                            USER_ID_COL, YEAR_COL)
from batchml.spark import with_global_row_number

LOG = logging.getLogger("batchml.recommend")

SEEN_COL = "_seen"

RECOMMENDATIONS_SCHEMA = T.StructType([
    T.StructField(USER_COL, T.IntegerType(), False),
    T.StructField(ITEM_COL, T.IntegerType(), False),
    T.StructField(SCORE_COL, T.DoubleType(), False),
    T.StructField(RANK_COL, T.IntegerType(), False),
])


class RecommendError(ValueError):
    """Input the recommender cannot use (unknown ids or titles, a bad fold-in file, ...)."""


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


def _position_lookup(items: ItemArrays) -> np.ndarray:
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
        lookup = _position_lookup(items)
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


# ---------------------------------------------------------------------------------- popular list
def item_rating_stats(ratings_df: DataFrame, *, col_item: str = ITEM_COL,
                      col_rating: str = RATING_COL) -> DataFrame:
    """Per item: ``n_ratings`` long and ``mean_rating`` double."""
    return (ratings_df.groupBy(col_item)
            .agg(F.count(F.lit(1)).alias(COUNT_COL),
                 F.avg(F.col(col_rating).cast("double")).alias(MEAN_COL)))


def shrunk_mean(n: F.Column, mean: F.Column, *, mu: float, prior_strength: float) -> F.Column:
    """(n·mean + m·μ) / (n + m) as a column expression."""
    m = F.lit(float(prior_strength))
    return (n * mean + m * F.lit(float(mu))) / (n + m)


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
    by_shrunk = [F.col(SHRUNK_COL).desc(), F.col(COUNT_COL).desc(), F.col(col_item).asc()]
    by_bias = [F.col(BIAS_COL).desc_nulls_last(), F.col(col_item).asc()]
    stats = stats.withColumn(SHRUNK_COL, shrunk_mean(F.col(COUNT_COL), F.col(MEAN_COL), mu=mu,
                                                     prior_strength=prior_strength))
    ranked = with_global_row_number(with_global_row_number(stats, by_shrunk, RANK_COL),
                                    by_bias, BIAS_RANK_COL)
    return (ranked
            .select(F.col(col_item).cast("int").alias(col_item), COUNT_COL, MEAN_COL, SHRUNK_COL,
                    BIAS_COL, F.col(RANK_COL).cast("int"), F.col(BIAS_RANK_COL).cast("int")))


def popular_item_arrays(popular_pdf: pd.DataFrame, *, col_item: str = ITEM_COL) -> ItemArrays:
    """Candidate arrays scoring every item by its shrunk mean (the popular-list baseline)."""
    pdf = popular_pdf.sort_values(col_item)
    return ItemArrays(idx=pdf[col_item].to_numpy(np.int32),
                      offset=pdf[SHRUNK_COL].to_numpy(np.float64), factors=None)


# ---------------------------------------------------------------------------- titles and ids
def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().casefold()


class ItemLookup:
    """Find items by source id or title (case-insensitive), with "did you mean" suggestions.

    Parameters
    ----------
    items_pdf : ``item_idx``, ``item_id`` and optionally ``title``, ``year``.
    """

    def __init__(self, items_pdf: pd.DataFrame):
        self.items = items_pdf.reset_index(drop=True)
        self._by_id = {str(v): int(i) for v, i in zip(self.items[ITEM_ID_COL], self.items[ITEM_COL])}
        self._by_title: dict[str, list[int]] = {}
        titles = self.items[TITLE_COL] if TITLE_COL in self.items.columns else []
        for t, i in zip(titles, self.items[ITEM_COL]):
            if isinstance(t, str):
                self._by_title.setdefault(_norm(t), []).append(int(i))
        self._titles = {_norm(t): t for t in titles if isinstance(t, str)}

    def by_title(self, title: str) -> list[int]:
        """Item indices whose title equals ``title`` ignoring case and extra spaces."""
        return list(self._by_title.get(_norm(title), []))

    def by_id_or_title(self, key: str) -> list[int]:
        """The item with source id ``key``, else the items with that title."""
        key = str(key).strip()
        if key in self._by_id:
            return [self._by_id[key]]
        return self.by_title(key)

    def suggestions(self, text: str, n: int = 5) -> list[str]:
        """Titles close to ``text``: titles containing it first, then difflib's close matches."""
        q = _norm(text)
        if not q:
            return []
        contains = sorted((t for k, t in self._titles.items() if q in k), key=len)[:n]
        close = [self._titles[k] for k in difflib.get_close_matches(q, list(self._titles), n=n,
                                                                    cutoff=0.6)]
        out: list[str] = []
        for t in contains + close:
            if t not in out:
                out.append(t)
        return out[:n]

    def not_found_message(self, text: str, what: str = "title") -> str:
        """'no such title "x"; did you mean: ...' text."""
        sugg = self.suggestions(text)
        msg = f'no such {what} "{text}"'
        return msg + (f"; did you mean: {'; '.join(repr(s) for s in sugg)}?" if sugg else "")

    def describe(self, item_idx: Iterable[int]) -> pd.DataFrame:
        """``item_idx``, ``item_id``, ``title`` (and ``year``) of the given items, in that order."""
        cols = [c for c in (ITEM_COL, ITEM_ID_COL, TITLE_COL, YEAR_COL) if c in self.items.columns]
        order = pd.DataFrame({ITEM_COL: np.asarray(list(item_idx), dtype=np.int64)})
        return order.merge(self.items[cols].astype({ITEM_COL: np.int64}), on=ITEM_COL, how="left")


# ------------------------------------------------------------------------------------ fold-in
@dataclass(frozen=True)
class FoldIn:
    """A folded-in user: ``bias`` (b_u), ``factors`` (p_u, float64), and the rated items."""

    bias: float
    factors: np.ndarray
    item_idx: np.ndarray
    ratings: np.ndarray


def read_fold_in_csv(path: str, lookup: ItemLookup) -> tuple[np.ndarray, np.ndarray]:
    """Read a new user's ratings: a CSV with a header naming ``rating`` and one of ``item_id``,
    ``title`` or ``item`` (a source id or a title).  Titles with commas must be quoted.

    Returns
    -------
    (item_idx int array, rating float array); an item listed twice keeps its last rating.

    Raises
    ------
    RecommendError naming every line that cannot be used (unknown item with suggestions, bad rating).
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise RecommendError(f"cannot read fold-in file {path!r}: {exc.strerror or exc}") from None
    rows = [r for r in rows if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise RecommendError(f"fold-in file {path!r} is empty")
    header = [c.strip().casefold() for c in rows[0]]
    key_col = next((c for c in ("item_id", "title", "item") if c in header), None)
    if key_col is None or "rating" not in header:
        raise RecommendError(f"fold-in file {path!r}: the first line must name the columns, e.g. "
                             f"'item,rating' (item: a source id or a title); got {rows[0]!r}")
    ki, ri = header.index(key_col), header.index("rating")
    found: dict[int, float] = {}
    problems = []
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) <= max(ki, ri):
            problems.append(f"line {line_no}: expected {len(header)} fields, got {row!r} "
                            "(quote titles that contain commas)")
            continue
        key, raw = row[ki].strip(), row[ri].strip()
        try:
            rating = float(raw)
            if not math.isfinite(rating):
                raise ValueError
        except ValueError:
            problems.append(f"line {line_no}: rating {raw!r} is not a number")
            continue
        if key_col == "item_id":
            hits = [lookup._by_id[key]] if key in lookup._by_id else []
        elif key_col == "title":
            hits = lookup.by_title(key)
        else:
            hits = lookup.by_id_or_title(key)
        if not hits:
            what = "item id" if key_col == "item_id" else "item id or title" if key_col == "item" else "title"
            problems.append(f"line {line_no}: " + lookup.not_found_message(key, what))
            continue
        for h in hits:
            found[h] = rating
    if problems:
        raise RecommendError(f"fold-in file {path!r}:\n  " + "\n  ".join(problems))
    idx = np.array(sorted(found), dtype=np.int64)
    return idx, np.array([found[i] for i in idx], dtype=np.float64)


def fold_in(item_idx: np.ndarray, ratings: np.ndarray, items: ItemArrays, *, mu: float, reg: float,
            bias_reg: float) -> FoldIn:
    """Solve a new user's b_u and p_u by ridge regression against fixed item biases and factors.

    Minimizes Σ_i (r_i − offset_i − b_u − p_u·(γq_i))² + bias_reg·b_u² + reg·n·|p_u|², where
    offset_i = μ + b_i (``items.offset``) and γq_i = ``items.factors`` (see the module docstring).
    Rated items that are not in ``items`` (untrained) count with offset μ and no factors.

    Returns
    -------
    :class:`FoldIn`.
    """
    item_idx = np.asarray(item_idx, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float64)
    if len(item_idx) == 0:
        raise RecommendError("fold-in needs at least one rating")
    lookup = _position_lookup(items)
    inside = (item_idx >= 0) & (item_idx < len(lookup))
    pos = np.full(len(item_idx), -1, dtype=np.int64)
    pos[inside] = lookup[item_idx[inside]]
    known = pos >= 0
    rank = items.rank
    safe = np.maximum(pos, 0)
    y = ratings - np.where(known, items.offset[safe] if len(items) else 0.0, float(mu))
    q = np.zeros((len(pos), rank))
    if rank:
        q[known] = items.factors[safe[known]].astype(np.float64)
    x = np.hstack([np.ones((len(pos), 1)), q])
    penalty = np.diag([bias_reg] + [reg * len(pos)] * rank)
    sol = np.linalg.solve(x.T @ x + penalty + 1e-12 * np.eye(rank + 1), x.T @ y)
    return FoldIn(bias=float(sol[0]), factors=sol[1:], item_idx=item_idx, ratings=ratings)


def recommend_for_vector(items: ItemArrays, *, bias: float, factors: np.ndarray | None, n: int,
                         exclude: Iterable[int] = ()) -> pd.DataFrame:
    """Top ``n`` items for one user given by b_u and p_u (the score of the module docstring).

    Returns
    -------
    pandas DataFrame ``item_idx``, ``score``, ``rank``.
    """
    lookup = _position_lookup(items)
    ex = np.asarray(list(exclude), dtype=np.int64)
    rows, pos = _seen_positions(lookup, ex, np.array([len(ex)]))
    uf = None
    if factors is not None and items.factors is not None and len(factors):
        uf = np.asarray(factors, dtype=np.float32)[None, :]
    _, p, sc, rk = score_block(items, np.array([0]), np.array([float(bias)]), uf, rows, pos, n)
    return pd.DataFrame({ITEM_COL: items.idx[p].astype(np.int64), SCORE_COL: sc, RANK_COL: rk})


# ------------------------------------------------------------------------------------ the job
def read_user_ids(path: str) -> list[str]:
    """Source user ids, one per line (a first line ``user_id`` is a header; blanks and ``#``
    comments are skipped)."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [ln.strip() for ln in fh]
    except OSError as exc:
        raise RecommendError(f"cannot read users file {path!r}: {exc.strerror or exc}") from None
    ids = [ln.split(",")[0].strip() for ln in lines if ln and not ln.startswith("#")]
    if ids and ids[0].casefold() == USER_ID_COL:
        ids = ids[1:]
    return list(dict.fromkeys(ids))


def read_test_rows(spark: SparkSession, ratings_df: DataFrame, *, dataset: str, spec: str,
                   seed: int) -> tuple[DataFrame, DataFrame, str | None]:
    """(train, test, note) for ranking evaluation.

    ``spec`` is ``probe`` (the dataset's probe table), a directory of ratings or pairs, or
    ``random:F`` / ``temporal:F`` (the factorize job's splits, re-created with ``seed``).  Test
    ratings come from the test table, else from ``ratings_df``; when neither has them (probe rows
    removed from the ratings at ingest) every held-out pair counts as relevant and ``note`` says so.
    Train is ``ratings_df`` without the test pairs.
    """
    split = read_test_split(spark, ratings_df, dataset=dataset, spec=spec, seed=seed)
    if split.holdout_path is None:
        return split.train, split.test, None
    pairs_df = spark.read.parquet(split.holdout_path)
    keys = [USER_COL, ITEM_COL]
    train, test = split.train, split.test.select(*keys, RATING_COL)
    if RATING_COL not in pairs_df.columns and test.limit(1).count() == 0:
        pairs = pairs_df.select(*keys).distinct()
        note = (f"test pairs {split.holdout_path} have no ratings (removed from the ratings at ingest?): every "
                "held-out pair counts as relevant")
        return train, pairs.withColumn(RATING_COL, F.lit(None).cast("float")), note
    return train, test, None


def _to_pdf(df: DataFrame) -> pd.DataFrame:
    return df.toPandas()


def run_recommend(spark: SparkSession, cfg, *, model: str, dataset: str, output: str,
                  users_file: str | None = None, test: str | None = None,
                  fold_in_file: str | None = None) -> dict:
    """The recommendation job: top-N for every user (or a list), the popular list, an optional
    fold-in, ranking metrics on held-out rows; all written atomically into ``output``.

    Returns the dict written to ``output/metrics.json``.
    """
    import json

    from batchml.io.atomic import atomic_dir, write_json
    from batchml.logs import stage
    from batchml.schema import ITEMS, RATINGS, USERS

    s = cfg.recommend
    timings: dict = {}
    notes: list[str] = []
    out: dict = {"model": model, "dataset": dataset, "settings": {
        k: getattr(s, k) for k in ("top_n", "min_ratings", "prior_strength", "relevance_threshold",
                                   "fold_in_reg", "fold_in_bias_reg", "user_block_size", "seed")}}

    with stage("read", spark, timings) as st:
        md = load_model(spark, model)
        ratings = spark.read.parquet(f"{dataset}/{RATINGS}").select(
            USER_COL, ITEM_COL, F.col(RATING_COL).cast("float").alias(RATING_COL)).cache()
        users_map = spark.read.parquet(f"{dataset}/{USERS}").select(USER_COL, USER_ID_COL)
        items_map = spark.read.parquet(f"{dataset}/{ITEMS}")
        st.set_rows(ratings.count())
        st.info.update(rank=md.meta.rank, mu=round(md.meta.mu, 4), gamma=md.meta.gamma)
    mu, gamma, rank = md.meta.mu, md.meta.gamma, md.meta.rank

    with stage("items", spark, timings) as st:
        stats = item_rating_stats(ratings).cache()
        item_cols = [ITEM_COL, BIAS_COL, FEATURES_COL]
        items_pdf = _to_pdf(md.items_df.select(*item_cols).join(stats, on=ITEM_COL, how="left"))
        candidates = model_item_arrays(items_pdf, mu=mu, gamma=gamma, rank=rank,
                                       min_ratings=s.min_ratings)
        trained = model_item_arrays(items_pdf, mu=mu, gamma=gamma, rank=rank)
        st.set_rows(len(candidates))
        st.info.update(trained=len(trained), catalog=len(items_pdf))
        if len(candidates) == 0:
            raise RecommendError(f"no item has model parameters and >= {s.min_ratings} ratings")

    with stage("users", spark, timings) as st:
        users_df = md.users_df.select(USER_COL, BIAS_COL, FEATURES_COL)
        if users_file:
            wanted = read_user_ids(users_file)
            ids_df = spark.createDataFrame([(u,) for u in wanted], f"{USER_ID_COL} string")
            found = ids_df.join(users_map, on=USER_ID_COL, how="inner").cache()
            known = {r[USER_ID_COL] for r in found.select(USER_ID_COL).collect()}
            unknown = [u for u in wanted if u not in known]
            out["unknown_users"] = unknown
            if unknown:
                notes.append(f"{len(unknown)} unknown user ids skipped: {unknown[:10]}")
                LOG.warning("unknown user ids: %s", unknown[:10])
            if not known:
                raise RecommendError(f"none of the {len(wanted)} user ids in {users_file} is known")
            users_df = users_df.join(found.select(USER_COL), on=USER_COL, how="left_semi")
        n_users = st.set_rows(users_df.count())
    parts = max(2 * spark.sparkContext.defaultParallelism, -(-n_users // 50_000))

    popular_pdf = None
    with atomic_dir(output) as tmp:
        with stage("top_n", spark, timings) as st:
            recs = top_n_per_user(users_df, candidates, n=s.top_n, seen_df=ratings,
                                  block_size=s.user_block_size, partitions=parts)
            recs.write.parquet(f"{tmp}/{RECOMMENDATIONS}")
            written = spark.read.parquet(f"{tmp}/{RECOMMENDATIONS}")
            st.set_rows(written.count())
            out["recommendations"] = st.rows
        if s.readable:
            with stage("readable", spark, timings) as st:
                readable = (written.join(users_map, on=USER_COL, how="left")
                            .join(items_map.select(ITEM_COL, ITEM_ID_COL, TITLE_COL), on=ITEM_COL,
                                  how="left")
                            .select(USER_ID_COL, RANK_COL, ITEM_ID_COL, TITLE_COL, SCORE_COL,
                                    USER_COL, ITEM_COL)
                            .orderBy(USER_COL, RANK_COL))
                readable.write.parquet(f"{tmp}/{RECOMMENDATIONS_READABLE}")
                st.set_rows(out["recommendations"])
        with stage("popular", spark, timings) as st:
            popular = popular_items(ratings, prior_strength=s.prior_strength,
                                    min_ratings=s.min_ratings,
                                    item_bias_df=md.items_df.select(ITEM_COL, BIAS_COL))
            popular = (popular.join(items_map.select(ITEM_COL, ITEM_ID_COL, TITLE_COL), on=ITEM_COL,
                                    how="left")
                       .select(*popular.columns, ITEM_ID_COL, TITLE_COL).orderBy(RANK_COL))
            popular.write.parquet(f"{tmp}/{POPULAR}")
            popular_pdf = spark.read.parquet(f"{tmp}/{POPULAR}").toPandas()
            st.set_rows(len(popular_pdf))
            out["popular_top"] = [
                {"rank": int(r[RANK_COL]), "title": r[TITLE_COL], "n_ratings": int(r[COUNT_COL]),
                 "mean_rating": round(float(r[MEAN_COL]), 3),
                 "shrunk_mean": round(float(r[SHRUNK_COL]), 3)}
                for _, r in popular_pdf.head(s.top_n).iterrows()]

        if fold_in_file:
            with stage("fold_in", spark, timings) as st:
                lookup = ItemLookup(_to_pdf(items_map.select(
                    *[c for c in (ITEM_COL, ITEM_ID_COL, TITLE_COL, YEAR_COL) if c in items_map.columns])))
                idx, r = read_fold_in_csv(fold_in_file, lookup)
                fi = fold_in(idx, r, trained, mu=mu, reg=s.fold_in_reg, bias_reg=s.fold_in_bias_reg)
                top = recommend_for_vector(candidates, bias=fi.bias, factors=fi.factors, n=s.top_n,
                                           exclude=fi.item_idx)
                top = top.merge(lookup.describe(top[ITEM_COL]), on=ITEM_COL, how="left")
                out["fold_in"] = {
                    "file": fold_in_file, "n_ratings": int(len(idx)), "bias": fi.bias,
                    "factor_norm": float(np.linalg.norm(fi.factors)),
                    "rated": json.loads(lookup.describe(idx).assign(rating=r)[
                        [ITEM_ID_COL, TITLE_COL, "rating"]].to_json(orient="records")),
                    "top": json.loads(top[[RANK_COL, ITEM_ID_COL, TITLE_COL, SCORE_COL]]
                                      .to_json(orient="records"))}
                st.set_rows(len(top))

        if s.evaluate:
            out["evaluation"] = evaluate_lists(
                spark, cfg, ratings=ratings, dataset=dataset, model_users_df=md.users_df,
                candidates=candidates, spec=test or md.meta.split_test or "probe",
                partitions=parts, timings=timings, notes=notes)
        out["notes"] = notes
        out["timings_seconds"] = timings
        write_json(f"{tmp}/metrics.json", out)
    ratings.unpersist()
    stats.unpersist()
    return out


def evaluate_lists(spark: SparkSession, cfg, *, ratings: DataFrame, dataset: str,
                   model_users_df: DataFrame, candidates: ItemArrays, spec: str, partitions: int,
                   timings: dict, notes: list[str]) -> dict | None:
    """Ranking metrics of the model's top-k, the popular list and a seeded random list on the
    held-out rows of ``spec`` (see :func:`read_test_rows`), k = ``recommend.top_n``; lists exclude
    the items rated in the training part only.  None (and a note) when there is no test set."""
    from batchml.logs import stage
    from batchml.ranking import list_metrics, ranking_metrics

    s = cfg.recommend
    try:
        train, test, note = read_test_rows(spark, ratings, dataset=dataset, spec=spec,
                                           seed=cfg.factorize.seed)
    except RecommendError as exc:
        notes.append(f"no ranking evaluation: {exc}")
        LOG.warning("no ranking evaluation: %s", exc)
        return None
    if note:
        notes.append(note)
    threshold = None if note else s.relevance_threshold
    with stage("evaluate_split", spark, timings) as st:
        train = train.cache()
        test = test.cache()
        st.set_rows(test.count())
        test_users = test.select(USER_COL).distinct().cache()
        st.info["test_users"] = test_users.count()
    result: dict = {"test": spec, "k": s.top_n, "relevance_threshold": threshold,
                    "test_rows": st.rows, "test_users": st.info["test_users"], "lists": {}}
    train_counts = item_rating_stats(train).cache()
    with stage("evaluate_popular_list", spark, timings):
        pop_pdf = popular_items(train, prior_strength=s.prior_strength,
                                min_ratings=s.min_ratings).toPandas()
    lists = {
        "model": dict(users_df=model_users_df.join(test_users, on=USER_COL, how="left_semi"),
                      items=candidates),
        "popular": dict(users_df=test_users, items=popular_item_arrays(pop_pdf)),
        "random": dict(users_df=test_users, items=candidates, random_seed=s.seed),
    }
    for name, kw in lists.items():
        with stage(f"evaluate_{name}", spark, timings) as st:
            recs = top_n_per_user(n=s.top_n, seen_df=train, block_size=s.user_block_size,
                                  partitions=partitions, **kw).cache()
            st.set_rows(recs.count())
            m = ranking_metrics(recs, test, k=s.top_n, threshold=threshold)
            m.update(list_metrics(recs, train_counts, catalog_size=len(candidates)))
            result["lists"][name] = m
            st.info.update({k: round(v, 4) for k, v in m.items() if isinstance(v, float)})
            recs.unpersist()
    for df in (train, test, test_users, train_counts):
        df.unpersist()
    return result


def format_metrics(metrics: dict) -> str:
    """The ranking-evaluation table (and popular/fold-in summaries) of a :func:`run_recommend`
    result as text."""
    lines = [f"recommendations: {metrics.get('recommendations', 0):,} rows "
             f"(top {metrics['settings']['top_n']} per user)"]
    ev = metrics.get("evaluation")
    if ev:
        k = ev["k"]
        thr = ev["relevance_threshold"]
        lines.append(f"ranking metrics on {ev['test']} ({ev['test_rows']:,} rows, "
                     f"{ev['test_users']:,} users; relevant: "
                     + (f"rating >= {thr:g}" if thr is not None else "every held-out pair") + ")")
        lines.append(f"{'list':<10} {'P@' + str(k):>8} {'R@' + str(k):>8} {'NDCG@' + str(k):>9} "
                     f"{'MAP@' + str(k):>8} {'coverage':>9} {'mean pop':>10} {'users':>8}")
        for name, m in ev["lists"].items():
            f = lambda v: f"{v:.4f}" if v is not None else "-"  # noqa: E731
            lines.append(f"{name:<10} {f(m['precision']):>8} {f(m['recall']):>8} {f(m['ndcg']):>9} "
                         f"{f(m['map']):>8} {f(m['coverage']):>9} "
                         f"{(m['mean_popularity'] or 0):>10,.1f} {m['users']:>8,}")
    for p in metrics.get("popular_top", [])[:5]:
        lines.append(f"popular #{p['rank']}: {p['title']} (n={p['n_ratings']:,}, "
                     f"mean {p['mean_rating']:.2f}, shrunk {p['shrunk_mean']:.2f})")
    fi = metrics.get("fold_in")
    if fi:
        lines.append(f"fold-in of {fi['file']} ({fi['n_ratings']} ratings): b_u={fi['bias']:.3f}")
        for t in fi["top"]:
            lines.append(f"  {t['rank']:>3}. {t['title']} [{t['item_id']}] {t['score']:.3f}")
    for note in metrics.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("timings (s): " + ", ".join(f"{k}={v}" for k, v in metrics["timings_seconds"].items()))
    return "\n".join(lines)
