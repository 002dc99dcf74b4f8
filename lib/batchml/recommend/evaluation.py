"""Ranking evaluation of the recommendation job: the model's top-k, the popular list and a seeded
random list, scored on held-out rows with precision / recall / NDCG / MAP@k, coverage and mean
popularity (:mod:`batchml.ranking`).

The held-out rows are the ``--test`` spec, else the split the model was trained with (recorded in
its model dir), else the dataset's probe table; a ``random:`` / ``temporal:`` split is re-created
with the seed the model was trained with.  A test dataset dir is mapped through the source ids; its
users and items unknown to training are counted (``unknown_users``, ``unknown_items``) and kept:
an unknown user's model list is the model's fallback ranking (μ + b_i).
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.config import RecommendSettings
from batchml.errors import InputError
from batchml.logs import stage
from batchml.model_dir import ModelMeta
from batchml.ranking import list_metrics, ranking_metrics
from batchml.ratings import holdout_coverage, read_test_split
from batchml.recommend.popular import item_rating_stats, popular_item_arrays, popular_items
from batchml.recommend.scoring import ItemArrays, block_size_for, top_n_per_user
from batchml.schema import BIAS_COL, FEATURES_COL, ITEM_COL, RATING_COL, USER_COL

LOG = logging.getLogger(__name__)

DEFAULT_TEST = "probe"


def evaluation_split(meta: ModelMeta, *, test: str | None, default_seed: int) -> tuple[str, int]:
    """(spec, seed) of the held-out rows: ``test``, else the model's own split, else probe; the
    seed the model's split was made with, ``default_seed`` when its model dir records none."""
    spec = test or meta.split_test or DEFAULT_TEST
    seed = meta.split_seed if meta.split_seed is not None else default_seed
    return spec, int(seed)


def read_test_rows(spark: SparkSession, ratings_df: DataFrame, *, dataset: str, spec: str,
                   seed: int) -> tuple[DataFrame, DataFrame, str | None]:
    """(train, test, note) for ranking evaluation.

    ``spec`` is ``probe`` (the dataset's probe table), a dataset dir (mapped through the source
    ids), a table of ratings or pairs, or ``random:F`` / ``temporal:F`` (the factorize job's
    splits, re-created with ``seed``); see :func:`batchml.ratings.read_test_split`.  Test ratings
    come from the test table, else from ``ratings_df``; when neither has them (probe rows removed
    from the ratings at ingest) every held-out pair counts as relevant and ``note`` says so.
    Train is ``ratings_df`` without the test pairs.
    """
    split = read_test_split(spark, ratings_df, dataset=dataset, spec=spec, seed=seed)
    if split.holdout is None:
        return split.train, split.test, None
    keys = [USER_COL, ITEM_COL]
    train, test = split.train, split.test.select(*keys, RATING_COL)
    if not split.holdout_rated and test.limit(1).count() == 0:
        pairs = split.holdout.select(*keys).distinct()
        note = (f"test pairs {split.holdout_path} have no ratings (removed from the ratings at ingest?): every "
                "held-out pair counts as relevant")
        return train, pairs.withColumn(RATING_COL, F.lit(None).cast("float")), note
    return train, test, None


def _score_list(spark: SparkSession, s: RecommendSettings, name: str, *, train: DataFrame,
                test: DataFrame, train_counts: DataFrame, threshold: float | None,
                catalog_size: int, partitions: int, timings: dict, **list_kw) -> dict:
    """Ranking and list metrics of one list (``list_kw``: users_df, items, random_seed)."""
    with stage(f"evaluate_{name}", spark, timings) as st:
        block = block_size_for(len(list_kw["items"]), max_users=s.user_block_size,
                               memory_mb=s.score_memory_mb)
        recs = top_n_per_user(n=s.top_n, seen_df=train, block_size=block,
                              partitions=partitions, **list_kw).cache()
        st.set_rows(recs.count())
        st.info["block_size"] = block
        m = ranking_metrics(recs, test, k=s.top_n, threshold=threshold)
        m.update(list_metrics(recs, train_counts, catalog_size=catalog_size))
        st.info.update({k: round(v, 4) for k, v in m.items() if isinstance(v, float)})
        recs.unpersist()
    return m


def _model_users(model_users_df: DataFrame, test_users: DataFrame) -> DataFrame:
    """Every test user with the model's bias and factors; a user the model does not know (a test
    dataset's new user) keeps null ones, so it is ranked by the model's fallback, μ + b_i."""
    cols = [c for c in (BIAS_COL, FEATURES_COL) if c in model_users_df.columns]
    return test_users.join(model_users_df.select(USER_COL, *cols), on=USER_COL, how="left")


def evaluate_lists(spark: SparkSession, s: RecommendSettings, *, ratings: DataFrame, dataset: str,
                   model_users_df: DataFrame, candidates: ItemArrays, spec: str, seed: int,
                   partitions: int, timings: dict, notes: list[str]) -> dict | None:
    """Ranking metrics of the model's top-k, the popular list and a seeded random list on the
    held-out rows of ``spec`` (see :func:`read_test_rows`; ``seed`` re-creates a random or
    temporal split), k = ``s.top_n``; lists exclude the items rated in the training part only.
    None (and a note) when the test set does not exist."""
    try:
        train, test, note = read_test_rows(spark, ratings, dataset=dataset, spec=spec, seed=seed)
    except InputError as exc:
        notes.append(f"no ranking evaluation: {exc}")
        LOG.warning("no ranking evaluation: %s", exc)
        return None
    if note:
        notes.append(note)
    threshold = None if note else s.relevance_threshold
    with stage("evaluate_split", spark, timings) as st:
        train, test = train.cache(), test.cache()
        coverage = holdout_coverage(train, test)
        st.set_rows(coverage["test_rows"])
        test_users = test.select(USER_COL).distinct().cache()
        st.info["test_users"] = test_users.count()
    result: dict = {"test": spec, "k": s.top_n, "relevance_threshold": threshold, **coverage,
                    "test_users": st.info["test_users"], "lists": {}}
    train_counts = item_rating_stats(train).cache()
    with stage("evaluate_popular_list", spark, timings):
        pop_pdf = popular_items(train, prior_strength=s.prior_strength,
                                min_ratings=s.min_ratings).toPandas()
    lists = {
        "model": dict(users_df=_model_users(model_users_df, test_users), items=candidates),
        "popular": dict(users_df=test_users, items=popular_item_arrays(pop_pdf)),
        "random": dict(users_df=test_users, items=candidates, random_seed=s.seed),
    }
    for name, kw in lists.items():
        result["lists"][name] = _score_list(
            spark, s, name, train=train, test=test, train_counts=train_counts, threshold=threshold,
            catalog_size=len(candidates), partitions=partitions, timings=timings, **kw)
    for df in (train, test, test_users, train_counts):
        df.unpersist()
    return result
