"""Recommend from a factor model: top-N per user, a popular list for new users, fold-in, ranking metrics.

    ./spark-submit.sh jobs/recommend.py --model DIR --dataset DIR --output DIR [--top-n 10]
        [--min-ratings N] [--users FILE] [--test probe|DIR|random:F|temporal:F|cutoff:F] [--fold-in CSV]
        [--no-evaluate]

Writes OUTPUT/recommendations (user_idx, item_idx, score, rank), OUTPUT/recommendations_readable
(user_id, rank, item_id, title, score), OUTPUT/popular (items by shrunk mean and by model bias) and
OUTPUT/metrics.json (precision/recall/NDCG/MAP@k, coverage and mean popularity of the model, the
popular list and a random list on held-out rows; the fold-in result; time per stage).  For a person
at a terminal: ``python -m batchml.query --help``.
"""
from __future__ import annotations

import sys

from batchml.cli import Flag, job_parser, run_job

FLAGS = (
    Flag("--top-n", "recommend.top_n", "list length"),
    Flag("--min-ratings", "recommend.min_ratings", "never recommend items with fewer ratings"),
    Flag("--no-evaluate", "recommend.evaluate", "skip the ranking metrics", const="false"),
)


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0], FLAGS)
    parser.add_argument("--model", required=True, help="model dir written by jobs/factorize.py")
    parser.add_argument("--dataset", required=True, help="dataset dir the model was trained on")
    parser.add_argument("--output", required=True, help="output dir (replaced atomically)")
    parser.add_argument("--users", default=None, metavar="FILE",
                        help="recommend only for these source user ids (one per line)")
    parser.add_argument("--test", default=None,
                        help="held-out rows for the ranking metrics: probe, a ratings dir, random:F "
                             "temporal:F or cutoff:F (default: the model's own test split, else probe)")
    parser.add_argument("--fold-in", default=None, metavar="CSV",
                        help="a new user's ratings (header item,rating; item = source id or title)")
    return parser


def run(spark, cfg, args) -> int:
    from batchml.recommend.job import format_metrics, run_recommend

    metrics = run_recommend(spark, cfg, model=args.model, dataset=args.dataset, output=args.output,
                            users_file=args.users, test=args.test, fold_in_file=args.fold_in)
    print(format_metrics(metrics))
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-recommend",
                   inputs=("model", "dataset", "users", "fold_in"), outputs=("output",))


if __name__ == "__main__":
    sys.exit(main())
