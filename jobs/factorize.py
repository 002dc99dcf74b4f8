"""Factorize a ratings dataset: biases + MLlib ALS, an RMSE table against every baseline, a model dir.

    ./spark-submit.sh jobs/factorize.py --dataset DIR --output DIR [--test probe|DIR|random:0.1|temporal:0.1|cutoff:0.1]
        [--rank 50] [--reg 0.03,0.1] [--iters 10] [--rounds 2] [--model biased|aligned]
        [--ground-truth DIR]

The test set is held out first (and checked to be absent from training by a join); rank and reg are
chosen on a validation split carved from the training data; the final models are re-fit on the whole
training set and scored once on the test set.  ``metrics.json`` in the output dir holds the table.
"""
from __future__ import annotations

import sys

from batchml.cli import Flag, job_parser, run_job

FLAGS = (
    Flag("--test", "factorize.test", "probe | random:F | temporal:F | cutoff:F (one global time cut-off) | a dataset or ratings dir"),
    Flag("--rank", "factorize.ranks", "rank or comma-separated rank grid"),
    Flag("--reg", "factorize.regs", "ALS reg or comma-separated reg grid"),
    Flag("--iters", "factorize.iters", "ALS iterations"),
    Flag("--rounds", "factorize.rounds", "the most bias/ALS alternation rounds (validation picks how many)"),
    Flag("--model", "factorize.model", "which model to save", choices=("biased", "aligned")),
)


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0], FLAGS)
    parser.add_argument("--dataset", required=True, help="dataset dir written by jobs/ingest.py")
    parser.add_argument("--output", required=True, help="model dir to write (replaced atomically)")
    parser.add_argument("--ground-truth", default=None,
                        help="ground_truth dir of a generated dump (default: DATASET/ground_truth "
                             "when present) for the RMSE floor")
    return parser


def run(spark, cfg, args) -> int:
    from batchml.factorize import format_table, run_factorize

    metrics = run_factorize(spark, cfg, dataset=args.dataset, output=args.output,
                            ground_truth=args.ground_truth)
    print(format_table(metrics))
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-factorize",
                   inputs=("dataset", "ground_truth"), outputs=("output",))


if __name__ == "__main__":
    sys.exit(main())
