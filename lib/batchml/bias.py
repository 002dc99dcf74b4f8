"""Regularized user and item biases by alternating DataFrame aggregations.

Given a global mean μ (the mean of the target, not regularized) the biases minimize

    Σ_(u,i) (t_ui − μ − b_u − b_i)² + λ_u Σ_u b_u² + λ_i Σ_i b_i²

where t = rating − offset (the offset is 0, or the factor term p_u·q_i in later training rounds).
Each sweep solves the item biases with the user biases fixed, then the user biases with the item
biases fixed (both exact for the other side fixed):

    b_i = Σ_u (t_ui − μ − b_u) / (λ_i + n_i)        b_u = Σ_i (t_ui − μ − b_i) / (λ_u + n_u)

which is block Gauss–Seidel on a symmetric positive-definite system, so the sweeps converge to the
joint solution; a few sweeps are enough in practice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.schema import BIAS_COL, COUNT_COL, ITEM_COL, RATING_COL, USER_COL
from batchml.spark import materialize, maybe_broadcast

LOG = logging.getLogger("batchml.bias")

RESIDUAL_COL = "residual"  # rating − μ − b_u − b_i (:func:`with_bias_residual`)
_TARGET = "_target"


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


def _solve_side(target_df: DataFrame, other_df: DataFrame, n_other: int, *, mu: float, reg: float,
                col_key: str, col_other: str) -> DataFrame:
    """b_key = Σ(t − μ − b_other) / (reg + n_key); columns ``col_key``, bias, n_ratings.
    ``n_other``: the rows of ``other_df``."""
    joined = target_df.join(
        maybe_broadcast(other_df.select(col_other, F.col(BIAS_COL).alias("_b_other")),
                        values_per_row=2, n_rows=n_other),
        on=col_other, how="left")
    resid = F.col(_TARGET) - F.lit(mu) - F.coalesce(F.col("_b_other"), F.lit(0.0))
    return (
        joined.groupBy(col_key)
        .agg(F.sum(resid).alias("_s"), F.count(F.lit(1)).alias(COUNT_COL))
        .select(col_key, (F.col("_s") / (F.lit(float(reg)) + F.col(COUNT_COL))).alias(BIAS_COL),
                COUNT_COL)
    )


def _first_item_side(target_df: DataFrame, *, reg: float,
                     col_item: str) -> tuple[float, DataFrame, int]:
    """μ, the first item biases (user biases 0) and their row count from one
    aggregation: per item Σt and n, so μ = ΣΣt / Σn and b_i = (Σt − n·μ) / (reg + n)."""
    sums = materialize(target_df.groupBy(col_item).agg(F.sum(_TARGET).alias("_s"),
                                                       F.count(F.lit(1)).alias(COUNT_COL)))
    total, n, n_items = sums.agg(F.sum("_s"), F.sum(COUNT_COL), F.count(F.lit(1))).first()
    if not n:
        raise ValueError("cannot fit biases on an empty ratings table")
    mu = float(total / n)
    bias = (F.col("_s") - F.col(COUNT_COL) * F.lit(mu)) / (F.lit(float(reg)) + F.col(COUNT_COL))
    return mu, sums.select(col_item, bias.alias(BIAS_COL), COUNT_COL), int(n_items)


def fit_biases(ratings_df: DataFrame, *, reg_user: float, reg_item: float, sweeps: int = 3,
               tol: float | None = None, col_offset: str | None = None,
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

    Returns
    -------
    :class:`Biases` whose tables have columns ``col_user``/``col_item``, ``bias`` double,
    ``n_ratings`` long (materialized by :func:`batchml.spark.materialize`).
    """
    if sweeps < 1:
        raise ValueError("sweeps must be >= 1")
    target = F.col(col_rating).cast("double")
    if col_offset is not None:
        target = target - F.coalesce(F.col(col_offset).cast("double"), F.lit(0.0))
    target_df = ratings_df.select(col_user, col_item, target.alias(_TARGET))
    if col_offset is not None:
        target_df = target_df.cache()
    try:
        mu, item_df, n_items = _first_item_side(target_df, reg=reg_item, col_item=col_item)
        biases = _sweep(target_df, Biases(mu=mu, user_bias_df=None, item_bias_df=item_df, sweeps=0,
                                          reg_user=reg_user, reg_item=reg_item, n_items=n_items),
                        sweeps=sweeps, tol=tol, col_user=col_user, col_item=col_item)
    finally:
        if col_offset is not None:
            target_df.unpersist()
    LOG.info("biases: mu=%.4f after %d sweeps (lambda_u=%g, lambda_i=%g)", mu, biases.sweeps,
             reg_user, reg_item)
    return biases


def _max_change(new_df: DataFrame, old_df: DataFrame, col_key: str) -> float:
    """max |new bias − old bias| over the keys of both tables (0 when they share none)."""
    return float((new_df.alias("n").join(old_df.alias("o"), on=col_key, how="inner")
                  .agg(F.max(F.abs(F.col(f"n.{BIAS_COL}") - F.col(f"o.{BIAS_COL}"))))
                  .first()[0]) or 0.0)


def _sweep(target_df: DataFrame, start: Biases, *, sweeps: int, tol: float | None, col_user: str,
           col_item: str) -> Biases:
    """Item-then-user sweeps from ``start`` (μ and the first item biases; no user biases yet):
    the first sweep only solves the users; stops after ``sweeps`` or once the user biases move
    by at most ``tol``.  Every new table is materialized (computed once, its plan cut) so sweep k's
    plan does not nest sweeps 1..k-1; each replaced table is unpersisted."""
    b = start
    for sweep in range(sweeps):
        if sweep > 0:
            new_item = materialize(_solve_side(target_df, b.user_bias_df, b.n_users, mu=b.mu,
                                               reg=b.reg_item, col_key=col_item, col_other=col_user))
            b.item_bias_df.unpersist()
            b = replace(b, item_bias_df=new_item)
        new_user = materialize(_solve_side(target_df, b.item_bias_df, b.n_items, mu=b.mu,
                                           reg=b.reg_user, col_key=col_user, col_other=col_item))
        delta = None
        if tol is not None and b.user_bias_df is not None:
            delta = _max_change(new_user, b.user_bias_df, col_user)
            b.history.append(delta)
            LOG.debug("bias sweep %d: max |delta b_u| = %.3g", sweep + 1, delta)
        if b.user_bias_df is not None:
            b.user_bias_df.unpersist()
        b = replace(b, user_bias_df=new_user, n_users=new_user.count(), sweeps=sweep + 1)
        if delta is not None and delta <= tol:
            break
    return b


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
