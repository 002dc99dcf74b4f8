"""Recommend from a factor model: top-N per user, a popular list for new users, fold-in, ranking metrics.

    ./spark-submit.sh jobs/recommend.py --model DIR --dataset DIR --output DIR [--top-n 10]
        [--min-ratings N] [--users FILE] [--test probe|DIR|random:F|temporal:F] [--fold-in CSV]
        [--no-evaluate]

Writes OUTPUT/recommendations (user_idx, item_idx, score, rank), OUTPUT/recommendations_readable
(user_id, rank, item_id, title, score), OUTPUT/popular (items by shrunk mean and by model bias) and
OUTPUT/metrics.json (precision/recall/NDCG/MAP@k, coverage and mean popularity of the model, the
popular list and a random list on held-out rows; the fold-in result; time per stage).  For a person
at a terminal: ``python -m batchml.query --help``.
"""
from __future__ import annotations

import sys

from batchml.cli import job_parser, run_job


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--model", required=True, help="model dir written by jobs/factorize.py")
    parser.add_argument("--dataset", required=True, help="dataset dir the model was trained on")
    parser.add_argument("--output", required=True, help="output dir (replaced atomically)")
    parser.add_argument("--top-n", type=int, default=None, help="list length (recommend.top_n)")
    parser.add_argument("--min-ratings", type=int, default=None,
                        help="never recommend items with fewer ratings (recommend.min_ratings)")
    parser.add_argument("--users", default=None, metavar="FILE",
                        help="recommend only for these source user ids (one per line)")
    parser.add_argument("--test", default=None,
                        help="held-out rows for the ranking metrics: probe, a ratings dir, random:F "
                             "or temporal:F (default: the model's own test split, else probe)")
    parser.add_argument("--fold-in", default=None, metavar="CSV",
                        help="a new user's ratings (header item,rating; item = source id or title)")
    parser.add_argument("--no-evaluate", action="store_true", help="skip the ranking metrics")
    return parser


def flag_overrides(args) -> list[str]:
    """``--set``-style overrides for the job flags that shadow ``recommend.*`` settings."""
    out = []
    if args.top_n is not None:
        out.append(f"recommend.top_n={args.top_n}")
    if args.min_ratings is not None:
        out.append(f"recommend.min_ratings={args.min_ratings}")
    if args.no_evaluate:
        out.append("recommend.evaluate=false")
    return out


def run(spark, cfg, args) -> int:
    from batchml.cli import JobError
    from batchml.config import as_dict, build_config
    from batchml.recommend import RecommendError, format_metrics, run_recommend

    cfg = build_config(as_dict(cfg), flag_overrides(args))
    try:
        metrics = run_recommend(spark, cfg, model=args.model, dataset=args.dataset,
                                output=args.output, users_file=args.users, test=args.test,
                                fold_in_file=args.fold_in)
    except RecommendError as exc:
        raise JobError(str(exc)) from None
    print(format_metrics(metrics))
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-recommend")


if __name__ == "__main__":
    sys.exit(main())
