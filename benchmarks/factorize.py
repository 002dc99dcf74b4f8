"""Factorization benchmark on generated data with known noise (default 2M ratings).

    .venv/bin/python benchmarks/factorize.py [--ratings 2000000] [--rank 5,10,20,50]
        [--regs 0.01,0.02,0.05,0.1] [--iters 10] [--rounds 2] [--test probe] [--no-surprise]

One run of the factorize pipeline (:func:`batchml.factorize.run_factorize`) prints every RMSE-table
row, the ground-truth floor and ALS+bias RMSE / floor (target <= 1.03); the fit time of ALS+bias
(biases + ALS, first round) against plain MLlib ALS with the same rank and iterations (target ratio
<= 1.5); and, on the same train/test rows, scikit-surprise ``SVD`` and ``BaselineOnly`` (the
``bench`` extra; skipped with a message when it is not installed).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_dataset(out: Path, n_ratings: int, seed: int, noise: float, rank: int) -> Path:
    from batchml.synth.model import default_sizes, draw_dates, draw_ratings, make_model, sample_pairs
    from batchml.synth.ratings_tables import write_dataset

    tag = out / "_bench.json"
    want = {"n_ratings": n_ratings, "seed": seed, "noise": noise, "rank": rank}
    if tag.is_file() and json.loads(tag.read_text()) == want:
        return out
    rng = np.random.default_rng(seed)
    n_users, n_items = default_sizes(n_ratings)
    model = make_model(n_users, n_items, rank, noise, rng)
    u, i = sample_pairs(n_ratings, n_users, n_items, rng)
    r = draw_ratings(model, u, i, rng)
    ts = draw_dates(n_ratings, rng)
    probe = np.sort(rng.choice(n_ratings, size=n_ratings // 50, replace=False))
    write_dataset(out, u, i, r, ts=ts, model=model, probe=probe)
    tag.write_text(json.dumps(want))
    return out


def surprise_rows(spark, cfg, dataset: str, scale: tuple[float, float]) -> list[tuple[str, float, float, float]]:
    """(name, rmse, fit seconds, predict seconds) of surprise SVD and BaselineOnly on the same split."""
    try:
        from surprise import SVD, BaselineOnly, Dataset, Reader
    except ImportError as exc:  # the bench extra is optional
        print(f"scikit-surprise not available ({exc}); skipping its rows")
        return []
    from batchml.ratings import read_test_split
    from batchml.schema import ITEM_COL, RATING_COL, RATINGS, USER_COL

    ratings = spark.read.parquet(f"{dataset}/{RATINGS}").select(USER_COL, ITEM_COL, RATING_COL)
    split = read_test_split(spark, ratings, dataset=dataset, spec=cfg.factorize.test,
                            seed=cfg.factorize.seed)
    train, test = split.train, split.test
    train_pd = train.toPandas()
    test_pd = test.select(USER_COL, ITEM_COL, RATING_COL).toPandas()
    s = cfg.factorize
    reader = Reader(rating_scale=tuple(scale))
    trainset = Dataset.load_from_df(train_pd[[USER_COL, ITEM_COL, RATING_COL]], reader).build_full_trainset()
    testset = list(zip(test_pd[USER_COL], test_pd[ITEM_COL], test_pd[RATING_COL].astype(float)))
    rows = []
    for name, algo in (("surprise SVD (defaults)", SVD(random_state=s.seed)),
                       ("surprise BaselineOnly", BaselineOnly(verbose=False))):
        t0 = time.perf_counter()
        algo.fit(trainset)
        t1 = time.perf_counter()
        preds = algo.test(testset)
        t2 = time.perf_counter()
        err = np.array([p.est - p.r_ui for p in preds])
        rows.append((name, float(math.sqrt(np.mean(err ** 2))), t1 - t0, t2 - t1))
    return rows


def fit_timing(spark, cfg, dataset: str, rank: int, reg: float, *, bias_regs: tuple[float, float],
               scale: tuple[float, float], repeats: int = 3) -> dict:
    """Back-to-back fit times on the same training split, same rank, reg and iterations:
    ALS+bias (biases + ALS on the residuals, one round) against plain MLlib ALS; the best of
    ``repeats`` alternating runs of each."""
    from batchml.bias import RESIDUAL_COL, fit_biases, with_bias_residual
    from batchml.factor_fit import fit_als, fit_plain_als
    from batchml.ratings import read_test_split
    from batchml.schema import RATINGS

    s = cfg.factorize
    ratings = spark.read.parquet(f"{dataset}/{RATINGS}")
    train = read_test_split(spark, ratings, dataset=dataset, spec=s.test, seed=s.seed).train
    train = train.cache()
    train.count()
    common = dict(rank=rank, reg=reg, iters=s.iters, seed=s.seed,
                  checkpoint_interval=s.checkpoint_interval, blocks=s.als_blocks)
    best = {"plain_als": float("inf"), "als_bias": float("inf")}
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = fit_plain_als(train, rating_min=scale[0], rating_max=scale[1], **common)
        best["plain_als"] = min(best["plain_als"], time.perf_counter() - t0)
        m.unpersist()
        t0 = time.perf_counter()
        b = fit_biases(train, reg_user=bias_regs[0], reg_item=bias_regs[1], sweeps=s.bias_sweeps,
                       tol=s.bias_tol)
        resid = with_bias_residual(train, b, col_out=RESIDUAL_COL)  # as fit_als_biased: not cached
        uf, itf, _, _ = fit_als(resid, col_target=RESIDUAL_COL, **common)
        best["als_bias"] = min(best["als_bias"], time.perf_counter() - t0)
        uf.unpersist()
        itf.unpersist()
    train.unpersist()
    return best


def timing_line(cfg, rank: int, reg: float, ft: dict) -> str:
    return (f"fit time back to back, rank {rank}, reg {reg:g}, {cfg.factorize.iters} iterations, "
            f"at most {cfg.factorize.bias_sweeps} bias sweeps (best of 3): ALS+bias (one round) "
            f"{ft['als_bias']:.1f}s vs plain MLlib ALS {ft['plain_als']:.1f}s: ratio "
            f"{ft['als_bias'] / ft['plain_als']:.2f}  (target <= 1.5)")


def print_report(args, cfg, metrics: dict, wall: float, timing: dict, sk: list) -> None:
    """The RMSE table, the floor ratio, the fit times and the surprise rows."""
    from batchml.factorize import format_table

    c = metrics["chosen"]
    print()
    print(f"== factorize benchmark: {args.ratings:,} generated ratings, noise sd {args.noise}, "
          f"true rank {args.true_rank}; pipeline wall time {wall:.0f}s")
    print(format_table(metrics))
    floor = metrics["floor"]["rmse"]
    ab = metrics["table"]["als_bias"]["rmse"]
    print(f"ALS+bias RMSE / floor = {ab:.4f} / {floor:.4f} = {ab / floor:.4f}  (target <= 1.03)")
    f = metrics["fit_seconds"]
    print(f"pipeline fit times, rank {c['rank']}, {c['iters']} iterations: ALS+bias round 1 "
          f"(biases + ALS) {f['als_bias_round1']:.1f}s, all {c['max_rounds']} rounds "
          f"{f['als_bias_all_rounds']:.1f}s; plain MLlib ALS {f['plain_als']:.1f}s "
          f"(ratio round 1 {f['als_bias_round1'] / f['plain_als']:.2f}, all rounds "
          f"{f['als_bias_all_rounds'] / f['plain_als']:.2f})")
    print(timing_line(cfg, c["rank"], c["als_bias_reg"], timing))
    for name, rmse, fit_s, pred_s in sk:
        print(f"{name:<30} RMSE {rmse:.4f}  (/floor {rmse / floor:.4f})  fit {fit_s:.1f}s, "
              f"predict {pred_s:.1f}s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--true-rank", type=int, default=5)
    ap.add_argument("--rank", default="5,10,20,50", help="rank grid, comma-separated")
    ap.add_argument("--regs", default="0.01,0.02,0.05,0.1", help="ALS reg grid, comma-separated")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--test", default="probe")
    ap.add_argument("--data", default=str(ROOT / "data" / "bench"))
    ap.add_argument("--no-surprise", action="store_true")
    ap.add_argument("--timing-only", action="store_true",
                    help="only the back-to-back fit-time comparison (no table)")
    args = ap.parse_args(argv)

    from batchml.config import load_config
    from batchml.factorize import run_factorize
    from batchml.logs import setup_logging
    from batchml.spark import build_session

    setup_logging("INFO")
    dataset = make_dataset(Path(args.data) / f"factorize-{args.ratings}", args.ratings, args.seed,
                           args.noise, args.true_rank)
    overrides = [f"factorize.ranks=[{args.rank}]", f"factorize.iters={args.iters}",
                 f"factorize.rounds={args.rounds}", f"factorize.test={args.test}",
                 "spark.log_level=ERROR"]
    overrides.append(f"factorize.regs=[{args.regs}]")
    cfg = load_config(ROOT / "conf" / "local.yaml", overrides)
    spark = build_session(cfg.spark, app_name="batchml-bench-factorize")
    try:
        if args.timing_only:
            rank = int(args.rank.split(",")[0])
            reg = float(args.regs.split(",")[0])
            s = cfg.factorize
            ft = fit_timing(spark, cfg, str(dataset), rank, reg,
                            bias_regs=(s.bias_reg_user[0], s.bias_reg_item[0]), scale=(1.0, 5.0))
            print(timing_line(cfg, rank, reg, ft))
            return 0
        t0 = time.perf_counter()
        metrics = run_factorize(spark, cfg, dataset=str(dataset),
                                output=str(Path(args.data) / f"factorize-{args.ratings}-model"))
        wall = time.perf_counter() - t0
        c = metrics["chosen"]
        # the pipeline times each fit once; repeat them back to back at the chosen settings
        timing = fit_timing(spark, cfg, str(dataset), c["rank"], c["als_bias_reg"],
                            bias_regs=(c["bias_reg_user"], c["bias_reg_item"]),
                            scale=tuple(c["rating_scale"]))
        sk = [] if args.no_surprise else surprise_rows(spark, cfg, str(dataset), c["rating_scale"])
    finally:
        spark.stop()

    print_report(args, cfg, metrics, wall, timing, sk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
