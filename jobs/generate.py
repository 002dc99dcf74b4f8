"""Generate a synthetic dump in a real dump's exact format, with its ground truth saved beside it.

    python jobs/generate.py --format netflix --output DIR [--ratings N] [--seed S] [--layout combined|training_set] [--gzip] [--plant K] [--taste T]
    python jobs/generate.py --format netflix-csv|amazon-tsv|amazon-json|movielens --output DIR [--ratings N] [--plant K] [--duplicates D] [--gzip]
        [--variant 100k|dat|csv]  (movielens)   [--categories Books,Music,...]  (amazon-tsv)
"""
from __future__ import annotations

import json
import sys

from batchml.cli import Flag, job_parser, run_job
from batchml.errors import ConfigError
from batchml.io.readers import FORMATS



FLAGS = (
    Flag("--ratings", "generate.ratings", "number of ratings"),
    Flag("--seed", "generate.seed", "random seed"),
    Flag("--taste", "generate.taste", "netflix, netflix-csv, movielens: users mostly rate items they "
         "like (pair kept with probability sigmoid(T * z), z the standardized p_u.q_i; 0 = at random)"),
)


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0], FLAGS)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", required=True, help="directory to write the raw files into")
    parser.add_argument("--layout", default="combined", choices=("combined", "training_set"),
                        help="netflix: combined_data_1..4.txt or training_set/mv_*.txt")
    parser.add_argument("--gzip", action="store_true", help="gzip the ratings files")
    parser.add_argument("--plant", type=int, default=0,
                        help="plant this many broken lines of each reject kind")
    parser.add_argument("--duplicates", type=int, default=0,
                        help="non-netflix formats: extra lines repeating a (user, item) pair")
    parser.add_argument("--variant", default="100k", choices=("100k", "dat", "csv"),
                        help="movielens: u.data+u.item, ratings.dat+movies.dat or ratings.csv+movies.csv")
    parser.add_argument("--categories", default=None,
                        help="amazon-tsv: comma-separated category names, one file each")
    return parser


def run(spark, cfg, args) -> int:
    g = cfg.generate
    n, seed, taste = g.ratings, g.seed, g.taste
    if taste and args.format.startswith("amazon"):
        raise ConfigError("--taste applies to netflix, netflix-csv and movielens, not amazon formats")
    if args.format == "netflix":
        from batchml.synth.netflix import write_netflix_dump
        dump = write_netflix_dump(
            args.output, n_ratings=n, seed=seed, n_users=g.users, n_items=g.items, rank=g.rank, noise=g.noise,
            probe_fraction=g.probe_fraction, layout=args.layout, gz=args.gzip, plant=args.plant,
            taste=taste)
        t = dump.truth
        print(json.dumps({k: t[k] for k in ("n_ratings", "n_users", "n_items", "n_probe", "n_qualifying",
                                             "noise_sigma", "probe_rmse_true_model", "planted_rejects")},
                         indent=2))
        return 0
    common = dict(seed=seed, plant=args.plant, duplicates=args.duplicates)
    if args.format == "netflix-csv":
        from batchml.synth.netflix_csv import write_netflix_csv_dump
        dump = write_netflix_csv_dump(args.output, n, gz=args.gzip, taste=taste, **common)
    elif args.format == "movielens":
        from batchml.synth.movielens import write_movielens_dump
        dump = write_movielens_dump(args.output, n, variant=args.variant, gz=args.gzip,
                                    taste=taste, **common)
    elif args.format == "amazon-tsv":
        from batchml.synth.amazon import CATEGORIES, write_amazon_tsv_dump
        cats = tuple(args.categories.split(",")) if args.categories else CATEGORIES
        dump = write_amazon_tsv_dump(args.output, n, categories=cats, gz=args.gzip, **common)
    else:
        from batchml.synth.amazon import write_amazon_json_dump
        dump = write_amazon_json_dump(args.output, max(1, n // 3), **common)
    print(json.dumps({"files": dump.files, "n_ratings": dump.n_ratings, "planted_rejects": dump.planted,
                      "duplicates": dump.duplicates, "blank": dump.blank}, indent=2))
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-generate", needs_spark=False,
                   outputs=("output",))


if __name__ == "__main__":
    sys.exit(main())
