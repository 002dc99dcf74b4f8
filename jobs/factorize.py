"""Factorize a ratings dataset: biases + MLlib ALS, an RMSE table against every baseline, a model dir.

    ./spark-submit.sh jobs/factorize.py --dataset DIR --output DIR [--test probe|DIR|random:0.1|temporal:0.1]
        [--rank 50] [--reg 0.03,0.1] [--iters 10] [--rounds 2] [--model biased|aligned]
        [--ground-truth DIR]

The test set is held out first (and checked to be absent from training by a join); rank and reg are
chosen on a validation split carved from the training data; the final models are re-fit on the whole
training set and scored once on the test set.  ``metrics.json`` in the output dir holds the table.
"""
from __future__ import annotations

import sys

from batchml.cli import job_parser, run_job


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset dir written by jobs/ingest.py")
    parser.add_argument("--output", required=True, help="model dir to write (replaced atomically)")
    parser.add_argument("--test", default=None,
                        help="probe | random:F | temporal:F | a ratings dir (factorize.test)")
    parser.add_argument("--rank", default=None,
                        help="rank or comma-separated rank grid (factorize.ranks)")
    parser.add_argument("--reg", default=None,
                        help="ALS reg or comma-separated reg grid (factorize.regs)")
    parser.add_argument("--iters", type=int, default=None, help="ALS iterations (factorize.iters)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="bias/ALS alternation rounds (factorize.rounds)")
    parser.add_argument("--model", default=None, choices=("biased", "aligned"),
                        help="which model to save (factorize.model)")
    parser.add_argument("--ground-truth", default=None,
                        help="ground_truth dir of a generated dump (default: DATASET/ground_truth "
                             "when present) for the RMSE floor")
    return parser


def flag_overrides(args) -> list[str]:
    """``--set``-style overrides for the job flags that shadow ``factorize.*`` settings."""
    out = []
    if args.test is not None:
        out.append(f"factorize.test={args.test}")
    if args.rank is not None:
        out.append(f"factorize.ranks=[{args.rank}]")
    if args.reg is not None:
        out.append(f"factorize.regs=[{args.reg}]")
    if args.iters is not None:
        out.append(f"factorize.iters={args.iters}")
    if args.rounds is not None:
        out.append(f"factorize.rounds={args.rounds}")
    if args.model is not None:
        out.append(f"factorize.model={args.model}")
    return out


def run(spark, cfg, args) -> int:
    from batchml.cli import JobError
    from batchml.config import as_dict, build_config
    from batchml.factorize import FactorizeError, format_table, run_factorize

    cfg = build_config(as_dict(cfg), flag_overrides(args))
    try:
        metrics = run_factorize(spark, cfg, dataset=args.dataset, output=args.output,
                                ground_truth=args.ground_truth)
    except FactorizeError as exc:
        raise JobError(str(exc)) from None
    print(format_table(metrics))
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-factorize")


if __name__ == "__main__":
    sys.exit(main())
