"""Using a ``similar_items`` (or ``similar_users``) table: readable titles, "because you liked X",
item-CF rating prediction and its held-out evaluation.

Like the pipeline, every function swaps to users with ``col_user=ITEM_COL, col_item=USER_COL``.
"""
from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window as W
from pyspark.sql import functions as F

from batchml.logs import stage
from batchml.metrics import regression_metrics
from batchml.ratings import split_random
from batchml.schema import (CO_COUNT_COL, ITEM_COL, OTHER_COL, PREDICTION_COL, RANK_COL,
                            RATING_COL, SCORE_COL, SIMILARITY_COL, TITLE_COL, USER_COL)
from batchml.similarity.pipeline import SimilarityParams, compute_similar

BECAUSE_COL = "because_idx"            # the liked item that explains a recommendation
BECAUSE_RATING_COL = "because_rating"  # the user's rating of it
N_NEIGHBOURS_COL = "n_neighbours"      # rated neighbours an item-CF prediction used


# -------------------------------------------------------------------------------- readable view
def with_two_labels(df: DataFrame, labels_df: DataFrame, *, col_item: str, col_other: str,
                    col_label: str, prefix_other: str) -> DataFrame:
    """``df`` plus the label of ``col_item`` (as ``col_label``) and of ``col_other`` (as
    ``prefix_other + col_label``), by left joins with ``labels_df`` (a missing label is null)."""
    names = labels_df.select(col_item, col_label)
    a, b, d = names.alias("a"), names.alias("b"), df.alias("d")
    return (
        d.join(a, on=F.col(f"d.{col_item}") == F.col(f"a.{col_item}"), how="left")
        .join(b, on=F.col(f"d.{col_other}") == F.col(f"b.{col_item}"), how="left")
        .select(*[F.col(f"d.{c}").alias(c) for c in df.columns],
                F.col(f"a.{col_label}").alias(col_label),
                F.col(f"b.{col_label}").alias(f"{prefix_other}{col_label}"))
    )


def with_titles(similar_df: DataFrame, items_df: DataFrame, *, col_item: str = ITEM_COL,
                col_title: str = TITLE_COL) -> DataFrame:
    """Add the titles (or any label column) of both sides of a ``similar_items`` table.

    Returns
    -------
    DataFrame: ``col_item``, ``col_title``, ``rank``, ``other_idx``, ``other_<col_title>``,
    ``similarity``, ``co_count`` (left joins: a missing label is null).
    """
    labelled = with_two_labels(similar_df, items_df, col_item=col_item, col_other=OTHER_COL,
                               col_label=col_title, prefix_other="other_")
    return labelled.select(col_item, col_title, RANK_COL, OTHER_COL, f"other_{col_title}",
                           SIMILARITY_COL, CO_COUNT_COL)


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
    return with_two_labels(recs_df, items_df, col_item=col_item, col_other=BECAUSE_COL,
                           col_label=col_title, prefix_other="because_")


# ----------------------------------------------------------------------------- item-CF predict
def item_cf_sums(train_df: DataFrame, pairs_df: DataFrame, similar_df: DataFrame, *,
                 values: dict[str, str], col_user: str = USER_COL,
                 col_item: str = ITEM_COL) -> DataFrame:
    """Per distinct (user, item) of ``pairs_df``: ``Σ_j sim(i,j)·v_uj`` of each training column
    ``values`` names (as the key: ``{out name: train column}``), ``_den`` = Σ_j sim(i,j) and
    ``n_neighbours``, over the neighbours j of i in ``similar_df`` with a positive similarity that u
    rated in ``train_df``: one join of the training set however many columns are summed.  Pairs
    with no such neighbour have no row."""
    keys = [col_user, col_item]
    targets = pairs_df.select(*keys).dropDuplicates(keys)
    nbrs = (similar_df.where(F.col(SIMILARITY_COL) > 0)
            .select(col_item, F.col(OTHER_COL).alias("_j"), SIMILARITY_COL))
    rated = train_df.select(col_user, F.col(col_item).alias("_j"),
                            *(F.col(c).cast("double").alias(f"_v_{name}") for name, c in values.items()))
    sim = F.col(SIMILARITY_COL)
    return (
        targets.join(nbrs, on=col_item, how="inner")
        .join(rated, on=[col_user, "_j"], how="inner")
        .groupBy(*keys)
        .agg(*(F.sum(sim * F.col(f"_v_{name}")).alias(name) for name in values),
             F.sum(sim).alias("_den"), F.count(F.lit(1)).cast("int").alias(N_NEIGHBOURS_COL))
    )


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
    sums = item_cf_sums(train_df, pairs_df, similar_df, values={"_num": col_rating},
                        col_user=col_user, col_item=col_item)
    if global_mean is None:
        mean_df = train_df.agg(F.avg(F.col(col_rating).cast("double")).alias("_mu"))
    else:
        mean_df = train_df.sparkSession.range(1).select(F.lit(float(global_mean)).alias("_mu"))
    cols = [c for c in pairs_df.columns if c not in (col_prediction, N_NEIGHBOURS_COL)]
    return (
        pairs_df.select(*cols)
        .join(sums, on=keys, how="left")
        .crossJoin(F.broadcast(mean_df))
        .select(*cols,
                F.coalesce(F.col("_num") / F.col("_den"), F.col("_mu")).cast("double")
                .alias(col_prediction),
                F.coalesce(F.col(N_NEIGHBOURS_COL), F.lit(0)).alias(N_NEIGHBOURS_COL))
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
                               global_mean=global_mean).drop(N_NEIGHBOURS_COL)


