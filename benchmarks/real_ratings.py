"""Real ratings, real protocol: the factorize job on MovieLens ml-latest-small folds beside its peers.

    .venv/bin/python benchmarks/real_ratings.py [--data ../shared/data/ratings_dev/ml-latest-small]
        [--folds 5] [--only 1,2] [--no-svdpp] [--work data/bench/real] [--fresh]

The ratings are cut into 5 deterministic random folds (a seeded permutation).  Each fold's training
and test rows are written as MovieLens ``ratings.csv`` files and ingested as two separate datasets
(``jobs/ingest.py --format movielens``), and the job runs with its defaults as a user would:
``--dataset FOLD/train_ds --test FOLD/test_ds`` (the test rows are mapped through the source ids).
On the same rows, in the same run: scikit-surprise BaselineOnly, SVD, SVD++ and KNNBaseline (the
``bench`` extra).  Prints every row of the job's RMSE table and the peers' per fold and their mean,
with seconds per fold, and the targets: ALS + bias <= the best peer, bias only <= BaselineOnly.

Resumable: each fold's figures are kept in ``FOLD/result.json`` with the settings they were
measured under, and re-used by a later run with the same settings (``--fresh`` measures again,
e.g. after a code change).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ratings_dev" / "ml-latest-small"
SEED = 0


# ------------------------------------------------------------------------------------------ folds
def write_folds(src: Path, out: Path, n_folds: int) -> list[Path]:
    """``out/fold<k>/{train,test}/`` with the fold's ``ratings.csv`` and the release's
    ``movies.csv``; fold k holds the rows whose seeded permutation position is k mod ``n_folds``."""
    tag = out / "_folds.json"
    want = {"src": str(src), "folds": n_folds, "seed": SEED}
    dirs = [out / f"fold{k + 1}" for k in range(n_folds)]
    if tag.is_file() and json.loads(tag.read_text()) == want:
        return dirs
    ratings = pd.read_csv(src / "ratings.csv", dtype={"rating": str})  # keep "3.5" as written
    fold = np.random.default_rng(SEED).permutation(len(ratings)) % n_folds
    for k, d in enumerate(dirs):
        for side, rows in (("train", ratings[fold != k]), ("test", ratings[fold == k])):
            (d / side).mkdir(parents=True, exist_ok=True)
            rows.to_csv(d / side / "ratings.csv", index=False)
            shutil.copyfile(src / "movies.csv", d / side / "movies.csv")
    tag.write_text(json.dumps(want))
    return dirs


def ingest_fold(spark, cfg, fold: Path) -> None:
    """Ingest ``fold/train`` and ``fold/test`` into ``fold/train_ds`` and ``fold/test_ds``."""
    from batchml.ingest import ingest

    for side in ("train", "test"):
        if not (fold / f"{side}_ds" / "_stats.json").is_file():
            ingest(spark, cfg, "movielens", str(fold / side), str(fold / f"{side}_ds"))


# ------------------------------------------------------------------------------------------ peers
def peer_algorithms(seed: int, svdpp: bool) -> dict:
    from surprise import SVD, BaselineOnly, KNNBaseline, SVDpp

    algos = {"surprise BaselineOnly": lambda: BaselineOnly(verbose=False),
             "surprise SVD": lambda: SVD(random_state=seed),
             "surprise KNNBaseline": lambda: KNNBaseline(verbose=False)}
    if svdpp:
        algos["surprise SVD++"] = lambda: SVDpp(random_state=seed)
    return algos


def peer_rows(fold: Path, *, seed: int, svdpp: bool) -> dict[str, tuple[float, float]]:
    """{peer: (test RMSE, seconds)} on the fold's rows, ratings clipped to 0.5..5 as in the data."""
    from surprise import Dataset, Reader

    train = pd.read_csv(fold / "train" / "ratings.csv")
    test = pd.read_csv(fold / "test" / "ratings.csv")
    reader = Reader(rating_scale=(0.5, 5.0))
    trainset = Dataset.load_from_df(train[["userId", "movieId", "rating"]], reader).build_full_trainset()
    testset = list(zip(test.userId, test.movieId, test.rating.astype(float)))
    out = {}
    for name, make in peer_algorithms(seed, svdpp).items():
        t0 = time.perf_counter()
        algo = make()
        algo.fit(trainset)
        err = np.array([p.est - p.r_ui for p in algo.test(testset)])
        out[name] = (float(math.sqrt(np.mean(err ** 2))), time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------------------------------- ours
def our_rows(spark, cfg, fold: Path) -> tuple[dict[str, tuple[float, float]], dict]:
    """{row of the job's table: (test RMSE, job seconds)} and the job's metrics, with the defaults
    and ``--test`` the fold's test dataset."""
    from dataclasses import replace

    from batchml.factorize import run_factorize

    cfg = replace(cfg, factorize=replace(cfg.factorize, test=str(fold / "test_ds")))
    t0 = time.perf_counter()
    metrics = run_factorize(spark, cfg, dataset=str(fold / "train_ds"), output=str(fold / "model"))
    wall = time.perf_counter() - t0
    return {f"batchml {k}": (v["rmse"], wall) for k, v in metrics["table"].items()}, metrics


# ----------------------------------------------------------------------------------------- report
def report(results: dict[str, dict[str, tuple[float, float]]], chosen: list[dict]) -> str:
    folds = list(results)
    names = list(dict.fromkeys(n for f in folds for n in results[f]))
    head = f"{'model':<34}" + "".join(f"{f:>9}" for f in folds) + f"{'mean':>9}{'s/fold':>9}"
    lines = [head]
    mean = {}
    for n in names:
        vals = [results[f][n][0] for f in folds if n in results[f]]
        secs = [results[f][n][1] for f in folds if n in results[f]]
        mean[n] = float(np.mean(vals))
        lines.append(f"{n:<34}" + "".join(f"{v:9.4f}" for v in vals) + f"{mean[n]:9.4f}"
                     f"{np.mean(secs):9.1f}")
    lines.append("(batchml rows share one job run per fold: s/fold is the whole job)")
    peers = {n: v for n, v in mean.items() if n.startswith("surprise")}
    peers["plain MLlib ALS (lambda on validation)"] = mean.get("batchml plain_als", float("nan"))
    best = min(peers, key=peers.get)
    ab, bo = mean["batchml als_bias"], mean["batchml bias_only"]
    base = mean.get("surprise BaselineOnly", float("nan"))
    lines.append(f"ALS + bias {ab:.4f} vs best peer {best} {peers[best]:.4f}: "
                 f"{'met' if ab <= peers[best] else 'MISSED'} (target: <=)")
    lines.append(f"bias only {bo:.4f} vs BaselineOnly {base:.4f}: "
                 f"{'met' if bo <= base else 'MISSED'} (target: <=)")
    for k, c in enumerate(chosen):
        lines.append(f"fold {k + 1} chosen: " + ", ".join(f"{a}={b}" for a, b in c.items()))
    return "\n".join(lines)


def fold_result(spark, cfg, fold: Path, *, svdpp: bool, key: dict, fresh: bool) -> dict:
    """{"rows": {row: [RMSE, seconds]}, "chosen": {...}} of one fold: measured, or read back from
    ``fold/result.json`` when it was measured under the same ``key``."""
    cache = fold / "result.json"
    if not fresh and cache.is_file():
        kept = json.loads(cache.read_text())
        if kept.get("key") == key:
            print(f"{fold.name}: re-using {cache}", flush=True)
            return kept
    ingest_fold(spark, cfg, fold)
    ours, metrics = our_rows(spark, cfg, fold)
    peers = peer_rows(fold, seed=cfg.factorize.seed, svdpp=svdpp)
    result = {"key": key, "rows": {**ours, **peers},
              "chosen": {**metrics["chosen"], "unknown_users": metrics["unknown_users"],
                         "unknown_items": metrics["unknown_items"]},
              "timings": metrics["timings_seconds"]}
    cache.write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="ml-latest-small dir (ratings.csv)")
    ap.add_argument("--work", default=str(ROOT / "data" / "bench" / "real"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated fold numbers to run (default: all)")
    ap.add_argument("--no-svdpp", action="store_true", help="skip surprise SVD++ (minutes per fold)")
    ap.add_argument("--set", action="append", default=[], help="a job setting, e.g. factorize.iters=5")
    ap.add_argument("--fresh", action="store_true", help="measure again, ignoring kept fold results")
    args = ap.parse_args(argv)

    from batchml.config import load_config
    from batchml.logs import setup_logging
    from batchml.spark import build_session

    setup_logging("INFO")  # stage by stage on stderr
    cfg = load_config(ROOT / "conf" / "local.yaml", ["spark.log_level=ERROR", *args.set])
    folds = write_folds(Path(args.data), Path(args.work), args.folds)
    if args.only:
        folds = [folds[int(k) - 1] for k in args.only.split(",")]
    spark = build_session(cfg.spark, app_name="batchml-bench-real-ratings")
    results, chosen = {}, []
    try:
        key = {"set": args.set, "svdpp": not args.no_svdpp}
        for fold in folds:
            result = fold_result(spark, cfg, fold, svdpp=not args.no_svdpp, key=key,
                                 fresh=args.fresh)
            results[fold.name] = {k: tuple(v) for k, v in result["rows"].items()}
            chosen.append(result["chosen"])
            print(f"{fold.name}: " + ", ".join(f"{k} {v[0]:.4f}" for k, v in results[fold.name].items()),
                  flush=True)
    finally:
        spark.stop()
    print()
    print(f"== {Path(args.data).name}: {len(folds)} of {args.folds} random folds, the job's defaults")
    print(report(results, chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
