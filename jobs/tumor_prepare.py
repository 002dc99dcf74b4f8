"""Prepare brain MRI scans: class folders -> de-duplicated, split, decoded Parquet image shards.

    ./spark-submit.sh jobs/tumor_prepare.py --input DIR --output DIR [--size 128] [--test-fraction 0.33]

Every file under INPUT is read (names Spark hides, ``_x``/``.x``, included) or counted with a reason.
Scans are cropped to the head and normalized; near-duplicates (perceptual hash) share a group that
never straddles a split.  Writes OUTPUT/images (Parquet, partitioned by split=train|validation|test),
OUTPUT/rejects and OUTPUT/_stats.json.
"""
from __future__ import annotations

import json
import sys

from batchml.cli import Flag, job_parser, run_job

FLAGS = (
    Flag("--size", "tumor.size", "side in px of the square scans"),
    Flag("--test-fraction", "tumor.test_fraction", "fraction of distinct images per class in the test split"),
)


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0], FLAGS)
    parser.add_argument("--input", required=True, help="directory of class folders (yes/, no/, ...)")
    parser.add_argument("--output", required=True, help="dataset directory to write (replaced atomically)")
    return parser


def run(spark, cfg, args) -> int:
    from batchml.tumor.prepare import prepare_images
    result = prepare_images(spark, cfg.tumor, args.input, args.output)
    s = result.stats
    print(json.dumps({k: s[k] for k in ("files_listed", "files_read", "hidden_names_read", "accepted",
                                         "duplicates_removed", "rejected", "rejected_by_reason", "by_class",
                                         "by_split", "near_duplicates", "reconcile", "timings_s")}, indent=2))
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-tumor-prepare",
                   inputs=("input",), outputs=("output",))


if __name__ == "__main__":
    sys.exit(main())
