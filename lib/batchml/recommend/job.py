"""The recommendation job (``jobs/recommend.py``): top-N for every user (or a list of users), the
popular list, an optional fold-in and ranking metrics, written atomically into one output dir;
and the text report of its ``metrics.json``.

Output dir: ``recommendations`` (user_idx, item_idx, score, rank), ``recommendations_readable``
(user_id, rank, item_id, title, score, user_idx, item_idx), ``popular`` (:func:`popular_items`
plus item_id, title) and ``metrics.json`` (the dict :func:`run_recommend` returns).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.config import Config, RecommendSettings
from batchml.errors import InputError, JobError
from batchml.io.atomic import atomic_dir, write_json
from batchml.logs import stage
from batchml.model_dir import LoadedModel, load_model
from batchml.recommend.evaluation import evaluate_lists, evaluation_split
from batchml.recommend.foldin import fold_in, read_fold_in_csv
from batchml.recommend.item_lookup import ItemLookup
from batchml.recommend.popular import item_rating_stats, popular_items
from batchml.recommend.scoring import (ItemArrays, block_size_for, model_item_arrays, recommend_for_vector,
                                       top_n_per_user)
from batchml.schema import (BIAS_COL, COUNT_COL, FEATURES_COL, ITEM_COL, ITEM_ID_COL, ITEMS, MEAN_COL,
                            METRICS_FILE, POPULAR, RANK_COL, RATING_COL, RATINGS, RECOMMENDATIONS,
                            RECOMMENDATIONS_READABLE, SCORE_COL, SHRUNK_COL, TITLE_COL, USER_COL,
                            USER_ID_COL, USERS, YEAR_COL)
from batchml.spark import local_frame

LOG = logging.getLogger(__name__)

REPORTED_SETTINGS = ("top_n", "min_ratings", "prior_strength", "relevance_threshold", "fold_in_reg",
                     "fold_in_bias_reg", "user_block_size", "score_memory_mb", "seed")
USERS_PER_TASK = 50_000


@dataclass
class _Run:
    """What every stage of one run shares."""

    spark: SparkSession
    s: RecommendSettings
    timings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Inputs:
    model: LoadedModel
    ratings: DataFrame      # user_idx, item_idx, rating float; cached
    users_map: DataFrame    # user_idx, user_id
    items_map: DataFrame    # the dataset's items table


@dataclass
class _Items:
    stats: DataFrame         # item_rating_stats of the ratings; cached
    candidates: ItemArrays   # trained items with at least min_ratings ratings
    trained: ItemArrays      # every item with model parameters (fold-in)
    block_size: int          # users per scoring block, within the memory budget


# ------------------------------------------------------------------------------------ stages
def read_inputs(run: _Run, model: str, dataset: str) -> _Inputs:
    """The model dir and the dataset's ratings and id maps."""
    spark = run.spark
    with stage("read", spark, run.timings) as st:
        md = load_model(spark, model)
        ratings = spark.read.parquet(f"{dataset}/{RATINGS}").select(
            USER_COL, ITEM_COL, F.col(RATING_COL).cast("float").alias(RATING_COL)).cache()
        users_map = spark.read.parquet(f"{dataset}/{USERS}").select(USER_COL, USER_ID_COL)
        items_map = spark.read.parquet(f"{dataset}/{ITEMS}")
        st.set_rows(ratings.count())
        st.info.update(rank=md.meta.rank, mu=round(md.meta.mu, 4), gamma=md.meta.gamma)
    return _Inputs(md, ratings, users_map, items_map)


def candidate_items(run: _Run, inp: _Inputs) -> _Items:
    """The model's items as scoring arrays (γ and μ from the model dir, as written)."""
    meta = inp.model.meta
    with stage("items", run.spark, run.timings) as st:
        stats = item_rating_stats(inp.ratings).cache()
        items_pdf = (inp.model.items_df.select(ITEM_COL, BIAS_COL, FEATURES_COL)
                     .join(stats, on=ITEM_COL, how="left").toPandas())
        candidates = model_item_arrays(items_pdf, mu=meta.mu, gamma=meta.gamma, rank=meta.rank,
                                       min_ratings=run.s.min_ratings)
        trained = model_item_arrays(items_pdf, mu=meta.mu, gamma=meta.gamma, rank=meta.rank)
        st.set_rows(len(candidates))
        if len(candidates) == 0:
            raise JobError(f"no item has model parameters and >= {run.s.min_ratings} ratings")
        block = block_size_for(len(candidates), max_users=run.s.user_block_size,
                               memory_mb=run.s.score_memory_mb)
        st.info.update(trained=len(trained), catalog=len(items_pdf), block_size=block)
    return _Items(stats, candidates, trained, block)


