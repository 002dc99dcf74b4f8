"""Similar items (or users) from a dataset dir: co-occurrence Jaccard, cosine or Pearson top-K.

    ./spark-submit.sh jobs/similarity.py --dataset DIR --output DIR [--metric jaccard|cosine|cosine_binary|pearson]
        [--top-k 20] [--min-support N] [--max-items-per-user N] [--exact] [--users]
        [--show TITLE] [--show-user USER_IDX]

Writes OUTPUT/similar_items (item_idx, other_idx, similarity, co_count, rank), OUTPUT/similar_items_readable
(with titles), or similar_users / similar_users_readable with --users, and OUTPUT/metrics.json (pairs
generated, user buckets and partial rows of the partial XᵀX products, users capped, item-CF RMSE
against the global mean on a held-out split, time per stage).
"""
from __future__ import annotations

import json
import sys
import time

from batchml.cli import JobError, job_parser, run_job


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset dir written by the ingest job")
    parser.add_argument("--output", required=True, help="output dir (replaced atomically)")
    parser.add_argument("--metric", default=None,
                        choices=("jaccard", "cosine", "cosine_binary", "pearson"),
                        help="similarity metric (similarity.metric)")
    parser.add_argument("--top-k", type=int, default=None, help="neighbours kept per item (similarity.top_k)")
    parser.add_argument("--min-support", type=int, default=None,
                        help="minimum co-occurring users of a pair (similarity.min_support)")
    parser.add_argument("--max-items-per-user", type=int, default=None,
                        help="per-user cap, 0 for none (similarity.max_items_per_user)")
    parser.add_argument("--exact", action="store_true", default=None,
                        help="no cap and min_support 1 (similarity.exact)")
    parser.add_argument("--users", action="store_true", default=None,
                        help="user-user similarity instead of item-item (similarity.users)")
    parser.add_argument("--show", action="append", default=[], metavar="TITLE",
                        help="print the most similar titles of the item with this title (repeatable)")
    parser.add_argument("--show-user", type=int, action="append", default=[], metavar="USER_IDX",
                        help="print 'because you liked X' recommendations for this user (repeatable)")
    parser.add_argument("--show-n", type=int, default=10, help="rows printed per --show/--show-user")
    return parser


FLAG_SETTINGS = {"metric": "metric", "top_k": "top_k", "min_support": "min_support",
                 "max_items_per_user": "max_items_per_user", "exact": "exact", "users": "users"}


def run(spark, cfg, args) -> int:
    from pyspark.sql import functions as F

    from batchml import similarity as S
    from batchml.config import as_dict
    from batchml.io.atomic import atomic_dir, write_json
    from batchml.logs import stage
    from batchml.schema import (ITEM_COL, ITEMS, RATING_COL, RATINGS, TITLE_COL, USER_COL,
                                USER_ID_COL, USERS)

    overrides = {f"similarity.{key}": getattr(args, flag) for flag, key in FLAG_SETTINGS.items()
                 if getattr(args, flag) is not None}
    if overrides:
        cfg = cfg.replace(**overrides)
    s = cfg.similarity
    params = S.SimilarityParams.from_settings(s)
    if s.users:  # same code, roles swapped: "baskets" are items, scored entities are users
        col_basket, col_entity, table = ITEM_COL, USER_COL, S.SIMILAR_USERS
        labels_name, label_col = USERS, USER_ID_COL
    else:
        col_basket, col_entity, table = USER_COL, ITEM_COL, S.SIMILAR_ITEMS
        labels_name, label_col = ITEMS, TITLE_COL
    timings: dict = {}
    t0 = time.perf_counter()

    with stage("read", spark, timings) as st:
        try:
            ratings_df = spark.read.parquet(f"{args.dataset}/{RATINGS}").select(
                USER_COL, ITEM_COL, RATING_COL)
            labels_df = spark.read.parquet(f"{args.dataset}/{labels_name}")
        except Exception as exc:  # AnalysisException: path missing or not Parquet
            raise JobError(f"cannot read dataset {args.dataset!r}: {str(exc).splitlines()[0]}") from None
        n_ratings = st.set_rows(ratings_df.count())
    if n_ratings == 0:
        raise JobError(f"dataset {args.dataset!r} has no ratings")

    top_df, report = S.compute_similar(ratings_df, params, col_user=col_basket, col_item=col_entity,
                                       timings=timings)
    readable_df = S.with_titles(top_df, labels_df, col_item=col_entity, col_title=label_col)
    metrics = {"dataset": args.dataset, "table": table, "settings": as_dict(cfg)["similarity"],
               "effective": params.__dict__.copy(), "ratings": n_ratings,
               "similarity": {k: v for k, v in report.items() if k != "params"}}

    with atomic_dir(args.output) as tmp:
        with stage("write", spark, timings) as st:
            top_df.write.parquet(f"{tmp}/{table}")
            readable_df.write.parquet(f"{tmp}/{table}_readable")
            st.set_rows(report["rows"])
        top_df.unpersist()
        if s.holdout_fraction > 0:
            metrics["evaluation"] = S.evaluate_item_cf(
                ratings_df, params, holdout_fraction=s.holdout_fraction, seed=s.seed,
                col_user=col_basket, col_item=col_entity, timings=timings)
        timings["total"] = round(time.perf_counter() - t0, 3)
        metrics["timings_s"] = timings
        write_json(f"{tmp}/{S.METRICS_FILE}", metrics)

    summary = {"output": args.output, "table": table, **{k: metrics["similarity"][k] for k in (
        "users_capped", "pairs_without_cap", "pairs_generated", "user_buckets", "partial_rows",
        "distinct_pairs",
        "pairs_after_min_support", "rows")}}
    ev = metrics.get("evaluation")
    if ev:
        summary["rmse_item_cf"] = ev["item_cf"]["rmse"]
        summary["rmse_global_mean"] = ev["global_mean"]["rmse"]
        summary["coverage"] = ev["coverage"]
    summary["timings_s"] = timings
    print(json.dumps(summary, indent=2))

    readable = spark.read.parquet(f"{args.output}/{table}_readable")
    for title in args.show:
        rows = (readable.where(F.col(label_col) == F.lit(title))
                .where(F.col(S.RANK_COL) <= F.lit(args.show_n))
                .orderBy(F.col(col_entity), F.col(S.RANK_COL)).collect())
        if not rows:
            print(f"\nno {label_col} {title!r} with neighbours in {args.output}")
            continue
        print(f"\nmost similar to {title!r} ({s.metric}):")
        for r in rows:
            print(f"  {r[S.RANK_COL]:>2}. {r['other_' + label_col]!s:60s} "
                  f"{r[S.SIMILARITY_COL]:.4f}  ({r[S.CO_COUNT_COL]} together)")
    if args.show_user and not s.users:
        recs = S.because_you_liked(ratings_df, spark.read.parquet(f"{args.output}/{table}"),
                                   users=args.show_user, min_rating=s.liked_min_rating,
                                   top_n=args.show_n)
        rows = (S.with_because_titles(recs, labels_df)
                .orderBy(F.col(USER_COL), F.col(S.RANK_COL)).collect())
        for user in args.show_user:
            print(f"\nbecause user {user} liked ...")
            for r in (r for r in rows if r[USER_COL] == user):
                print(f"  {r[S.RANK_COL]:>2}. {r[TITLE_COL]!s:50s} because of "
                      f"{r['because_' + TITLE_COL]!s:40s} {r[S.SCORE_COL]:.4f}")
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-similarity")


if __name__ == "__main__":
    sys.exit(main())
