"""The similarity job (``jobs/similarity.py``): read a dataset dir, compute the top-K table, write it
with a readable view and ``metrics.json``, evaluate item-CF, and list neighbours for a person.

Outputs (in ``output``, replaced atomically): ``similar_items`` (or ``similar_users`` with
``similarity.users``), ``<table>_readable`` (with titles / user ids) and ``metrics.json``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F, types as T

from batchml.config import Config, as_dict
from batchml.errors import InputError, JobError
from batchml.io.atomic import atomic_dir, exists, write_json
from batchml.logs import stage
from batchml.schema import (CO_COUNT_COL, ITEM_COL, ITEMS, ITEMS_SCHEMA, METRICS_FILE, RANK_COL,
                            RATING_COL, RATINGS, RATINGS_SCHEMA, SCORE_COL, SIMILAR_ITEMS,
                            SIMILAR_USERS, SIMILARITY_COL, TITLE_COL, USER_COL, USER_ID_COL, USERS,
                            USERS_SCHEMA)
from batchml.similarity.neighbours import (because_you_liked, evaluate_item_cf, with_because_titles,
                                           with_titles)
from batchml.similarity.pipeline import SimilarityParams, compute_similar

READABLE_SUFFIX = "_readable"       # the readable view of a table is written beside it
SUMMARY_KEYS = ("users_capped", "pairs_without_cap", "pairs_generated", "pairs_method",
                "item_blocks", "user_buckets", "partial_rows", "distinct_pairs",
                "pairs_after_min_support", "rows")


@dataclass(frozen=True)
class Roles:
    """Which column groups the co-occurrences (basket), which is scored (entity), and the names
    that follow: the output table and the dataset table and column labelling the entities."""

    col_basket: str
    col_entity: str
    table: str
    labels: str
    label_col: str
    labels_schema: T.StructType

    @classmethod
    def of(cls, users: bool) -> "Roles":
        if users:  # same code, roles swapped: "baskets" are items, scored entities are users
            return cls(ITEM_COL, USER_COL, SIMILAR_USERS, USERS, USER_ID_COL, USERS_SCHEMA)
        return cls(USER_COL, ITEM_COL, SIMILAR_ITEMS, ITEMS, TITLE_COL, ITEMS_SCHEMA)


def _columns(schema: T.StructType, *names: str) -> T.StructType:
    """The fields ``names`` of ``schema`` (a table read with them skips schema inference)."""
    return T.StructType([schema[name] for name in names])


@dataclass(frozen=True)
class SimilarityRun:
    """What a run wrote (``metrics``, as in ``metrics.json``), the figures it prints
    (``summary``) and the ``--show`` / ``--show-user`` lists (``shown``, text blocks)."""

    metrics: dict
    summary: dict
    shown: tuple[str, ...] = ()

    def text(self) -> str:
        return "\n".join([json.dumps(self.summary, indent=2), *self.shown])


def read_dataset(spark: SparkSession, dataset: str, roles: Roles,
                 timings: dict) -> tuple[DataFrame, DataFrame]:
    """Stage ``read``: the ratings (user, item, rating) and the entity labels (entity, label),
    read with their columns of the dataset schemas (no inference job) and lazy: the rating count
    comes with the ``cap`` stage's figures.

    Raises :class:`InputError` when the dataset or one of its tables is missing.
    """
    if not exists(dataset):
        raise InputError(f"dataset {dataset!r} does not exist")
    for name in (RATINGS, roles.labels):
        if not exists(f"{dataset}/{name}"):
            raise InputError(f"dataset {dataset!r} has no {name}/ table "
                             "(expected a dataset dir written by jobs/ingest.py)")
    with stage("read", spark, timings):
        ratings_df = (spark.read.schema(_columns(RATINGS_SCHEMA, USER_COL, ITEM_COL, RATING_COL))
                      .parquet(f"{dataset}/{RATINGS}"))
        labels_df = (spark.read.schema(_columns(roles.labels_schema, roles.col_entity,
                                                roles.label_col))
                     .parquet(f"{dataset}/{roles.labels}"))
    return ratings_df, labels_df


def write_tables(spark: SparkSession, tmp: str, top_df: DataFrame, readable_df: DataFrame,
                 roles: Roles, rows: int, timings: dict) -> None:
    """Stage ``write``: the top-K table and its readable view into the temporary output dir."""
    with stage("write", spark, timings) as st:
        top_df.write.parquet(f"{tmp}/{roles.table}")
        readable_df.write.parquet(f"{tmp}/{roles.table}{READABLE_SUFFIX}")
        st.set_rows(rows)


def summarize(metrics: dict, *, output: str) -> dict:
    """The figures the job prints: pair work, sizes, item-CF RMSE and the timings."""
    summary = {"output": output, "table": metrics["table"],
               **{k: metrics["similarity"][k] for k in SUMMARY_KEYS if k in metrics["similarity"]}}
    ev = metrics.get("evaluation")
    if ev:
        summary["rmse_item_cf"] = ev["item_cf"]["rmse"]
        summary["rmse_global_mean"] = ev["global_mean"]["rmse"]
        summary["coverage"] = ev["coverage"]
    summary["timings_s"] = metrics["timings_s"]
    return summary


def show_neighbours(spark: SparkSession, output: str, roles: Roles, *, titles, n: int,
                    metric: str) -> list[str]:
    """Per label in ``titles``: its ``n`` most similar entities, read from the written output."""
    if not titles:
        return []
    readable = spark.read.parquet(f"{output}/{roles.table}{READABLE_SUFFIX}")
    label = roles.label_col
    blocks = []
    for title in titles:
        rows = (readable.where(F.col(label) == F.lit(title))
                .where(F.col(RANK_COL) <= F.lit(n))
                .orderBy(F.col(roles.col_entity), F.col(RANK_COL)).collect())
        if not rows:
            blocks.append(f"\nno {label} {title!r} with neighbours in {output}")
            continue
        lines = [f"\nmost similar to {title!r} ({metric}):"]
        lines += [f"  {r[RANK_COL]:>2}. {r['other_' + label]!s:60s} "
                  f"{r[SIMILARITY_COL]:.4f}  ({r[CO_COUNT_COL]} together)" for r in rows]
        blocks.append("\n".join(lines))
    return blocks


def show_because(spark: SparkSession, output: str, ratings_df: DataFrame, items_df: DataFrame, *,
                 users, n: int, min_rating: float) -> list[str]:
    """Per user in ``users``: "because you liked X" lists from the written ``similar_items``."""
    recs = because_you_liked(ratings_df, spark.read.parquet(f"{output}/{SIMILAR_ITEMS}"),
                             users=list(users), min_rating=min_rating, top_n=n)
    rows = (with_because_titles(recs, items_df)
            .orderBy(F.col(USER_COL), F.col(RANK_COL)).collect())
    blocks = []
    for user in users:
        lines = [f"\nbecause user {user} liked ..."]
        lines += [f"  {r[RANK_COL]:>2}. {r[TITLE_COL]!s:50s} because of "
                  f"{r['because_' + TITLE_COL]!s:40s} {r[SCORE_COL]:.4f}"
                  for r in rows if r[USER_COL] == user]
        blocks.append("\n".join(lines))
    return blocks


def run_similarity(spark: SparkSession, cfg: Config, *, dataset: str, output: str,
                   show=(), show_user=(), show_n: int = 10) -> SimilarityRun:
    """The similarity job with the settings ``cfg.similarity``: read ``dataset``, compute the
    top-K table, write it, its readable view and ``metrics.json`` (with the item-CF evaluation
    when ``holdout_fraction > 0``) to ``output``, then list the neighbours of the ``show`` labels
    and the "because you liked" lists of the ``show_user`` users (item-item only)."""
    s = cfg.similarity
    params = SimilarityParams.from_settings(s)
    roles = Roles.of(s.users)
    timings: dict = {}
    t0 = time.perf_counter()
    ratings_df, labels_df = read_dataset(spark, dataset, roles, timings)
    top_df, report = compute_similar(ratings_df, params, col_user=roles.col_basket,
                                     col_item=roles.col_entity, timings=timings)
    n_ratings = report["ratings_in"]
    if n_ratings == 0:
        top_df.unpersist()
        raise JobError(f"dataset {dataset!r} has no ratings")
    readable_df = with_titles(top_df, labels_df, col_item=roles.col_entity,
                              col_title=roles.label_col)
    metrics = {"dataset": dataset, "table": roles.table, "settings": as_dict(cfg)["similarity"],
               "effective": params.__dict__.copy(), "ratings": n_ratings,
               "similarity": {k: v for k, v in report.items() if k != "params"}}
    with atomic_dir(output) as tmp:
        write_tables(spark, tmp, top_df, readable_df, roles, report["rows"], timings)
        top_df.unpersist()
        if s.holdout_fraction > 0:
            metrics["evaluation"] = evaluate_item_cf(
                ratings_df, params, holdout_fraction=s.holdout_fraction, seed=s.seed,
                col_user=roles.col_basket, col_item=roles.col_entity, timings=timings)
        timings["total"] = round(time.perf_counter() - t0, 3)
        metrics["timings_s"] = timings
        write_json(f"{tmp}/{METRICS_FILE}", metrics)
    shown = show_neighbours(spark, output, roles, titles=show, n=show_n, metric=s.metric)
    if show_user and not s.users:
        shown += show_because(spark, output, ratings_df, labels_df, users=show_user, n=show_n,
                              min_rating=s.liked_min_rating)
    return SimilarityRun(metrics=metrics, summary=summarize(metrics, output=output),
                         shown=tuple(shown))
