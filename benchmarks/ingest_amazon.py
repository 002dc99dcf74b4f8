"""Amazon review TSV ingest vs a plain CSV read of the same files, in one Spark session.

    .venv/bin/python benchmarks/ingest_amazon.py [--reviews 5000000] [--workdir data/bench]

Generates (once) ``--reviews`` reviews as gzipped per-category TSV files, then times
(a)  our TSV parse (text read, tab split, every field validated) + count of accepted lines
(b)  spark.read.csv(sep='\\t', quote='', header=True) + count      -- the floor: Spark's CSV count
     parses no field at all, it only splits lines
(b') the same CSV read with a typed schema and a filter on the fields we validate (ids, rating 1..5,
     votes, Y/N flag, date): the CSV machinery doing comparable parsing work
(c)  the full ingest (parse, stage, de-duplicate, dense ids, write ratings/users/items/rejects, stats)
and prints each, the ratios (a)/(b) and (c)/(b), and the peak RSS of this process tree (driver Python
plus the Spark JVM) over the whole run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]

from common import timed, tree_rss  # noqa: E402
from batchml.schema import GROUND_TRUTH, TRUTH_FILE  # noqa: E402


class PeakRss:
    """Poll the RSS of this process and its children (the JVM) in a thread."""

    def __init__(self, interval: float = 0.25):
        self.peak, self.interval = 0, interval
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


CSV_SCHEMA = ("marketplace string, customer_id string, review_id string, product_id string, "
              "product_parent string, product_title string, product_category string, star_rating int, "
              "helpful_votes int, total_votes int, vine string, verified_purchase string, "
              "review_headline string, review_body string, review_date date")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reviews", type=int, default=5_000_000)
    ap.add_argument("--workdir", default=str(ROOT / "data" / "bench"))
    ap.add_argument("--driver-memory", default="8g")
    args = ap.parse_args()

    from pyspark.sql import functions as F

    from batchml.config import load_config
    from batchml.ingest import ingest
    from batchml.io.amazon import read_amazon_tsv
    from batchml.logs import setup_logging
    from batchml.spark import build_session
    from batchml.synth.amazon import write_amazon_tsv_dump

    setup_logging("WARNING")
    work = Path(args.workdir)
    raw = work / f"amazon-tsv-{args.reviews}"
    if not (raw / GROUND_TRUTH / TRUTH_FILE).exists():
        print(f"generating {args.reviews:,} reviews into {raw} ...", flush=True)
        t, _ = timed(write_amazon_tsv_dump, raw, n_reviews=args.reviews, seed=1, gz=True, plant=max(1, min(20, args.reviews // 250_000)),
                     duplicates=1000)
        print(f"  generated in {t:.1f}s", flush=True)
    files = sorted(str(p) for p in raw.glob("amazon_reviews_us_*.tsv.gz"))
    size = sum(os.path.getsize(f) for f in files)

    cfg = load_config(None, [f"spark.driver_memory={args.driver_memory}", "spark.log_level=ERROR"])
    with PeakRss() as mem:
        spark = build_session(cfg.spark, app_name="bench-ingest-amazon")

        def ours_parse():
            return read_amazon_tsv(spark, files).where(F.col("kind") == "data").count()

        def csv_count():
            return (spark.read.option("sep", "\t").option("quote", "").option("header", "true")
                    .csv(files).count())

        def csv_parsed():
            df = (spark.read.schema(CSV_SCHEMA).option("sep", "\t").option("quote", "").option("header", "true")
                  .option("mode", "PERMISSIVE").option("dateFormat", "yyyy-MM-dd").csv(files))
            return df.where(F.col("customer_id").rlike("^[0-9]+$") & F.col("product_id").rlike("^[0-9A-Za-z]+$")
                            & F.col("star_rating").between(1, 5) & F.col("helpful_votes").isNotNull()
                            & F.col("total_votes").isNotNull() & F.col("verified_purchase").isin("Y", "N")
                            & F.col("review_date").isNotNull()).count()

        out = work / f"amazon-tsv-{args.reviews}-dataset"
        t_b, n_b = timed(csv_count)
        print(f"(b) csv read + count          {t_b:7.1f}s  rows={n_b:,}", flush=True)
        t_b2, n_b2 = timed(csv_parsed)
        print(f"(b') csv typed + filter       {t_b2:7.1f}s  rows={n_b2:,}", flush=True)
        t_a, n_a = timed(ours_parse)
        print(f"(a) our parse + count         {t_a:7.1f}s  rows={n_a:,}", flush=True)
        t_c, res = timed(ingest, spark, cfg, "amazon-tsv", str(raw), str(out))
        print(f"(c) full ingest               {t_c:7.1f}s  ratings={res.stats['ratings']:,}", flush=True)
        spark.stop()
    s = res.stats
    print(f"\ninput: {len(files)} gz files, {size / 1e6:.0f} MB compressed, {args.reviews:,} reviews "
          f"(+ planted rejects, duplicates, blank lines)")
    print(f"(a)  our TSV parse + count               {t_a:7.1f}s")
    print(f"(b)  spark.read.csv(sep='\\t', quote='')  {t_b:7.1f}s   (no validation; counts every non-empty line)")
    print(f"(b') spark.read.csv typed + filter       {t_b2:7.1f}s")
    print(f"(c)  full ingest job                     {t_c:7.1f}s   ({args.reviews / t_c:,.0f} reviews/s)")
    print(f"ratio (a)/(b) = {t_a / t_b:.2f}   ratio (a)/(b') = {t_a / t_b2:.2f}   ratio (c)/(b) = {t_c / t_b:.2f}")
    print(f"peak RSS (driver Python + JVM): {mem.peak / 2**30:.2f} GiB")
    print(f"ingest: {s['ratings']:,} ratings, {s['users']:,} users, {s['items']:,} items, "
          f"{s['duplicates_dropped']:,} duplicates dropped, rejects {s['reconcile']['rejected_by_reason']}")
    print("stage timings:", s["timings_s"])
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
