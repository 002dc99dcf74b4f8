"""Similarity benchmark.

1. On ~1M generated ratings: our exact Jaccard top-20 (batchml.similarity, Spark; the shuffle path
   and the broadcast path) against a single-machine scipy.sparse reference (X^T X on the binary
   user x item matrix, the same top-20 with the same tie-break), in one run: the times, the ratios,
   and whether the outputs are identical.
2. Our job (jobs/similarity.py, default cap) on ~10M generated ratings in a subprocess: wall time,
   pairs generated (sum of n(n-1)/2 over users), user buckets and partial rows emitted by the
   partial XᵀX products, peak memory of the driver and its JVM / Python worker children (psutil).

    .venv/bin/python benchmarks/similarity.py [--small 1000000] [--big 10000000] [--skip-big]
    .venv/bin/python benchmarks/similarity.py --skip-small --job-dataset DIR [--exact]

Datasets are generated once with batchml.synth.model (power-law users) and kept under --workdir.
scipy is a main dependency (the partial products use it on the workers).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import measure  # noqa: E402

TOP_K = 20


def ensure_dataset(path: Path, n_ratings: int, seed: int = 42) -> tuple[Path, float]:
    """Generate a dataset dir of ``n_ratings`` (known model, power-law users) unless present."""
    from batchml.synth.model import default_sizes, draw_dates, draw_ratings, make_model, sample_pairs
    from batchml.synth.ratings_tables import write_dataset
    done = path / "_DONE"
    if done.exists():
        return path, 0.0
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n_users, n_items = default_sizes(n_ratings)
    model = make_model(n_users, n_items, 5, 0.5, rng)
    u, i = sample_pairs(n_ratings, n_users, n_items, rng)
    r = draw_ratings(model, u, i, rng)
    write_dataset(path, u, i, r, ts=draw_dates(n_ratings, rng), n_users=n_users, n_items=n_items)
    done.write_text("ok")
    return path, time.perf_counter() - t0


def scipy_jaccard_top_k(dataset: Path, k: int):
    """Reference: binary X (users x items), C = X^T X, J = C / (n_i + n_j - C), top-k per item by
    (J desc, other asc).  Returns arrays (item, other, similarity, co_count, rank)."""
    import pyarrow.parquet as pq
    import scipy.sparse as sp
    tbl = pq.read_table(dataset / "ratings", columns=["user_idx", "item_idx"])
    u = tbl.column("user_idx").to_numpy()
    i = tbl.column("item_idx").to_numpy()
    x = sp.csr_matrix((np.ones(len(u), dtype=np.int64), (u, i)),
                      shape=(int(u.max()) + 1, int(i.max()) + 1))
    c = (x.T @ x).tocoo()
    n = np.asarray(x.sum(axis=0)).ravel()
    off = c.row != c.col
    a, b, co = c.row[off], c.col[off], c.data[off]
    sim = co.astype(np.float64) / (n[a] + n[b] - co).astype(np.float64)
    order = np.lexsort((b, -sim, a))
    a, b, co, sim = a[order], b[order], co[order], sim[order]
    start = np.r_[0, np.flatnonzero(np.diff(a)) + 1]
    rank = np.arange(len(a)) - np.repeat(start, np.diff(np.r_[start, len(a)])) + 1
    keep = rank <= k
    return a[keep], b[keep], sim[keep], co[keep], rank[keep]


def _as_arrays(pdf):
    pdf = pdf.sort_values(["item_idx", "rank"]).reset_index(drop=True)
    return tuple(pdf[c].to_numpy() for c in ("item_idx", "other_idx", "similarity", "co_count",
                                             "rank"))


def _compare(ours, ref) -> dict:
    same_shape = len(ours[0]) == len(ref[0])
    identical = same_shape and all(np.array_equal(o, r) for o, r in zip(ours, ref))
    max_diff = float(np.max(np.abs(ours[2] - ref[2]))) if same_shape and len(ref[2]) else None
    return {"identical": bool(identical), "max_abs_similarity_diff": max_diff}


def part_one(dataset: Path, shuffle_partitions: int) -> dict:
    """Exact Jaccard top-K by both paths of ``similar_items`` (the shuffle of partial XᵀX sums and
    the broadcast of the ratings to item-block tasks) against the scipy reference."""
    from batchml.config import load_config
    from batchml.similarity.pipeline import similar_items
    from batchml.spark import build_session

    cfg = load_config(ROOT / "conf" / "local.yaml",
                      [f"spark.shuffle_partitions={shuffle_partitions}", "spark.log_level=ERROR"])
    spark = build_session(cfg.spark, app_name="bench-similarity")
    got, times = {}, {}
    try:
        for path in ("shuffle", "broadcast"):
            t0 = time.perf_counter()
            ratings = spark.read.parquet(str(dataset / "ratings"))
            pdf = similar_items(ratings, metric="jaccard", top_k=TOP_K,
                                broadcast=path == "broadcast").toPandas()
            times[path] = time.perf_counter() - t0
            got[path] = _as_arrays(pdf)
    finally:
        spark.stop()
    t0 = time.perf_counter()
    ref = scipy_jaccard_top_k(dataset, TOP_K)
    t_scipy = time.perf_counter() - t0
    out = {"rows": len(ref[0]), "scipy_s": round(t_scipy, 2)}
    for path in ("shuffle", "broadcast"):
        out[path] = {"spark_s": round(times[path], 2),
                     "ratio_spark_over_scipy": round(times[path] / t_scipy, 1),
                     **_compare(got[path], ref)}
    return out


def part_two(dataset: Path, output: Path, holdout: float, exact: bool = False) -> dict:
    cmd = [sys.executable, str(ROOT / "jobs" / "similarity.py"), "--dataset", str(dataset),
           "--output", str(output), "--set", f"similarity.holdout_fraction={holdout}",
           "--set", "spark.log_level=ERROR", *(["--exact"] if exact else [])]
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    log = output.parent / f"{output.name}.log"
    output.parent.mkdir(parents=True, exist_ok=True)
    run = measure(cmd, cwd=str(ROOT), env=env, log=log)
    wall, peak = run.wall, run.peak_rss
    if run.returncode != 0:
        return {"returncode": run.returncode, "wall_s": round(wall, 1),
                "tail": log.read_text(errors="replace")[-3000:]}
    m = json.loads((output / "metrics.json").read_text())
    s = m["similarity"]
    out = {"wall_s": round(wall, 1), "peak_rss_gib": round(peak / 2**30, 2),
           "max_items_per_user": s["max_items_per_user"], "users_capped": s["users_capped"],
           "ratings_dropped_by_cap": s["ratings_dropped_by_cap"],
           "pairs_without_cap": s["pairs_without_cap"], "pairs_generated": s["pairs_generated"],
           "pairs_method": s.get("pairs_method"), "item_blocks": s.get("item_blocks"),
           "user_buckets": s.get("user_buckets"), "partial_rows": s.get("partial_rows"),
           "distinct_pairs": s["distinct_pairs"], "pairs_after_min_support": s["pairs_after_min_support"],
           "rows": s["rows"], "timings_s": m["timings_s"]}
    if "evaluation" in m:
        out["rmse_item_cf"] = m["evaluation"]["item_cf"]["rmse"]
        out["rmse_global_mean"] = m["evaluation"]["global_mean"]["rmse"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--small", type=int, default=1_000_000, help="ratings for the scipy comparison")
    p.add_argument("--big", type=int, default=10_000_000, help="ratings for the job run")
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--skip-small", action="store_true")
    p.add_argument("--holdout", type=float, default=0.0,
                   help="similarity.holdout_fraction of the big run (0: no item-CF evaluation)")
    p.add_argument("--shuffle-partitions", type=int, default=16)
    p.add_argument("--job-dataset", help="run part 2 on this dataset dir instead of a generated one "
                   "(e.g. an ingested MovieLens ml-latest-small)")
    p.add_argument("--exact", action="store_true", help="part 2 with --exact (no cap, min_support 1)")
    p.add_argument("--workdir", default=str(ROOT / "data" / "bench" / "similarity"))
    args = p.parse_args(argv)
    work = Path(args.workdir)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}", flush=True)
    if not args.skip_small:
        ds, gen = ensure_dataset(work / f"ds{args.small}", args.small)
        print(f"[1] dataset {args.small:,} ratings ({'generated in %.0fs' % gen if gen else 'cached'})",
              flush=True)
        r = part_one(ds, args.shuffle_partitions)
        print(f"[1] exact Jaccard top-{TOP_K} on {args.small:,} ratings: {r['rows']:,} rows", flush=True)
        print(f"    scipy.sparse X^T X       : {r['scipy_s']:8.2f} s  (read + matmul + top-K)")
        for path in ("shuffle", "broadcast"):
            p = r[path]
            print(f"    batchml {path:9s} path : {p['spark_s']:8.2f} s  ({p['ratio_spark_over_scipy']}x "
                  f"scipy; read + top-K + collect); identical (item, other, similarity bit-for-bit, "
                  f"co_count, rank): {p['identical']}  max |diff| {p['max_abs_similarity_diff']}",
                  flush=True)
    if args.job_dataset:
        r = part_two(Path(args.job_dataset), work / "out_job_dataset", args.holdout, args.exact)
        print(f"[2] jobs/similarity.py on {args.job_dataset} (exact {args.exact}, holdout "
              f"{args.holdout}; wall includes the JVM start):")
        print(json.dumps(r, indent=2), flush=True)
    elif not args.skip_big:
        ds, gen = ensure_dataset(work / f"ds{args.big}", args.big)
        print(f"[2] dataset {args.big:,} ratings ({'generated in %.0fs' % gen if gen else 'cached'})",
              flush=True)
        r = part_two(ds, work / f"out{args.big}", args.holdout, args.exact)
        print(f"[2] jobs/similarity.py on {args.big:,} ratings (exact {args.exact}, holdout {args.holdout}):")
        print(json.dumps(r, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