def select_users(run: _Run, inp: _Inputs, users_file: str | None) -> tuple[DataFrame, int, list | None]:
    """(users to score, their count, the unknown ids of ``users_file`` or None without one)."""
    users_df = inp.model.users_df.select(USER_COL, BIAS_COL, FEATURES_COL)
    unknown = None
    with stage("users", run.spark, run.timings) as st:
        if users_file:
            wanted = read_user_ids(users_file)
            ids_df = local_frame(run.spark, [(u,) for u in wanted], f"{USER_ID_COL} string")
            found = ids_df.join(inp.users_map, on=USER_ID_COL, how="inner").cache()
            known = {r[USER_ID_COL] for r in found.select(USER_ID_COL).collect()}
            unknown = [u for u in wanted if u not in known]
            if unknown:
                run.notes.append(f"{len(unknown)} unknown user ids skipped: {unknown[:10]}")
                LOG.warning("unknown user ids: %s", unknown[:10])
            if not known:
                raise InputError(f"none of the {len(wanted)} user ids in {users_file} is known")
            users_df = users_df.join(found.select(USER_COL), on=USER_COL, how="left_semi")
        n_users = st.set_rows(users_df.count())
    return users_df, n_users, unknown


def write_top_n(run: _Run, users_df: DataFrame, items: _Items, inp: _Inputs, *, partitions: int,
                tmp: str) -> tuple[DataFrame, int]:
    """Write ``recommendations``; return it as read back, and its row count."""
    with stage("top_n", run.spark, run.timings) as st:
        recs = top_n_per_user(users_df, items.candidates, n=run.s.top_n, seen_df=inp.ratings,
                              block_size=items.block_size, partitions=partitions)
        recs.write.parquet(f"{tmp}/{RECOMMENDATIONS}")
        written = run.spark.read.parquet(f"{tmp}/{RECOMMENDATIONS}")
        n_rows = st.set_rows(written.count())
    return written, n_rows


def write_readable(run: _Run, recs: DataFrame, inp: _Inputs, *, n_rows: int, tmp: str) -> None:
    """Write ``recommendations_readable``: the lists with source ids and titles."""
    with stage("readable", run.spark, run.timings) as st:
        readable = (recs.join(inp.users_map, on=USER_COL, how="left")
                    .join(inp.items_map.select(ITEM_COL, ITEM_ID_COL, TITLE_COL), on=ITEM_COL,
                          how="left")
                    .select(USER_ID_COL, RANK_COL, ITEM_ID_COL, TITLE_COL, SCORE_COL, USER_COL, ITEM_COL)
                    .orderBy(USER_COL, RANK_COL))
        readable.write.parquet(f"{tmp}/{RECOMMENDATIONS_READABLE}")
        st.set_rows(n_rows)


def write_popular(run: _Run, inp: _Inputs, *, tmp: str) -> list[dict]:
    """Write ``popular``; return its top ``top_n`` rows for the report."""
    s = run.s
    with stage("popular", run.spark, run.timings) as st:
        popular = popular_items(inp.ratings, prior_strength=s.prior_strength, min_ratings=s.min_ratings,
                                item_bias_df=inp.model.items_df.select(ITEM_COL, BIAS_COL))
        popular = (popular.join(inp.items_map.select(ITEM_COL, ITEM_ID_COL, TITLE_COL), on=ITEM_COL,
                                how="left")
                   .select(*popular.columns, ITEM_ID_COL, TITLE_COL).orderBy(RANK_COL))
        popular.write.parquet(f"{tmp}/{POPULAR}")
        written = run.spark.read.parquet(f"{tmp}/{POPULAR}")
        st.set_rows(written.count())
        popular_pdf = written.where(F.col(RANK_COL) <= s.top_n).orderBy(RANK_COL).toPandas()
    return [{"rank": int(r[RANK_COL]), "title": r[TITLE_COL], "n_ratings": int(r[COUNT_COL]),
             "mean_rating": round(float(r[MEAN_COL]), 3), "shrunk_mean": round(float(r[SHRUNK_COL]), 3)}
            for _, r in popular_pdf.head(s.top_n).iterrows()]


def fold_in_report(run: _Run, inp: _Inputs, items: _Items, fold_in_file: str) -> dict:
    """Fold in the user of ``fold_in_file``; their b_u, |p_u|, rated items and top-N."""
    s, items_map = run.s, inp.items_map
    with stage("fold_in", run.spark, run.timings) as st:
        lookup = ItemLookup(items_map.select(
            *[c for c in (ITEM_COL, ITEM_ID_COL, TITLE_COL, YEAR_COL) if c in items_map.columns]).toPandas())
        idx, r = read_fold_in_csv(fold_in_file, lookup)
        fi = fold_in(idx, r, items.trained, mu=inp.model.meta.mu, reg=s.fold_in_reg,
                     bias_reg=s.fold_in_bias_reg)
        top = recommend_for_vector(items.candidates, bias=fi.bias, factors=fi.factors, n=s.top_n,
                                   exclude=fi.item_idx)
        top = top.merge(lookup.describe(top[ITEM_COL]), on=ITEM_COL, how="left")
        st.set_rows(len(top))
    rated = lookup.describe(idx).assign(rating=r)[[ITEM_ID_COL, TITLE_COL, "rating"]]
    return {"file": fold_in_file, "n_ratings": int(len(idx)), "bias": fi.bias,
            "factor_norm": float(np.linalg.norm(fi.factors)),
            "rated": json.loads(rated.to_json(orient="records")),
            "top": json.loads(top[[RANK_COL, ITEM_ID_COL, TITLE_COL, SCORE_COL]].to_json(orient="records"))}


