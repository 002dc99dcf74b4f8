"""Similar items (or users) from a dataset dir: co-occurrence Jaccard, cosine or Pearson top-K.

    ./spark-submit.sh jobs/similarity.py --dataset DIR --output DIR [--metric jaccard|cosine|cosine_binary|pearson]
        [--top-k 20] [--min-support N] [--max-items-per-user N] [--exact] [--users]
        [--show TITLE] [--show-user USER_IDX]

Writes OUTPUT/similar_items (item_idx, other_idx, similarity, co_count, rank), OUTPUT/similar_items_readable
(with titles), or similar_users / similar_users_readable with --users, and OUTPUT/metrics.json (pairs
generated, users capped, the path taken (broadcast: item blocks; shuffle: user buckets and partial
rows of the partial XᵀX products), time per stage, and with --set similarity.holdout_fraction=F the
item-CF RMSE against the global mean on a held-out split).
"""
from __future__ import annotations

import sys

from batchml.cli import Flag, job_parser, run_job

FLAGS = (
    Flag("--metric", "similarity.metric", "similarity metric",
         choices=("jaccard", "cosine", "cosine_binary", "pearson")),
    Flag("--top-k", "similarity.top_k", "neighbours kept per item", metavar="N"),
    Flag("--min-support", "similarity.min_support", "minimum co-occurring users of a pair",
         metavar="N"),
    Flag("--max-items-per-user", "similarity.max_items_per_user", "per-user cap, 0 for none",
         metavar="N"),
    Flag("--exact", "similarity.exact", "no cap and min_support 1", const="true"),
    Flag("--users", "similarity.users", "user-user similarity instead of item-item", const="true"),
)


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0], FLAGS)
    parser.add_argument("--dataset", required=True, help="dataset dir written by the ingest job")
    parser.add_argument("--output", required=True, help="output dir (replaced atomically)")
    parser.add_argument("--show", action="append", default=[], metavar="TITLE",
                        help="print the most similar titles of the item with this title (repeatable)")
    parser.add_argument("--show-user", type=int, action="append", default=[], metavar="USER_IDX",
                        help="print 'because you liked X' recommendations for this user (repeatable)")
    parser.add_argument("--show-n", type=int, default=10, help="rows printed per --show/--show-user")
    return parser


def run(spark, cfg, args) -> int:
    from batchml.similarity.job import run_similarity

    result = run_similarity(spark, cfg, dataset=args.dataset, output=args.output, show=args.show,
                            show_user=args.show_user, show_n=args.show_n)
    print(result.text())
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-similarity",
                   inputs=("dataset",), outputs=("output",))


if __name__ == "__main__":
    sys.exit(main())
