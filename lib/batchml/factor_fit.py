"""Fitting the factor models the factorize job compares: global mean, bias only, plain MLlib ALS,
ALS with bias terms and the "aligned" model.

The biased model is r̂(u,i) = μ + b_u + b_i + γ·p_u·q_i, clipped to the scale.  Training
(:func:`fit_als_biased`): regularized biases by alternating aggregations (:mod:`batchml.bias`),
MLlib ALS on the residuals r − μ − b_u − b_i, and optionally further rounds (biases re-fit on
r − p·q, ALS re-fit on the new residuals).  γ is 1 except in the "aligned" model
(:func:`aligned_model`), whose factors are unit-norm and whose γ is a least-squares fit.

The model and its prediction with fallbacks live in :mod:`batchml.factor_model`; the model dir is
written through :mod:`batchml.model_dir`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.bias import RESIDUAL_COL, Biases, fit_biases, with_bias_residual
from batchml.factor_model import FactorModel, dot, evaluate, with_prediction
from batchml.logs import Progress
from batchml.schema import BIAS_COL, COUNT_COL, FEATURES_COL, ITEM_COL, PREDICTION_COL, RATING_COL, USER_COL
from batchml.spark import maybe_broadcast

LOG = logging.getLogger("batchml.factorize")

_DOT = "_dot"


def _cached(df: DataFrame) -> tuple[DataFrame, int]:
    """``df`` cached and its row count (the one action that fills the cache)."""
    df = df.cache()
    return df, df.count()


def _combine(biases: Biases | None, user_factors: DataFrame | None, item_factors: DataFrame | None,
             *, col_user: str, col_item: str) -> tuple[DataFrame | None, DataFrame | None]:
    def side(bias_df, fac_df, key):
        if bias_df is None:
            return fac_df
        b = bias_df.select(key, BIAS_COL, COUNT_COL)
        if fac_df is None:
            return b
        return b.join(fac_df.select(key, FEATURES_COL), on=key, how="full")
    if biases is None:
        return user_factors, item_factors
    return (side(biases.user_bias_df, user_factors, col_user),
            side(biases.item_bias_df, item_factors, col_item))


# ------------------------------------------------------------------------------------- baselines
def global_mean_model(train_df: DataFrame, *, rating_min: float, rating_max: float,
                      col_rating: str = RATING_COL) -> FactorModel:
    """The training mean for every pair."""
    mu = float(train_df.agg(F.avg(F.col(col_rating).cast("double"))).first()[0])
    return FactorModel(mu=mu, rating_min=rating_min, rating_max=rating_max, kind="global_mean")


def bias_model(biases: Biases, *, rating_min: float, rating_max: float, col_user: str = USER_COL,
               col_item: str = ITEM_COL) -> FactorModel:
    """μ + b_u + b_i from fitted :class:`Biases`."""
    u, i = _combine(biases, None, None, col_user=col_user, col_item=col_item)
    return FactorModel(mu=biases.mu, user_df=u, item_df=i, rating_min=rating_min,
                       rating_max=rating_max, kind="bias_only", n_users=biases.n_users,
                       n_items=biases.n_items,
                       settings={"reg_user": biases.reg_user, "reg_item": biases.reg_item,
                                 "sweeps": biases.sweeps})


# ------------------------------------------------------------------------------------------- ALS
def fit_als(ratings_df: DataFrame, *, rank: int, reg: float, iters: int, seed: int,
            checkpoint_interval: int = 10, blocks: int = 0, col_user: str = USER_COL,
            col_item: str = ITEM_COL,
            col_target: str = RATING_COL) -> tuple[DataFrame, DataFrame, int, int]:
    """MLlib ALS (explicit) on ``col_target``; integer ids used as they are.

    ``checkpoint_interval`` takes effect through the session's checkpoint dir.  Cold start is left
    to :func:`with_prediction`'s fallback (``coldStartStrategy`` is irrelevant: we never call
    ``ALSModel.transform``).

    Returns
    -------
    (user_factors_df, item_factors_df, their row counts) with columns ``col_user`` / ``col_item``
    int and ``features`` array<float>, cached.
    """
    spark = ratings_df.sparkSession
    n_blocks = blocks or max(1, spark.sparkContext.defaultParallelism)
    als = ALS(rank=rank, maxIter=iters, regParam=reg, userCol=col_user, itemCol=col_item,
              ratingCol=col_target, implicitPrefs=False, nonnegative=False, seed=seed,
              checkpointInterval=checkpoint_interval, coldStartStrategy="nan",
              numUserBlocks=n_blocks, numItemBlocks=n_blocks)
    model = als.fit(ratings_df.select(col_user, col_item, col_target))
    uf, n_u = _cached(model.userFactors.select(F.col("id").alias(col_user), F.col(FEATURES_COL)))
    itf, n_i = _cached(model.itemFactors.select(F.col("id").alias(col_item), F.col(FEATURES_COL)))
    model.userFactors.unpersist()
    model.itemFactors.unpersist()
    return uf, itf, n_u, n_i


def fit_plain_als(train_df: DataFrame, *, rank: int, reg: float, iters: int, seed: int,
                  rating_min: float, rating_max: float, checkpoint_interval: int = 10,
                  blocks: int = 0, fallback: float | None = None, col_user: str = USER_COL,
                  col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> FactorModel:
    """Plain MLlib ALS on the raw ratings: r̂ = p·q; pairs without factors get ``fallback``
    (default: the training mean)."""
    if fallback is None:
        fallback = float(train_df.agg(F.avg(F.col(col_rating).cast("double"))).first()[0])
    uf, itf, n_u, n_i = fit_als(train_df, rank=rank, reg=reg, iters=iters, seed=seed,
                                checkpoint_interval=checkpoint_interval, blocks=blocks,
                                col_user=col_user, col_item=col_item, col_target=col_rating)
    return FactorModel(mu=0.0, user_df=uf, item_df=itf, rating_min=rating_min,
                       rating_max=rating_max, kind="plain_als", rank=rank, fallback=fallback,
                       n_users=n_u, n_items=n_i,
                       settings={"rank": rank, "reg": reg, "iters": iters})


def with_factor_dot(ratings_df: DataFrame, model: FactorModel, *, col_out: str = _DOT,
                    col_user: str = USER_COL, col_item: str = ITEM_COL) -> DataFrame:
    """Add ``col_out`` = γ·p_u·q_i (0 where a factor is missing).

    Returns the input columns plus ``col_out`` double.
    """
    width = model.rank + 1
    uf = maybe_broadcast(model.user_df.select(col_user, F.col(FEATURES_COL).alias("_pu")),
                         values_per_row=width, n_rows=model.n_users)
    itf = maybe_broadcast(model.item_df.select(col_item, F.col(FEATURES_COL).alias("_qi")),
                          values_per_row=width, n_rows=model.n_items)
    scaled = F.lit(float(model.gamma)) * F.coalesce(dot(F.col("_pu"), F.col("_qi")), F.lit(0.0))
    return (ratings_df.join(uf, on=col_user, how="left").join(itf, on=col_item, how="left")
            .select(*ratings_df.columns, scaled.alias(col_out)))


# ---------------------------------------------------------------------------------- ALS + biases
@dataclass
class BiasedFit:
    """Result of :func:`fit_als_biased`: the final model and one entry per round."""

    model: FactorModel
    rounds: list[dict]
    round_models: list[FactorModel]
    biases: Biases


def _round_biases(train_df: DataFrame, previous: FactorModel | None, *, reg_user: float,
                  reg_item: float, sweeps: int, tol: float | None, local: bool, col_user: str,
                  col_item: str, col_rating: str) -> Biases:
    """Biases on r (first round: no ``previous`` model) or on r − γ·p·q of ``previous``
    (``local``: on the driver, :func:`batchml.bias.fit_biases`)."""
    keys = dict(col_user=col_user, col_item=col_item, col_rating=col_rating)
    if previous is None:
        return fit_biases(train_df, reg_user=reg_user, reg_item=reg_item, sweeps=sweeps, tol=tol,
                          local=local, **keys)
    offset_df = with_factor_dot(train_df, previous, col_user=col_user, col_item=col_item)
    return fit_biases(offset_df, reg_user=reg_user, reg_item=reg_item, sweeps=sweeps, tol=tol,
                      col_offset=_DOT, local=local, **keys)


def _residual_model(train_df: DataFrame, biases: Biases, *, rank: int, reg: float, iters: int,
                    seed: int, checkpoint_interval: int, blocks: int, rating_min: float,
                    rating_max: float, settings: dict, col_user: str, col_item: str,
                    col_rating: str) -> FactorModel:
    """ALS on r − μ − b_u − b_i, combined with ``biases`` into one cached biased model."""
    keys = dict(col_user=col_user, col_item=col_item)
    # not cached: ALS reads its input once (into its own cached rating blocks)
    resid = with_bias_residual(train_df, biases, col_out=RESIDUAL_COL, col_rating=col_rating, **keys)
    uf, itf, _, _ = fit_als(resid, rank=rank, reg=reg, iters=iters, seed=seed,
                            checkpoint_interval=checkpoint_interval, blocks=blocks,
                            col_target=RESIDUAL_COL, **keys)
    (u, n_u), (i, n_i) = (_cached(df) for df in _combine(biases, uf, itf, **keys))
    model = FactorModel(mu=biases.mu, user_df=u, item_df=i, rating_min=rating_min,
                        rating_max=rating_max, kind="biased", rank=rank, settings=settings,
                        n_users=n_u, n_items=n_i)
    uf.unpersist()  # the combined tables hold them now
    itf.unpersist()
    return model


def fit_als_biased(train_df: DataFrame, *, rank: int, reg: float, iters: int, rounds: int,
                   reg_user: float, reg_item: float, sweeps: int, seed: int, rating_min: float,
                   rating_max: float, tol: float | None = None, checkpoint_interval: int = 10,
                   blocks: int = 0, biases: Biases | None = None, eval_df: DataFrame | None = None,
                   score_df: DataFrame | None = None, local_biases: bool = False, col_user: str = USER_COL, col_item: str = ITEM_COL,
                   col_rating: str = RATING_COL) -> BiasedFit:
    """Biases, then ALS on the residuals; rounds > 1 re-fit biases on r − p·q and ALS again.

    Parameters
    ----------
    train_df : training ratings (cache it).
    sweeps, tol : the most bias sweeps per round, and the early stop (:func:`fit_biases`).
    biases : first-round biases already fitted on ``train_df`` (skips that fit).
    eval_df : optional ratings scored after every round (validation).
    score_df : optional ratings of the training set (all, or a sample) scored after every round
        (``train_rmse``; a search has none).
    local_biases : fit the biases on the driver (``local`` of :func:`fit_biases`; small data).

    Returns
    -------
    :class:`BiasedFit`; ``rounds`` entries hold ``round``, ``train_rmse``, ``eval_rmse`` (when
    ``eval_df``), ``bias_seconds``, ``als_seconds`` (no ``train_rmse`` without ``score_df``).
    """
    keys = dict(col_user=col_user, col_item=col_item, col_rating=col_rating)
    als = dict(rank=rank, reg=reg, iters=iters, seed=seed, checkpoint_interval=checkpoint_interval,
               blocks=blocks, rating_min=rating_min, rating_max=rating_max)
    history: list[dict] = []
    models: list[FactorModel] = []
    model = None
    progress = Progress(f"ALS+bias rank={rank} reg={reg:g} round", rounds, LOG)
    for rnd in range(1, rounds + 1):
        t0 = time.perf_counter()
        if rnd == 1 and biases is not None:
            b = biases
        else:
            b = _round_biases(train_df, model, reg_user=reg_user, reg_item=reg_item,
                              sweeps=sweeps, tol=tol, local=local_biases, **keys)
        biases = biases if biases is not None else b
        t1 = time.perf_counter()
        settings = {"rank": rank, "reg": reg, "iters": iters, "rounds": rnd,
                    "reg_user": reg_user, "reg_item": reg_item, "sweeps": sweeps}
        model = _residual_model(train_df, b, settings=settings, **als, **keys)
        t2 = time.perf_counter()
        entry = {"round": rnd, "bias_seconds": round(t1 - t0, 3), "als_seconds": round(t2 - t1, 3)}
        if score_df is not None:
            entry["train_rmse"] = evaluate(model, score_df, **keys)["rmse"]
        if eval_df is not None:
            entry["eval_rmse"] = evaluate(model, eval_df, **keys)["rmse"]
        progress.step(", ".join(f"{k}={v:.4g}" for k, v in entry.items() if k != "round"))
        history.append(entry)
        models.append(model)
    return BiasedFit(model=model, rounds=history, round_models=models, biases=biases)


# --------------------------------------------------------------------------------------- aligned
def _unit_features(df: DataFrame) -> DataFrame:
    """``df`` with its ``features`` scaled to unit norm (null where the norm is 0)."""
    norm = F.sqrt(F.aggregate(F.col(FEATURES_COL), F.lit(0.0).cast("double"),
                              lambda acc, x: acc + x.cast("double") * x.cast("double")))
    unit_vec = F.transform(F.col(FEATURES_COL), lambda x: (x / norm).cast("float"))
    return df.withColumn(FEATURES_COL, F.when(norm > 0, unit_vec))


def aligned_model(model: FactorModel, train_df: DataFrame, *, col_user: str = USER_COL,
                  col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> FactorModel:
    """The "alignment" model: r̂ = μ + δ_u + δ_m + γ·α_u·β_m with α, β the unit-norm factors of
    ``model`` and γ the least-squares fit of the training residuals r − μ − δ_u − δ_m on α·β."""
    (u, n_u), (i, n_i) = _cached(_unit_features(model.user_df)), _cached(_unit_features(model.item_df))
    unit_model = replace(model, user_df=u, item_df=i, n_users=n_u, n_items=n_i, gamma=1.0,
                         kind="aligned")
    keys = dict(col_user=col_user, col_item=col_item)
    base = replace(unit_model, gamma=0.0, rating_min=float("-inf"), rating_max=float("inf"))
    scored = with_factor_dot(with_prediction(train_df.select(col_user, col_item, col_rating), base,
                                             **keys), unit_model, **keys)
    resid = F.col(col_rating).cast("double") - F.col(PREDICTION_COL)
    row = scored.agg(F.sum(resid * F.col(_DOT)).alias("xy"),
                     F.sum(F.col(_DOT) * F.col(_DOT)).alias("xx")).first()
    gamma = float(row["xy"] / row["xx"]) if row["xx"] else 0.0
    LOG.info("aligned model: gamma=%.4f", gamma)
    return replace(unit_model, gamma=gamma,
                   settings={**model.settings, "gamma": gamma, "base": model.kind})
