"""Top-N for every user: our blocked scorer against MLlib ``ALSModel.recommendForAllUsers``.

    .venv/bin/python benchmarks/recommend.py [--ratings 10000000] [--rank 50] [--n 10]
        [--block 1024] [--set spark.driver_memory=8g ...]

Shape from the rating count as the generators do (10M ratings: ~50k users x ~4.7k items).  Factors
come from an MLlib ALS of that rank trained with maxIter=1 on a cover set (every user and every
item rated once: fast, and the factor matrices have the full size); the 10M generated ratings are
only the "seen" items our job leaves out.  Both runs use the same factors in one Spark session:
MLlib ranks by p.q; ours by mu + b_u + b_i + p.q (biases generated) and excludes each user's rated
items.  Prints both times and the ratio (target <= 1.5), ours without exclusion, and the agreement
of the two top-N lists on a user sample when ours is run without biases or exclusion.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_ratings(out: Path, n_ratings: int, seed: int) -> tuple[Path, int, int]:
    """Generated (user, item, rating) Parquet of the Netflix-like shape; cached by a tag file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from batchml.synth.model import default_sizes, draw_ratings, make_model, sample_pairs

    n_users, n_items = default_sizes(n_ratings)
    tag = out / "_bench.json"
    want = {"n_ratings": n_ratings, "seed": seed, "n_users": n_users, "n_items": n_items}
    if tag.is_file() and json.loads(tag.read_text()) == want:
        return out, n_users, n_items
    rng = np.random.default_rng(seed)
    model = make_model(n_users, n_items, 5, 0.5, rng)
    u, i = sample_pairs(n_ratings, n_users, n_items, rng)
    r = draw_ratings(model, u, i, rng)
    out.mkdir(parents=True, exist_ok=True)
    step = 2_000_000
    for k in range(0, n_ratings, step):
        pq.write_table(pa.table({"user_idx": pa.array(u[k:k + step], pa.int32()),
                                 "item_idx": pa.array(i[k:k + step], pa.int32()),
                                 "rating": pa.array(r[k:k + step].astype(np.float32))}),
                       out / f"part-{k // step:05d}.parquet")
    tag.write_text(json.dumps(want))
    return out, n_users, n_items


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--ratings", type=int, default=10_000_000)
    parser.add_argument("--rank", type=int, default=50)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--block", type=int, default=1024, help="users per numpy block")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sample-users", type=int, default=500, help="users in the agreement check")
    parser.add_argument("--data", default=str(ROOT / "data" / "bench"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    from batchml.config import load_config
    from batchml.logs import setup_logging
    from batchml.recommend.scoring import ItemArrays, top_n_per_user
    from batchml.spark import build_session

    setup_logging("WARNING")
    quiet = 'spark.extra={"spark.ui.showConsoleProgress": "false"}'
    cfg = load_config(None, [quiet, *args.overrides])
    t0 = time.perf_counter()
    path, n_users, n_items = make_ratings(Path(args.data) / f"recommend-{args.ratings}",
                                          args.ratings, args.seed)
    print(f"data: {args.ratings:,} ratings, {n_users:,} users x {n_items:,} items, rank {args.rank} "
          f"({time.perf_counter() - t0:.1f}s to generate or find)")
    spark = build_session(cfg.spark, app_name="bench-recommend")
    try:
        sc = spark.sparkContext
        print(f"spark: master {sc.master}, default parallelism {sc.defaultParallelism}")
        rng = np.random.default_rng(args.seed + 1)
        cover_u = np.arange(max(n_users, n_items)) % n_users
        cover_i = rng.permutation(max(n_users, n_items)) % n_items
        cover = spark.createDataFrame(
            [(int(a), int(b), float(c)) for a, b, c in
             zip(cover_u, cover_i, rng.integers(1, 6, len(cover_u)))],
            "user_idx int, item_idx int, rating float")
        t = time.perf_counter()
        als = ALS(rank=args.rank, maxIter=1, regParam=0.1, userCol="user_idx", itemCol="item_idx",
                  ratingCol="rating", seed=args.seed).fit(cover)
        user_f = als.userFactors.cache()
        item_f = als.itemFactors.cache()
        print(f"ALS (maxIter=1 on the {cover.count():,}-row cover set): {time.perf_counter() - t:.1f}s;"
              f" factors {user_f.count():,} users, {item_f.count():,} items")

        ratings = spark.read.parquet(str(path)).select("user_idx", "item_idx")
        b_u = rng.normal(0, 0.4, n_users)
        b_i = rng.normal(0, 0.5, n_items)
        bias_df = spark.createDataFrame([(k, float(v)) for k, v in enumerate(b_u)],
                                        "user_idx int, bias double")
        users = (user_f.select(F.col("id").alias("user_idx"), "features")
                 .join(bias_df, on="user_idx", how="left").cache())
        users.count()

        def item_arrays(with_bias: bool) -> ItemArrays:
            pdf = item_f.toPandas().sort_values("id")
            q = np.stack(pdf["features"].to_numpy()).astype(np.float32)
            off = 3.6 + (b_i[pdf["id"].to_numpy()] if with_bias else 0.0)
            return ItemArrays(idx=pdf["id"].to_numpy(np.int32),
                              offset=np.broadcast_to(off, len(pdf)).astype(np.float64), factors=q)

        parts = max(2 * sc.defaultParallelism, -(-n_users // 50_000))

        def ours(seen: bool, with_bias: bool, users_df=users):
            items = item_arrays(with_bias)   # collecting the item factors counts in our time
            u = users_df if with_bias else users_df.drop("bias")
            return top_n_per_user(u, items, n=args.n, seen_df=ratings if seen else None,
                                  block_size=args.block, partitions=parts)

        def noop(df) -> None:
            df.write.format("noop").mode("overwrite").save()

        # warm-up of both paths (JIT, Python workers) on a small user subset
        few = users.where(F.col("user_idx") < 2000)
        noop(als.recommendForUserSubset(few.select(F.col("user_idx")), args.n))
        noop(ours(True, True, few))

        t = time.perf_counter()
        noop(als.recommendForAllUsers(args.n))
        t_mllib = time.perf_counter() - t
        t = time.perf_counter()
        noop(ours(True, True))
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        noop(ours(False, True))
        t_plain = time.perf_counter() - t

        sample = users.select("user_idx").orderBy(F.rand(args.seed)).limit(args.sample_users).cache()
        theirs = {r["user_idx"]: [x["item_idx"] for x in r["recommendations"]] for r in
                  als.recommendForUserSubset(sample, args.n).collect()}
        mine = {}
        for r in ours(False, False, users.join(sample, on="user_idx", how="left_semi")) \
                .orderBy("user_idx", "rank").collect():
            mine.setdefault(r["user_idx"], []).append(r["item_idx"])
        same = np.mean([len(set(theirs[u]) & set(mine.get(u, []))) / args.n for u in theirs])

        print(f"\ntop-{args.n} for all {n_users:,} users x {n_items:,} items, rank {args.rank}:")
        rows = [("MLlib ALSModel.recommendForAllUsers", t_mllib, ""),
                (f"ours (biases + exclude {args.ratings:,} seen)", t_ours,
                 f"ratio ours/MLlib = {t_ours / t_mllib:.2f} (target <= 1.5)"),
                ("ours (biases, no exclusion)", t_plain, f"ratio = {t_plain / t_mllib:.2f}")]
        for label, secs, note in rows:
            print(f"  {label:<46} {secs:8.1f}s   {note}")
        print(f"  agreement with MLlib on {len(theirs)} users (no biases, no exclusion): "
              f"{same:.3f} of the top-{args.n} items shared")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
