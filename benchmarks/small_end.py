"""Small-end targets (issue 14): a user's first runs on ~100k ratings in local mode, beside peers.

    .venv/bin/python benchmarks/small_end.py [--ml ../shared/data/ratings_dev/ml-latest-small]
        [--work data/bench/small] [--only ingest,jaccard,similarity,factorize]

Two 100k-rating inputs:

* ``ml-latest-small`` -- the real MovieLens release (100,836 ratings, 610 users, 9,742 movies: dense
  users and a long tail of movies, so 13M distinct item pairs);
* ``ml100k-shaped`` -- generated once in MovieLens-100K's exact format and shape (``u.data`` +
  ``u.item``, 943 users x 1,682 movies, 100,000 ratings, taste 1.5).

Each job runs through ``./spark-submit.sh`` the way a user types it (wall time includes the JVM
start), and its peer runs in the same run on the same input:

=================  ====================================================  =====================  ======
task               our command                                           peer                   target
=================  ====================================================  =====================  ======
spark start        an empty job (session up and down)                    --                     --
ingest             jobs/ingest.py --format movielens                     pandas (peers.py)      20 s
jaccard            jobs/similarity.py --exact, holdout_fraction=0        scipy XᵀX top-20       15 s
similarity         jobs/similarity.py (defaults)                         --                     --
factorize          jobs/factorize.py (defaults)                          Surprise SVD, 1 split  60 s
=================  ====================================================  =====================  ======

The targets hold on this 2-core machine when it is otherwise idle: the load average is printed with
every figure.  Results are kept in ``WORK/results.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import measure, timed  # noqa: E402
from peers import pandas_ingest, read_movielens, surprise_svd_rmse  # noqa: E402
from similarity import scipy_jaccard_top_k  # noqa: E402

TARGETS = {"ingest": 20.0, "jaccard": 15.0, "factorize": 60.0}
TASKS = ("ingest", "jaccard", "similarity", "factorize")
EMPTY_JOB = "from pyspark.sql import SparkSession\nSparkSession.builder.getOrCreate().range(1).count()\n"


def ensure_ml100k_shaped(work: Path) -> Path:
    """Generate the MovieLens-100K-shaped dump once (u.data + u.item)."""
    out = work / "raw" / "ml100k-shaped"
    if not (out / "u.data").exists():
        subprocess.run([str(ROOT / ".venv/bin/python"), "jobs/generate.py", "--format", "movielens",
                        "--variant", "100k", "--ratings", "100000", "--taste", "1.5",
                        "--set", "generate.users=943", "--set", "generate.items=1682",
                        "--output", str(out)], cwd=ROOT, check=True, capture_output=True)
    return out


def submit(args: list[str], log: Path) -> dict:
    """One ``./spark-submit.sh`` run: wall, peak RSS, exit code, load average."""
    m = measure(["./spark-submit.sh", *args], cwd=ROOT, log=log)
    if m.returncode != 0:
        raise SystemExit(f"error: {' '.join(args[:1])} failed (exit {m.returncode}); see {log}")
    return {"wall": round(m.wall, 1), "peak_gib": round(m.peak_rss / 2**30, 2),
            "load": round(m.load_mean, 1)}


def run_input(name: str, raw: Path, work: Path, tasks: list[str]) -> list[dict]:
    """Every task on one input, each beside its peer."""
    d = work / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    ds, rows = d / "dataset", []
    ours = submit(["jobs/ingest.py", "--format", "movielens", "--input", str(raw), "--output", str(ds)],
                  d / "ingest.log")
    peer_s, _ = timed(pandas_ingest, "movielens", raw, d / "pandas")
    if "ingest" in tasks:
        rows.append({"input": name, "task": "ingest", **ours, "peer": "pandas", "peer_s": round(peer_s, 2)})
    if "jaccard" in tasks:
        ours = submit(["jobs/similarity.py", "--dataset", str(ds), "--output", str(d / "jaccard"), "--exact",
                       "--set", "similarity.holdout_fraction=0"], d / "jaccard.log")
        peer_s, _ = timed(scipy_jaccard_top_k, ds, 20)
        rows.append({"input": name, "task": "jaccard", **ours, "peer": "scipy", "peer_s": round(peer_s, 2)})
    if "similarity" in tasks:
        ours = submit(["jobs/similarity.py", "--dataset", str(ds), "--output", str(d / "similarity")],
                      d / "similarity.log")
        rows.append({"input": name, "task": "similarity", **ours})
    if "factorize" in tasks:
        ours = submit(["jobs/factorize.py", "--dataset", str(ds), "--output", str(d / "model")],
                      d / "factorize.log")
        metrics = json.loads((d / "model" / "metrics.json").read_text())
        peer_s, rmse = timed(surprise_svd_rmse, read_movielens(raw))
        rows.append({"input": name, "task": "factorize", **ours, "test_rmse": _test_rmse(metrics),
                     "peer": "surprise SVD", "peer_s": round(peer_s, 2), "peer_rmse": round(rmse, 4)})
    return rows


def _test_rmse(metrics: dict) -> float | None:
    """The test RMSE of the model the job saved (``chosen.saved_model``: biased -> the ALS+bias row)."""
    row = {"biased": "als_bias"}.get(metrics["chosen"]["saved_model"], metrics["chosen"]["saved_model"])
    return round(metrics["table"][row]["rmse"], 4)


def spark_start(work: Path) -> dict:
    """The fixed cost every job pays here: spark-submit of an empty job."""
    job = work / "empty_job.py"
    job.write_text(EMPTY_JOB)
    return {"input": "-", "task": "spark start", **submit([str(job)], work / "empty.log")}


def table(rows: list[dict]) -> str:
    lines = [f"{'input':<16} {'task':<11} {'ours s':>7} {'GiB':>5} {'load':>5} {'peer':<13} {'peer s':>7}"
             f" {'ratio':>6} {'target':>7}  met"]
    for r in rows:
        peer_s, target = r.get("peer_s"), TARGETS.get(r["task"])
        ratio = f"{r['wall'] / peer_s:6.0f}" if peer_s else f"{'':>6}"
        met = ("met" if r["wall"] <= target else "missed") if target else ""
        lines.append(f"{r['input']:<16} {r['task']:<11} {r['wall']:7.1f} {r['peak_gib']:5.2f} {r['load']:5.1f} "
                     f"{r.get('peer', ''):<13} {peer_s if peer_s is not None else '':>7} {ratio} "
                     f"{(str(target) + ' s') if target else '':>7}  {met}")
        if "test_rmse" in r:
            lines.append(f"{'':<29}test RMSE ours {r['test_rmse']} (own random 10% split), "
                         f"peer {r['peer_rmse']} (Surprise's own random 10% split)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ml", default=str(ROOT.parent / "shared/data/ratings_dev/ml-latest-small"))
    ap.add_argument("--work", default=str(ROOT / "data/bench/small"))
    ap.add_argument("--only", default=",".join(TASKS), help="comma-separated tasks")
    args = ap.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    tasks = [t for t in args.only.split(",") if t]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    rows = [spark_start(work)]
    rows += run_input("ml100k-shaped", ensure_ml100k_shaped(work), work, tasks)
    rows += run_input("ml-latest-small", Path(args.ml), work, tasks)
    (work / "results.json").write_text(json.dumps({"started": started, "cpus": os.cpu_count(),
                                                   "rows": rows}, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