# ------------------------------------------------------------------------------------- the job
def run_recommend(spark: SparkSession, cfg: Config, *, model: str, dataset: str, output: str,
                  users_file: str | None = None, test: str | None = None,
                  fold_in_file: str | None = None) -> dict:
    """The recommendation job: top-N for every user (or a list), the popular list, an optional
    fold-in, ranking metrics on held-out rows; all written atomically into ``output``.

    Returns the dict written to ``output/metrics.json``.
    """
    run = _Run(spark, cfg.recommend)
    s = run.s
    out: dict = {"model": model, "dataset": dataset,
                 "settings": {k: getattr(s, k) for k in REPORTED_SETTINGS}}
    inp = read_inputs(run, model, dataset)
    items = candidate_items(run, inp)
    users_df, n_users, unknown = select_users(run, inp, users_file)
    if unknown is not None:
        out["unknown_users"] = unknown
    parts = max(2 * spark.sparkContext.defaultParallelism, -(-n_users // USERS_PER_TASK))
    with atomic_dir(output) as tmp:
        recs, out["recommendations"] = write_top_n(run, users_df, items, inp, partitions=parts, tmp=tmp)
        if s.readable:
            write_readable(run, recs, inp, n_rows=out["recommendations"], tmp=tmp)
        out["popular_top"] = write_popular(run, inp, tmp=tmp)
        if fold_in_file:
            out["fold_in"] = fold_in_report(run, inp, items, fold_in_file)
        if s.evaluate:
            spec, seed = evaluation_split(inp.model.meta, test=test, default_seed=cfg.factorize.seed)
            out["evaluation"] = evaluate_lists(
                spark, s, ratings=inp.ratings, dataset=dataset, model_users_df=inp.model.users_df,
                candidates=items.candidates, spec=spec, seed=seed, partitions=parts,
                timings=run.timings, notes=run.notes)
        out["notes"] = run.notes
        out["timings_seconds"] = run.timings
        write_json(f"{tmp}/{METRICS_FILE}", out)
    inp.ratings.unpersist()
    items.stats.unpersist()
    return out


def read_user_ids(path: str) -> list[str]:
    """Source user ids, one per line (a first line ``user_id`` is a header; blanks and ``#``
    comments are skipped)."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [ln.strip() for ln in fh]
    except OSError as exc:
        raise InputError(f"cannot read users file {path!r}: {exc.strerror or exc}") from None
    ids = [ln.split(",")[0].strip() for ln in lines if ln and not ln.startswith("#")]
    if ids and ids[0].casefold() == USER_ID_COL:
        ids = ids[1:]
    return list(dict.fromkeys(ids))


# ------------------------------------------------------------------------------------ the report
def format_metrics(metrics: dict) -> str:
    """The ranking-evaluation table (and popular/fold-in summaries) of a :func:`run_recommend`
    result as text."""
    lines = [f"recommendations: {metrics.get('recommendations', 0):,} rows "
             f"(top {metrics['settings']['top_n']} per user)"]
    lines += _evaluation_lines(metrics.get("evaluation"))
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


def _metric(v: float | None) -> str:
    return f"{v:.4f}" if v is not None else "-"


def _evaluation_lines(ev: dict | None) -> list[str]:
    if not ev:
        return []
    k, thr = ev["k"], ev["relevance_threshold"]
    lines = [f"ranking metrics on {ev['test']} ({ev['test_rows']:,} rows, {ev['test_users']:,} users; "
             "relevant: " + (f"rating >= {thr:g}" if thr is not None else "every held-out pair") + ")",
             f"{'list':<10} {'P@' + str(k):>8} {'R@' + str(k):>8} {'NDCG@' + str(k):>9} "
             f"{'MAP@' + str(k):>8} {'coverage':>9} {'mean pop':>10} {'users':>8}"]
    for name, m in ev["lists"].items():
        lines.append(f"{name:<10} {_metric(m['precision']):>8} {_metric(m['recall']):>8} "
                     f"{_metric(m['ndcg']):>9} {_metric(m['map']):>8} {_metric(m['coverage']):>9} "
                     f"{(m['mean_popularity'] or 0):>10,.1f} {m['users']:>8,}")
    return lines
