"""Netflix raw-format parse vs spark.read.csv of the same ratings, then the full ingest job.

    .venv/bin/python benchmarks/ingest_netflix.py [--ratings 10000000] [--workdir data/bench]

(a) our raw parse (two passes, movie headers resolved, every field validated) to a DataFrame + count
(b) spark.read.csv of the same ratings pre-flattened to movie,user,rating,date + count (a bare
    count: Spark's CSV reader skips the field parsing when no column is used)
(b') the same typed CSV read, with every column parsed and checked (so the CSV side parses fields too)
Target (issue 14): (a)/(b') <= 1.3.  Then the full ingest job through spark-submit.sh: wall time,
ratings/s and peak RSS of the driver JVM + Python processes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]

from common import run_measured, timed  # noqa: E402
from batchml.schema import GROUND_TRUTH, TRUTH_FILE  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=int, default=10_000_000)
    ap.add_argument("--workdir", default=str(ROOT / "data" / "bench"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-job", action="store_true")
    ap.add_argument("--only-job", action="store_true",
                    help="generate if needed, then run only the full ingest job (no parse-vs-CSV comparison, "
                         "no pre-flattened copy: for Prize scale, --ratings 100000000)")
    args = ap.parse_args()

    from pyspark.sql import functions as F

    from batchml.config import load_config
    from batchml.io import netflix as NF
    from batchml.spark import build_session
    from batchml.synth.netflix import write_netflix_dump

    work = Path(args.workdir)
    raw = work / f"netflix-{args.ratings}"
    if not (raw / GROUND_TRUTH / TRUTH_FILE).exists():
        print(f"generating {args.ratings:,} ratings into {raw} ...", flush=True)
        t, _ = timed(write_netflix_dump, raw, n_ratings=args.ratings, seed=1)
        print(f"  generated in {t:.1f}s", flush=True)
    files = sorted(str(p) for p in raw.glob("combined_data_*.txt"))
    size = sum(os.path.getsize(f) for f in files)

    if args.only_job:
        return run_job(raw, work, args.ratings)

    cfg = load_config(None, ["spark.driver_memory=8g", "spark.log_level=ERROR"])
    spark = build_session(cfg.spark, app_name="bench-ingest-netflix")
    flat = work / f"netflix-{args.ratings}-flat.csv"
    if not (flat / "_SUCCESS").exists():
        print("pre-flattening to movie,user,rating,date CSV ...", flush=True)
        (NF.read_netflix_blocks(spark, files, NF.RATING_FIELDS).where("kind = 'data'")
         .select("movie_id", "user_id", "rating", "date").write.mode("overwrite").csv(str(flat)))

    schema = "movie int, user int, rating int, date date"

    def ours():
        return NF.read_netflix_blocks(spark, files, NF.RATING_FIELDS).where(F.col("kind") == "data").count()

    def csv_count():
        return spark.read.schema(schema).csv(str(flat)).count()

    def csv_parsed():
        df = spark.read.schema(schema).option("mode", "PERMISSIVE").csv(str(flat))
        return df.where(F.col("movie").isNotNull() & F.col("user").isNotNull() & F.col("rating").between(1, 5)
                        & F.col("date").isNotNull()).count()

    results = {"a": [], "b": [], "b2": []}
    for r in range(args.repeat):
        for key, fn in (("b", csv_count), ("b2", csv_parsed), ("a", ours)):
            t, n = timed(fn)
            results[key].append(t)
            print(f"run {r + 1}: {key:2s} {t:7.2f}s  rows={n:,}", flush=True)
            if key == "a":
                assert n == args.ratings, (n, args.ratings)
    spark.stop()
    a, b, b2 = (min(results[k]) for k in ("a", "b", "b2"))
    print(f"\ninput: {len(files)} files, {size / 1e6:.0f} MB, {args.ratings:,} ratings; best of {args.repeat}")
    print(f"(a)  our raw parse + count          {a:7.2f}s")
    print(f"(b)  spark.read.csv flat + count    {b:7.2f}s")
    print(f"(b') spark.read.csv + parse/check   {b2:7.2f}s")
    print(f"ratio (a)/(b)  = {a / b:.2f}")
    print(f"ratio (a)/(b') = {a / b2:.2f}   (target <= 1.3)")

    if not args.skip_job:
        return run_job(raw, work, args.ratings)
    return 0


def run_job(raw: Path, work: Path, n_ratings: int) -> int:
    """The full ingest job through spark-submit.sh: wall time, ratings/s, peak RSS."""
    out = work / f"netflix-{n_ratings}-dataset"
    env = dict(os.environ, BATCHML_DRIVER_MEMORY="8g")
    cmd = [str(ROOT / "spark-submit.sh"), "jobs/ingest.py", "--format", "netflix", "--input", str(raw),
           "--output", str(out), "--remove-probe", "--log-level", "WARNING"]
    wall, peak, proc = run_measured(cmd, cwd=ROOT, env=env)
    if proc.returncode != 0:
        print(proc.stdout[-3000:])
        return 1
    stats = json.loads((out / "_stats.json").read_text())
    print(f"\nfull ingest job (spark-submit.sh, local[*]): wall {wall:.1f}s, "
          f"{n_ratings / wall:,.0f} ratings/s, peak RSS driver+JVM {peak / 2**30:.2f} GiB")
    print("  stage timings:", json.dumps(stats["timings_s"]))
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
