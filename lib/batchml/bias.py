"""Regularized user and item biases by alternating DataFrame aggregations.

Given a global mean μ (the mean of the target, not regularized) the biases minimize

    Σ_(u,i) (t_ui − μ − b_u − b_i)² + λ_u Σ_u b_u² + λ_i Σ_i b_i²

where t = rating − offset (the offset is 0, or the factor term p_u·q_i in later training rounds).
Each sweep solves the item biases with the user biases fixed, then the user biases with the item
biases fixed (both exact for the other side fixed):

    b_i = Σ_u (t_ui − μ − b_u) / (λ_i + n_i)        b_u = Σ_i (t_ui − μ − b_i) / (λ_u + n_u)

which is block Gauss–Seidel on a symmetric positive-definite system, so the sweeps converge to the
joint solution.  On real ratings that convergence is slow (each sweep shrinks the change by ~0.8 on
MovieLens), so with a tolerance the sweeps over-relax (SOR, :func:`relaxation_factor`): once three
plain sweeps have shown the contraction ratio ρ, every update moves ω = 2 / (1 + √(1 − ρ)) times
as far (Young's optimum for a two-block system, where the rate becomes ω − 1; SOR converges for
any 0 < ω < 2 on a positive-definite system, so a rough ρ only costs speed), which reaches the
same solution in about half the sweeps.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StructField, StructType

from batchml.schema import BIAS_COL, COUNT_COL, ITEM_COL, RATING_COL, USER_COL
from batchml.spark import local_columns, materialize, maybe_broadcast

LOG = logging.getLogger("batchml.bias")

RESIDUAL_COL = "residual"  # rating − μ − b_u − b_i (:func:`with_bias_residual`)
_TARGET = "_target"
SOR_AFTER = 3  # plain sweeps measured (their changes' ratio is ρ) before over-relaxing
SOR_MAX = 1.9  # the largest ω used (ω → 2 as ρ → 1)


@dataclass
class Biases:
    """Fitted biases: ``user_bias_df`` (user, bias double, n_ratings long), ``item_bias_df`` likewise."""

    mu: float
    user_bias_df: DataFrame
    item_bias_df: DataFrame
    sweeps: int
    reg_user: float
    reg_item: float
    history: list[float] = field(default_factory=list)  # max |Δ b_u| per sweep, when tol was given
    n_users: int | None = None  # rows of the tables (None: unknown), to size broadcasts
    n_items: int | None = None

    def unpersist(self) -> None:
        for df in (self.user_bias_df, self.item_bias_df):
            df.unpersist()


def _solve_side(target_df: DataFrame, other_df: DataFrame, n_other: int, *, mu: float,
                regs: Sequence[float], cols: Sequence[str], col_key: str,
                col_other: str) -> DataFrame:
    """b_key = Σ(t − μ − b_other) / (reg + n_key) for every bias column ``cols[k]`` (with
    ``regs[k]``) in one aggregation; columns ``col_key``, ``*cols``, n_ratings.
    ``n_other``: the rows of ``other_df``."""
    other = [F.col(c).alias(f"_o{k}") for k, c in enumerate(cols)]
    joined = target_df.join(maybe_broadcast(other_df.select(col_other, *other),
                                            values_per_row=1 + len(cols), n_rows=n_other),
                            on=col_other, how="left")
    sums = [F.sum(F.col(_TARGET) - F.lit(mu) - F.coalesce(F.col(f"_o{k}"), F.lit(0.0))).alias(f"_s{k}")
            for k in range(len(cols))]
    solved = [(F.col(f"_s{k}") / (F.lit(float(reg)) + F.col(COUNT_COL))).alias(c)
              for k, (c, reg) in enumerate(zip(cols, regs))]
    return (joined.groupBy(col_key).agg(*sums, F.count(F.lit(1)).alias(COUNT_COL))
            .select(col_key, *solved, COUNT_COL))


def _first_item_side(target_df: DataFrame, *, regs: Sequence[float], cols: Sequence[str],
                     col_item: str) -> tuple[float, DataFrame, int]:
    """μ, the first item biases (user biases 0) of every column and their row count from one
    aggregation: per item Σt and n, so μ = ΣΣt / Σn and b_i = (Σt − n·μ) / (reg + n)."""
    sums = materialize(target_df.groupBy(col_item).agg(F.sum(_TARGET).alias("_s"),
                                                       F.count(F.lit(1)).alias(COUNT_COL)))
    total, n, n_items = sums.agg(F.sum("_s"), F.sum(COUNT_COL), F.count(F.lit(1))).first()
    if not n:
        raise ValueError("cannot fit biases on an empty ratings table")
    mu = float(total / n)
    bias = [((F.col("_s") - F.col(COUNT_COL) * F.lit(mu)) / (F.lit(float(reg)) + F.col(COUNT_COL)))
            .alias(c) for c, reg in zip(cols, regs)]
    return mu, sums.select(col_item, *bias, COUNT_COL), int(n_items)


@dataclass
class _Tables:
    """The state of the sweeps: μ, the bias tables (one column per (λ_u, λ_i) pair), sizes."""

    mu: float
    user_df: DataFrame | None
    item_df: DataFrame
    n_items: int
    n_users: int | None = None
    sweeps: int = 0
    history: list[float] = field(default_factory=list)


def _fit_tables(ratings_df: DataFrame, *, regs: Sequence[tuple[float, float]], cols: Sequence[str],
                sweeps: int, tol: float | None, col_offset: str | None, col_user: str,
                col_item: str, col_rating: str, local: bool = False) -> _Tables:
    """The sweeps of :func:`fit_biases` for every (λ_u, λ_i) of ``regs`` at once (column
    ``cols[k]`` holds pair k); ``local``: on the driver (:func:`_local_tables`)."""
    if sweeps < 1:
        raise ValueError("sweeps must be >= 1")
    target = F.col(col_rating).cast("double")
    if col_offset is not None:
        target = target - F.coalesce(F.col(col_offset).cast("double"), F.lit(0.0))
    target_df = ratings_df.select(col_user, col_item, target.alias(_TARGET))
    if local:
        return _local_tables(target_df, regs=regs, cols=cols, sweeps=sweeps, tol=tol,
                             col_user=col_user, col_item=col_item)
    if col_offset is not None:
        target_df = target_df.cache()
    try:
        mu, item_df, n_items = _first_item_side(target_df, regs=[r[1] for r in regs], cols=cols,
                                                col_item=col_item)
        return _sweep(target_df, _Tables(mu=mu, user_df=None, item_df=item_df, n_items=n_items),
                      regs=regs, cols=cols, sweeps=sweeps, tol=tol, col_user=col_user,
                      col_item=col_item)
    finally:
        if col_offset is not None:
            target_df.unpersist()


def fit_biases(ratings_df: DataFrame, *, reg_user: float, reg_item: float, sweeps: int = 3,
               tol: float | None = None, col_offset: str | None = None, local: bool = False,
               col_user: str = USER_COL, col_item: str = ITEM_COL,
               col_rating: str = RATING_COL) -> Biases:
    """Fit μ, b_u, b_i to ``rating − offset`` by alternating regularized updates.

    The first item update (user biases still 0) shares its aggregation with μ, so ``sweeps``
    sweeps read the ratings 2·``sweeps`` times.

    Parameters
    ----------
    ratings_df : ratings (cache it: every sweep reads it twice).
    reg_user, reg_item : λ_u and λ_i.
    sweeps : the most item-then-user sweeps to run.
    tol : stop early once no user bias moved by more than ``tol`` in a sweep (costs one small
        join per sweep); None runs exactly ``sweeps`` sweeps.
    col_offset : a column subtracted from the rating before fitting (None: no offset); the
        target is then cached for the sweeps (the offset usually comes from a join).
    local : collect the target to the driver and run the same sweeps there in numpy
        (:func:`_local_tables`: one Spark job instead of ~3 per sweep; for small ratings tables).

    Returns
    -------
    :class:`Biases` whose tables have columns ``col_user``/``col_item``, ``bias`` double,
    ``n_ratings`` long (materialized by :func:`batchml.spark.materialize`).
    """
    t = _fit_tables(ratings_df, regs=[(reg_user, reg_item)], cols=[BIAS_COL], sweeps=sweeps, tol=tol,
                    col_offset=col_offset, col_user=col_user, col_item=col_item,
                    col_rating=col_rating, local=local)
    LOG.info("biases: mu=%.4f after %d sweeps (lambda_u=%g, lambda_i=%g)", t.mu, t.sweeps,
             reg_user, reg_item)
    return Biases(mu=t.mu, user_bias_df=t.user_df, item_bias_df=t.item_df, sweeps=t.sweeps,
                  reg_user=reg_user, reg_item=reg_item, history=t.history, n_users=t.n_users,
                  n_items=t.n_items)


def _max_change(new_df: DataFrame, old_df: DataFrame, col_key: str, cols: Sequence[str]) -> float:
    """max |new bias − old bias| over the keys of both tables and every bias column (0 when they
    share no key)."""
    diffs = [F.max(F.abs(F.col(f"n.{c}") - F.col(f"o.{c}"))) for c in cols]
    row = new_df.alias("n").join(old_df.alias("o"), on=col_key, how="inner").agg(*diffs).first()
    return float(max((v for v in row if v is not None), default=0.0))


def relaxation_factor(history: Sequence[float]) -> float:
    """ω for the next sweeps from the changes of the plain (ω = 1) sweeps so far: 1 until
    :data:`SOR_AFTER` ratios were seen, then 2 / (1 + √(1 − ρ)) for ρ the last ratio (capped at
    :data:`SOR_MAX`; 1 when ρ is not in (0, 1))."""
    if len(history) < SOR_AFTER + 1 or history[-2] <= 0:
        return 1.0
    rho = history[-1] / history[-2]
    if not 0.0 < rho < 1.0:
        return 1.0
    return min(SOR_MAX, 2.0 / (1.0 + math.sqrt(1.0 - rho)))


def _relax(solved_df: DataFrame, old_df: DataFrame | None, n_old: int | None, omega: float, *,
           cols: Sequence[str], col_key: str) -> DataFrame:
    """``solved_df`` (the Gauss–Seidel values) moved ω times as far from ``old_df``'s values:
    old + ω·(solved − old) (the solved value where there is no old one); ``solved_df`` itself when
    ω = 1."""
    if omega == 1.0 or old_df is None:
        return solved_df
    old = old_df.select(col_key, *[F.col(c).alias(f"_old{k}") for k, c in enumerate(cols)])
    joined = solved_df.join(maybe_broadcast(old, values_per_row=1 + len(cols), n_rows=n_old),
                            on=col_key, how="left")
    moved = [F.coalesce(F.col(f"_old{k}") + F.lit(omega) * (F.col(c) - F.col(f"_old{k}")),
                        F.col(c)).alias(c) for k, c in enumerate(cols)]
    return joined.select(col_key, *moved, COUNT_COL)


def _sweep(target_df: DataFrame, t: _Tables, *, regs: Sequence[tuple[float, float]],
           cols: Sequence[str], sweeps: int, tol: float | None, col_user: str,
           col_item: str) -> _Tables:
    """Item-then-user sweeps from ``t`` (μ and the first item biases; no user biases yet):
    the first sweep only solves the users; stops after ``sweeps`` or once the user biases move
    by at most ``tol`` (with a ``tol``, later sweeps over-relax: :func:`relaxation_factor`).
    Every new table is materialized (computed once, its plan cut) so sweep k's plan does not
    nest sweeps 1..k-1; each replaced table is unpersisted."""
    reg_u, reg_i = [r[0] for r in regs], [r[1] for r in regs]
    omega = 1.0
    for sweep in range(sweeps):
        if sweep > 0:
            solved = _solve_side(target_df, t.user_df, t.n_users, mu=t.mu, regs=reg_i, cols=cols,
                                 col_key=col_item, col_other=col_user)
            new_item = materialize(_relax(solved, t.item_df, t.n_items, omega, cols=cols,
                                          col_key=col_item))
            t.item_df.unpersist()
            t.item_df = new_item
        solved = _solve_side(target_df, t.item_df, t.n_items, mu=t.mu, regs=reg_u, cols=cols,
                             col_key=col_user, col_other=col_item)
        new_user = materialize(_relax(solved, t.user_df, t.n_users, omega, cols=cols,
                                      col_key=col_user))
        delta = None
        if tol is not None and t.user_df is not None:
            delta = _max_change(new_user, t.user_df, col_user, cols)
            t.history.append(delta)
            LOG.debug("bias sweep %d (omega %.3f): max |delta b_u| = %.3g", sweep + 1, omega, delta)
            omega = omega if omega != 1.0 else relaxation_factor(t.history)
        if t.user_df is not None:
            t.user_df.unpersist()
        t.user_df, t.sweeps = new_user, sweep + 1
        t.n_users = t.n_users if t.n_users is not None else new_user.count()
        if delta is not None and delta <= tol:
            break
    return t


# -------------------------------------------------------------------- the same sweeps, on the driver
def _local_solve(index: np.ndarray, resid: np.ndarray, n: np.ndarray, regs: np.ndarray) -> np.ndarray:
    """b[key, k] = Σ resid[:, k] over the rows of key / (regs[k] + n[key]) (:func:`_solve_side`)."""
    sums = np.stack([np.bincount(index, weights=resid[:, k], minlength=len(n))
                     for k in range(resid.shape[1])], axis=1)
    return sums / (regs[None, :] + n[:, None])


def _local_sweeps(users: np.ndarray, items: np.ndarray, target: np.ndarray, *,
                  regs: Sequence[tuple[float, float]], sweeps: int,
                  tol: float | None) -> tuple[float, np.ndarray, np.ndarray, int, list[float]]:
    """:func:`_first_item_side` and :func:`_sweep` in numpy for rows (``users``, ``items``: dense
    indices, ``target``): (μ, user biases [n_users, pairs], item biases [n_items, pairs], sweeps
    run, max |Δ b_u| per sweep when ``tol`` is given) by the same updates, relaxation and stop."""
    if len(target) == 0:
        raise ValueError("cannot fit biases on an empty ratings table")
    reg_u = np.array([r[0] for r in regs], dtype=float)
    reg_i = np.array([r[1] for r in regs], dtype=float)
    n_u, n_i = np.bincount(users).astype(float), np.bincount(items).astype(float)
    mu = float(target.sum() / len(target))
    item_b = _local_solve(items, np.repeat((target - mu)[:, None], len(regs), axis=1), n_i, reg_i)
    user_b, history, omega, done = None, [], 1.0, 0
    for sweep in range(sweeps):
        if sweep > 0:
            solved = _local_solve(items, (target - mu)[:, None] - user_b[users], n_i, reg_i)
            item_b = item_b + omega * (solved - item_b)
        solved = _local_solve(users, (target - mu)[:, None] - item_b[items], n_u, reg_u)
        new_user = solved if user_b is None else user_b + omega * (solved - user_b)
        delta = None
        if tol is not None and user_b is not None:
            delta = float(np.abs(new_user - user_b).max())
            history.append(delta)
            omega = omega if omega != 1.0 else relaxation_factor(history)
        user_b, done = new_user, sweep + 1
        if delta is not None and delta <= tol:
            break
    return mu, user_b, item_b, done, history


def _bias_table(spark, keys: np.ndarray, biases: np.ndarray, counts: np.ndarray, key_field,
                cols: Sequence[str]) -> DataFrame:
    """A bias table (``key_field``'s column, ``cols`` double, n_ratings long) from driver arrays."""
    schema = StructType([StructField(key_field.name, key_field.dataType, False)]
                        + [StructField(c, DoubleType(), True) for c in cols]
                        + [StructField(COUNT_COL, LongType(), False)])
    columns = [keys, *(biases[:, k].astype(np.float64) for k in range(len(cols))), counts.astype(np.int64)]
    return local_columns(spark, columns, schema)


def _local_tables(target_df: DataFrame, *, regs: Sequence[tuple[float, float]], cols: Sequence[str],
                  sweeps: int, tol: float | None, col_user: str, col_item: str) -> _Tables:
    """The sweeps of :func:`_fit_tables` on the driver: ``target_df`` (user, item, target) is
    collected once (Arrow) and swept by :func:`_local_sweeps`; the tables go back to Spark."""
    rows = target_df.toArrow()
    user_keys, users = np.unique(rows.column(col_user).to_numpy(), return_inverse=True)
    item_keys, items = np.unique(rows.column(col_item).to_numpy(), return_inverse=True)
    target = rows.column(_TARGET).to_numpy().astype(float)
    mu, user_b, item_b, done, history = _local_sweeps(users, items, target, regs=regs,
                                                      sweeps=sweeps, tol=tol)
    spark, fields = target_df.sparkSession, {f.name: f for f in target_df.schema.fields}
    user_df = _bias_table(spark, user_keys, user_b, np.bincount(users), fields[col_user], cols)
    item_df = _bias_table(spark, item_keys, item_b, np.bincount(items), fields[col_item], cols)
    return _Tables(mu=mu, user_df=user_df, item_df=item_df, n_items=len(item_keys),
                   n_users=len(user_keys), sweeps=done, history=history)


# ------------------------------------------------------------------------ a grid of (λ_u, λ_i)
@dataclass
class BiasGrid:
    """Biases for every (λ_u, λ_i) of ``regs`` from the same sweeps: column ``_b<k>`` of the tables
    holds pair k (:func:`fit_bias_grid`)."""

    mu: float
    regs: list[tuple[float, float]]
    tables: _Tables

    def column(self, k: int) -> str:
        return f"_b{k}"

    def pick(self, k: int, *, col_user: str = USER_COL, col_item: str = ITEM_COL) -> Biases:
        """The :class:`Biases` of pair k (cached tables of their own)."""
        c = self.column(k)
        u = materialize(self.tables.user_df.select(col_user, F.col(c).alias(BIAS_COL), COUNT_COL))
        i = materialize(self.tables.item_df.select(col_item, F.col(c).alias(BIAS_COL), COUNT_COL))
        return Biases(mu=self.mu, user_bias_df=u, item_bias_df=i, sweeps=self.tables.sweeps,
                      reg_user=self.regs[k][0], reg_item=self.regs[k][1],
                      history=list(self.tables.history), n_users=self.tables.n_users,
                      n_items=self.tables.n_items)

    def unpersist(self) -> None:
        for df in (self.tables.user_df, self.tables.item_df):
            df.unpersist()


def fit_bias_grid(ratings_df: DataFrame, *, regs: Sequence[tuple[float, float]], sweeps: int,
                  tol: float | None = None, local: bool = False, col_user: str = USER_COL,
                  col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> BiasGrid:
    """:func:`fit_biases` for every (λ_u, λ_i) of ``regs`` in the same aggregations (one sum per
    pair per pass), so a grid costs about one fit; ``tol`` applies to the largest change of any;
    ``local``: on the driver, as in :func:`fit_biases`."""
    regs = [(float(a), float(b)) for a, b in regs]
    cols = [f"_b{k}" for k in range(len(regs))]
    t = _fit_tables(ratings_df, regs=regs, cols=cols, sweeps=sweeps, tol=tol, col_offset=None,
                    col_user=col_user, col_item=col_item, col_rating=col_rating, local=local)
    LOG.info("bias grid of %d (lambda_u, lambda_i) pairs: %d sweeps", len(regs), t.sweeps)
    return BiasGrid(mu=t.mu, regs=regs, tables=t)


def grid_rmse(grid: BiasGrid, ratings_df: DataFrame, *, rating_min: float, rating_max: float,
              col_user: str = USER_COL, col_item: str = ITEM_COL,
              col_rating: str = RATING_COL) -> list[float]:
    """RMSE on ``ratings_df`` of clip(μ + b_u + b_i) for every pair of ``grid`` (one pass; a
    missing bias counts as 0)."""
    k_all = range(len(grid.regs))
    t = grid.tables
    ub = t.user_df.select(col_user, *[F.col(grid.column(k)).alias(f"_u{k}") for k in k_all])
    ib = t.item_df.select(col_item, *[F.col(grid.column(k)).alias(f"_i{k}") for k in k_all])
    joined = (ratings_df.join(maybe_broadcast(ub, values_per_row=1 + len(k_all), n_rows=t.n_users),
                              on=col_user, how="left")
              .join(maybe_broadcast(ib, values_per_row=1 + len(k_all), n_rows=t.n_items),
                    on=col_item, how="left"))

    def sq_err(k: int) -> F.Column:
        pred = (F.lit(grid.mu) + F.coalesce(F.col(f"_u{k}"), F.lit(0.0))
                + F.coalesce(F.col(f"_i{k}"), F.lit(0.0)))
        clipped = F.least(F.greatest(pred, F.lit(float(rating_min))), F.lit(float(rating_max)))
        return F.avg((clipped - F.col(col_rating).cast("double")) ** 2).alias(f"_e{k}")

    row = joined.agg(*[sq_err(k) for k in k_all]).first()
    return [math.sqrt(row[f"_e{k}"]) for k in k_all]


def with_bias_residual(ratings_df: DataFrame, biases: Biases, *, col_out: str = RESIDUAL_COL,
                       col_user: str = USER_COL, col_item: str = ITEM_COL,
                       col_rating: str = RATING_COL) -> DataFrame:
    """Add ``col_out`` = rating − μ − b_u − b_i (a missing bias counts as 0).

    Returns the input columns plus ``col_out`` double.
    """
    ub = maybe_broadcast(biases.user_bias_df.select(col_user, F.col(BIAS_COL).alias("_bu")),
                         values_per_row=2, n_rows=biases.n_users)
    ib = maybe_broadcast(biases.item_bias_df.select(col_item, F.col(BIAS_COL).alias("_bi")),
                         values_per_row=2, n_rows=biases.n_items)
    resid = (F.col(col_rating).cast("double") - F.lit(biases.mu)
             - F.coalesce(F.col("_bu"), F.lit(0.0)) - F.coalesce(F.col("_bi"), F.lit(0.0)))
    return (
        ratings_df.join(ub, on=col_user, how="left")
        .join(ib, on=col_item, how="left")
        .select(*ratings_df.columns, resid.alias(col_out))
    )
