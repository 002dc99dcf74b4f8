"""Generate a synthetic dump in a real dump's exact format, with its ground truth saved beside it.

    python jobs/generate.py --format netflix --output DIR [--ratings N] [--seed S] [--layout combined|training_set] [--gzip] [--plant K]
"""
from __future__ import annotations

import json
import sys

from batchml.cli import job_parser, run_job

FORMATS = ("netflix",)


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", required=True, help="directory to write the raw files into")
    parser.add_argument("--ratings", type=int, default=None, help="number of ratings (generate.ratings)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (generate.seed)")
    parser.add_argument("--layout", default="combined", choices=("combined", "training_set"),
                        help="combined_data_1..4.txt or training_set/mv_*.txt")
    parser.add_argument("--gzip", action="store_true", help="gzip the ratings files")
    parser.add_argument("--plant", type=int, default=0,
                        help="plant this many broken lines of each reject kind")
    return parser


def run(spark, cfg, args) -> int:
    from batchml.synth.netflix import write_netflix_dump
    g = cfg.generate
    dump = write_netflix_dump(
        args.output, n_ratings=args.ratings or g.ratings, seed=g.seed if args.seed is None else args.seed,
        n_users=g.users, n_items=g.items, rank=g.rank, noise=g.noise, probe_fraction=g.probe_fraction,
        layout=args.layout, gz=args.gzip, plant=args.plant)
    t = dump.truth
    print(json.dumps({k: t[k] for k in ("n_ratings", "n_users", "n_items", "n_probe", "n_qualifying",
                                         "noise_sigma", "probe_rmse_true_model", "planted_rejects")},
                     indent=2))
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-generate", needs_spark=False)


if __name__ == "__main__":
    sys.exit(main())
