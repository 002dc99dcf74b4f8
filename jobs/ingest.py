"""Ingest a raw ratings dump into a dataset dir (Parquet ratings, users, items, rejects, _stats.json).

    ./spark-submit.sh jobs/ingest.py --format netflix --input DIR --output DIR [--remove-probe]
"""
from __future__ import annotations

import json
import sys

from batchml.cli import Flag, job_parser, run_job
from batchml.ingest import ingest
from batchml.io.readers import FORMATS

FLAGS = (
    Flag("--remove-probe", "ingest.remove_probe",
         "drop Netflix probe pairs from the training ratings", const="true"),
)


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0], FLAGS)
    parser.add_argument("--format", required=True, choices=FORMATS, help="input dump format")
    parser.add_argument("--input", required=True, help="directory holding the raw dump")
    parser.add_argument("--output", required=True, help="dataset directory to write (replaced atomically)")
    return parser


def run(spark, cfg, args) -> int:
    result = ingest(spark, cfg, args.format, args.input, args.output)
    s = result.stats
    print(json.dumps({k: s[k] for k in ("ratings", "users", "items", "mean_rating", "rating_histogram",
                                         "date_range", "duplicates_dropped", "reconcile", "timings_s")},
                     indent=2))
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-ingest",
                   inputs=("input",), outputs=("output",))


if __name__ == "__main__":
    sys.exit(main())