# ---------------------------------------------------------------------------------- evaluation
_LEVEL = StorageLevel.MEMORY_AND_DISK


def _rounded(rmse: float | None) -> float | None:
    return round(rmse, 4) if rmse is not None else None


def _split_stage(ratings_df: DataFrame, *, holdout_fraction: float, seed: int, col_user: str,
                 col_item: str, col_rating: str, timings: dict | None):
    """Stage ``eval_split``: persisted (train, test), the test row count and the training mean."""
    with stage("eval_split", ratings_df.sparkSession, timings) as st:
        train, test = split_random(ratings_df.select(col_user, col_item, col_rating),
                                   fraction=holdout_fraction, seed=seed, col_user=col_user,
                                   col_item=col_item)
        train, test = train.persist(_LEVEL), test.persist(_LEVEL)
        n_test = test.count()
        st.set_rows(n_test)
        mu = train.agg(F.avg(F.col(col_rating).cast("double")).alias("mu")).first()["mu"]
    return train, test, n_test, mu


def _predict_stage(train: DataFrame, test: DataFrame, top: DataFrame, mu: float, *, col_user: str,
                   col_item: str, col_rating: str, timings: dict | None) -> dict:
    """Stage ``eval_predict``: item-CF and global-mean metrics of the held-out rows, and the
    number of rows predicted from at least one neighbour (``covered``)."""
    with stage("eval_predict", train.sparkSession, timings) as st:
        scored = (
            with_item_cf_scores(train, test, top, col_user=col_user, col_item=col_item,
                                col_rating=col_rating, global_mean=mu)
            .persist(_LEVEL)
        )
        cf = regression_metrics(scored, col_rating=col_rating, col_prediction=PREDICTION_COL)
        base = regression_metrics(test.withColumn(PREDICTION_COL, F.lit(float(mu))),
                                  col_rating=col_rating, col_prediction=PREDICTION_COL)
        covered = scored.where(F.col(N_NEIGHBOURS_COL) > 0).count()
        st.set_rows(cf["n"])
        st.info.update(rmse_item_cf=_rounded(cf["rmse"]), rmse_global_mean=_rounded(base["rmse"]))
    scored.unpersist()
    return {"item_cf": cf, "global_mean": base, "covered": covered}


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
    cols = dict(col_user=col_user, col_item=col_item, col_rating=col_rating)
    train, test, n_test, mu = _split_stage(ratings_df, holdout_fraction=holdout_fraction,
                                           seed=seed, timings=timings, **cols)
    top, sim_report = compute_similar(train, params, timings=timings, prefix="eval_", **cols)
    scores = _predict_stage(train, test, top, mu, timings=timings, **cols)
    for df in (top, train, test):
        df.unpersist()
    return {
        "holdout_fraction": holdout_fraction, "seed": seed,
        "train": sim_report["ratings_in"], "test": n_test,
        "global_mean_value": mu, "item_cf": scores["item_cf"], "global_mean": scores["global_mean"],
        "coverage": scores["covered"] / n_test if n_test else None,
        "similarity": sim_report,
    }
