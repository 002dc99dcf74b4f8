"""The factor model in memory and how it scores pairs: r̂(u,i) = clip(μ + b_u + b_i + γ·p_u·q_i).

Whatever is unknown falls back to what is known: no factor on one side → μ + b_u + b_i; unknown
user → μ + b_i; unknown item → μ + b_u; both unknown → μ.  MLlib's ``coldStartStrategy`` is never
relied on.  A plain-ALS model (no biases, μ = 0) falls back to its ``fallback`` value (the training
mean).  Storing a model on disk is :mod:`batchml.model_dir`'s job; fitting one is
:mod:`batchml.factorize`'s.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.metrics import regression_metrics
from batchml.schema import BIAS_COL, FEATURES_COL, ITEM_COL, PREDICTION_COL, RATING_COL, USER_COL
from batchml.spark import maybe_broadcast


@dataclass
class FactorModel:
    """μ plus per-user and per-item tables (index, ``bias`` double null, ``features`` array null).

    ``user_df`` / ``item_df`` may be None (the global-mean model).  ``fallback``, when set, replaces
    the whole score of a pair lacking a factor on either side (plain ALS).
    """

    mu: float
    user_df: DataFrame | None = None
    item_df: DataFrame | None = None
    gamma: float = 1.0
    rating_min: float = 1.0
    rating_max: float = 5.0
    kind: str = "biased"
    rank: int = 0
    fallback: float | None = None
    settings: dict = field(default_factory=dict)
    # rows of user_df / item_df when known (saves a count to decide on a broadcast join)
    n_users: int | None = None
    n_items: int | None = None

    def unpersist(self) -> None:
        for df in (self.user_df, self.item_df):
            if df is not None:
                df.unpersist()


def dot(a: F.Column, b: F.Column) -> F.Column:
    """p·q of two array columns; null when either is null."""
    prods = F.zip_with(a, b, lambda x, y: x.cast("double") * y.cast("double"))
    return F.aggregate(prods, F.lit(0.0).cast("double"), lambda acc, x: acc + x)


def _side(df: DataFrame | None, col_key: str, prefix: str) -> DataFrame | None:
    if df is None:
        return None
    cols = [F.col(col_key)]
    cols.append(F.col(BIAS_COL).alias(f"{prefix}b") if BIAS_COL in df.columns
                else F.lit(None).cast("double").alias(f"{prefix}b"))
    cols.append(F.col(FEATURES_COL).alias(f"{prefix}f") if FEATURES_COL in df.columns
                else F.lit(None).cast("array<float>").alias(f"{prefix}f"))
    return df.select(*cols)


def with_prediction(pairs_df: DataFrame, model: FactorModel, *, col_user: str = USER_COL,
                    col_item: str = ITEM_COL, col_prediction: str = PREDICTION_COL) -> DataFrame:
    """Score (user, item) pairs with ``model``, falling back to what is known, clipped.

    Returns the input columns plus ``col_prediction`` double (never null).
    """
    df = pairs_df
    users = _side(model.user_df, col_user, "_u")
    items = _side(model.item_df, col_item, "_i")
    bu = bi = F.lit(None).cast("double")
    pq = F.lit(None).cast("double")
    width = model.rank + 2
    if users is not None:
        df = df.join(maybe_broadcast(users, values_per_row=width, n_rows=model.n_users),
                     on=col_user, how="left")
        bu = F.col("_ub")
    if items is not None:
        df = df.join(maybe_broadcast(items, values_per_row=width, n_rows=model.n_items),
                     on=col_item, how="left")
        bi = F.col("_ib")
    if users is not None and items is not None:
        pq = dot(F.col("_uf"), F.col("_if"))
    score = (F.lit(float(model.mu)) + F.coalesce(bu, F.lit(0.0)) + F.coalesce(bi, F.lit(0.0))
             + F.lit(float(model.gamma)) * F.coalesce(pq, F.lit(0.0)))
    if model.fallback is not None:
        score = F.when(pq.isNull(), F.lit(float(model.fallback))).otherwise(score)
    clipped = F.least(F.greatest(score, F.lit(float(model.rating_min))), F.lit(float(model.rating_max)))
    return df.select(*pairs_df.columns, clipped.alias(col_prediction))


def evaluate(model: FactorModel, ratings_df: DataFrame, *, col_user: str = USER_COL,
             col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> dict:
    """RMSE / MAE / n of ``model`` on ``ratings_df`` (see :func:`batchml.metrics.regression_metrics`)."""
    pred = with_prediction(ratings_df.select(col_user, col_item, col_rating), model,
                           col_user=col_user, col_item=col_item)
    return regression_metrics(pred, col_rating=col_rating)
