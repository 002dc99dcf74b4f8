"""Train the tumor CNN with distributed TensorFlow on Spark and report BER on the test split.

    ./spark-submit.sh jobs/tumor_train.py --data DIR --output DIR [--workers 2] [--epochs N] [--batch-size 64]

DATA is a directory written by jobs/tumor_prepare.py.  OUTPUT gets checkpoints/ (a re-run of the same
data and settings resumes; other data or settings are refused), model.keras (the epoch with the best
validation BER), predictions/ (Parquet), metrics.json (test scored once, at the threshold chosen on
validation) and test_grid.png.
"""
from __future__ import annotations

import json
import sys

from batchml.cli import Flag, job_parser, run_job

FLAGS = (
    Flag("--workers", "tumor.workers", "TensorFlow workers = barrier tasks"),
    Flag("--epochs", "tumor.epochs", "total epochs"),
    Flag("--batch-size", "tumor.batch_size", "batch per worker"),
)


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0], FLAGS)
    parser.add_argument("--data", required=True, help="image shards written by tumor_prepare")
    parser.add_argument("--output", required=True, help="model directory (checkpoints, model, metrics)")
    return parser


def run(spark, cfg, args) -> int:
    from batchml.tumor.train import train_and_evaluate

    m = train_and_evaluate(spark, cfg.tumor, args.data, args.output)
    print(json.dumps({k: m[k] for k in ("ber", "accuracy", "roc_auc", "threshold", "threshold_from", "confusion",
                                         "workers", "start_epoch", "epochs", "best_epoch", "images_per_s",
                                         "timings_s")}, indent=2))
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-tumor-train",
                   inputs=("data",), local_outputs=("output",))


if __name__ == "__main__":
    sys.exit(main())
