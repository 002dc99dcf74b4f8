"""Single-machine peers for the benchmarks: what a user would write instead of a Spark job.

Each peer runs in this Python process (timed by the caller) and writes or returns what the matching
job does, in the simplest well-known way:

* :func:`pandas_ingest` -- a ratings dump (MovieLens ``u.data`` / ``ratings.dat`` / ``ratings.csv``
  or the Netflix Prize ``combined_data_*.txt``) parsed with pandas, the latest of duplicate
  (user, item) lines kept, dense ids in sorted id order, Parquet tables ``ratings``, ``users``,
  ``items`` written.  No reject accounting (pandas drops nothing it can parse, and fails on what it
  cannot).
* :func:`scipy_jaccard_top_k` (in ``benchmarks/similarity.py``) -- exact Jaccard top-K from XᵀX.
* :func:`surprise_svd_rmse` -- Surprise's SVD with its defaults, fit on one split and scored on the other.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pandas as pd

ML_LAYOUTS = (  # file, separator, header row, names
    ("u.data", "\t", None), ("ratings.dat", "::", None), ("ratings.csv", ",", 0),
)


def read_movielens(root: Path) -> pd.DataFrame:
    """``user, item, rating, ts`` of a MovieLens release (the first layout found under ``root``)."""
    for name, sep, header in ML_LAYOUTS:
        path = root / name
        if path.exists():
            return pd.read_csv(path, sep=sep, header=header, names=["user", "item", "rating", "ts"],
                               engine="python" if len(sep) > 1 else "c")
    raise FileNotFoundError(f"no MovieLens ratings file under {root}")


def read_netflix(root: Path) -> pd.DataFrame:
    """``user, item, rating, ts`` of a Netflix Prize dump: ``MovieID:`` lines head each movie's
    ``CustomerID,Rating,Date`` lines (forward-filled)."""
    frames = []
    for path in sorted(glob.glob(str(root / "combined_data_*.txt*"))):
        df = pd.read_csv(path, header=None, names=["user", "rating", "date"], dtype={"user": str})
        header = df["rating"].isna()
        df["item"] = df["user"].where(header).str.rstrip(":").ffill().astype(np.int32)
        df = df[~header]
        frames.append(pd.DataFrame({"user": df["user"].astype(np.int64), "item": df["item"],
                                    "rating": df["rating"].astype(np.float32),
                                    "ts": pd.to_datetime(df["date"], format="%Y-%m-%d")}))
    if not frames:
        raise FileNotFoundError(f"no combined_data_*.txt under {root}")
    return pd.concat(frames, ignore_index=True)


def pandas_ingest(fmt: str, root: Path, out: Path) -> int:
    """Parse, keep the latest duplicate, index densely and write Parquet; returns the ratings kept."""
    df = read_netflix(root) if fmt == "netflix" else read_movielens(root)
    df = df.sort_values("ts", kind="stable").drop_duplicates(["user", "item"], keep="last")
    users, user_idx = np.unique(df["user"].to_numpy(), return_inverse=True)
    items, item_idx = np.unique(df["item"].to_numpy(), return_inverse=True)
    os.makedirs(out, exist_ok=True)
    pd.DataFrame({"user_idx": user_idx.astype(np.int32), "item_idx": item_idx.astype(np.int32),
                  "rating": df["rating"].to_numpy(np.float32), "ts": df["ts"].to_numpy()}
                 ).to_parquet(out / "ratings.parquet", index=False)
    pd.DataFrame({"user_idx": np.arange(len(users), dtype=np.int32), "user_id": users.astype(str)}
                 ).to_parquet(out / "users.parquet", index=False)
    pd.DataFrame({"item_idx": np.arange(len(items), dtype=np.int32), "item_id": items.astype(str)}
                 ).to_parquet(out / "items.parquet", index=False)
    return len(df)


def surprise_svd_rmse(ratings: pd.DataFrame, test_fraction: float = 0.1, seed: int = 42) -> float:
    """Surprise SVD (defaults) fit on a random ``1 - test_fraction`` of ``user, item, rating`` rows and
    scored (RMSE) on the rest."""
    from surprise import SVD, Dataset, Reader, accuracy
    from surprise.model_selection import train_test_split
    lo, hi = float(ratings["rating"].min()), float(ratings["rating"].max())
    data = Dataset.load_from_df(ratings[["user", "item", "rating"]], Reader(rating_scale=(lo, hi)))
    train, test = train_test_split(data, test_size=test_fraction, random_state=seed)
    algo = SVD(random_state=seed)
    algo.fit(train)
    return float(accuracy.rmse(algo.test(test), verbose=False))


def main(argv=None) -> int:
    """``peers.py ingest --format F --input DUMP --output DIR`` or ``peers.py jaccard --dataset DS
    --output DIR [--k 20]``: one peer as its own process (so a benchmark can time it, sample its
    memory and survive it running out); writes ``DIR/result.json`` with the rows produced."""
    import argparse
    import json
    import sys
    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="peer", required=True)
    ing = sub.add_parser("ingest")
    ing.add_argument("--format", required=True, choices=("netflix", "movielens"))
    ing.add_argument("--input", required=True)
    ing.add_argument("--output", required=True)
    jac = sub.add_parser("jaccard")
    jac.add_argument("--dataset", required=True)
    jac.add_argument("--output", required=True)
    jac.add_argument("--k", type=int, default=20)
    args = ap.parse_args(argv)
    out = Path(args.output)
    if args.peer == "ingest":
        rows = pandas_ingest(args.format, Path(args.input), out)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from similarity import scipy_jaccard_top_k
        rows = len(scipy_jaccard_top_k(Path(args.dataset), args.k)[0])
        out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
