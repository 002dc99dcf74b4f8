"""Prediction-error metrics computed as one Spark aggregation (shared by factorize and similarity).

Rows whose prediction is null are counted separately (``n_missing``) and left out of the errors: a
predictor that cannot score a row should fall back before it reaches here, and the count shows when
it did not.
"""
from __future__ import annotations

import math

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.schema import PREDICTION_COL, RATING_COL


def regression_metrics(pred_df: DataFrame, *, col_rating: str = RATING_COL,
                       col_prediction: str = PREDICTION_COL) -> dict:
    """RMSE, MAE and row counts of ``col_prediction`` against ``col_rating``.

    Returns
    -------
    dict with ``rmse``, ``mae`` (None when no row has a prediction), ``n`` (rows scored) and
    ``n_missing`` (rows whose prediction is null).
    """
    err = F.col(col_prediction).cast("double") - F.col(col_rating).cast("double")
    row = pred_df.agg(
        F.sum(err * err).alias("sse"),
        F.sum(F.abs(err)).alias("sae"),
        F.count(err).alias("n"),
        F.count(F.lit(1)).alias("n_all"),
    ).first()
    n = int(row["n"] or 0)
    return {
        "rmse": math.sqrt(row["sse"] / n) if n else None,
        "mae": row["sae"] / n if n else None,
        "n": n,
        "n_missing": int(row["n_all"] or 0) - n,
    }
