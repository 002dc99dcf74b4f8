"""Cost curve of the whole pipeline: ingest -> similarity -> factorize -> recommend, 100k to 100M ratings.

    nice -n 5 .venv/bin/python benchmarks/pipeline_scale.py [--sizes 100k,1M,10M,30M,100M]
        [--stages ingest,similarity,factorize,recommend] [--work data/bench/scale]
        [--fresh-stage STAGE,...] [--log-level WARNING] [--table-only] [--peers [--peer-sizes 1M,10M]]

Per size it generates a Netflix Prize-format dump once (``batchml.synth.netflix.write_netflix_dump``
with taste 1.5, seed 42, in a child process) and then runs each job through ``./spark-submit.sh``
with the flags a user types (README, demo.sh) and the default settings otherwise:

    ingest      jobs/ingest.py --format netflix --remove-probe      (probe rows kept as the test set)
    similarity  jobs/similarity.py                                   (Jaccard top-20, default cap)
    factorize   jobs/factorize.py --test probe                       (default search grid)
    recommend   jobs/recommend.py                                    (top-10 for every user + metrics)

Shape: the real Prize at 100M (480,189 users x 17,770 movies, probe 1.4 %, qualifying 2.8 % of the
ratings), scaled down the way ``batchml.synth.model.default_sizes`` (what ``jobs/generate.py
--ratings N`` uses) scales: users grow with N (208 ratings per user, as in the Prize), movies with
sqrt(N) (17,770 * sqrt(N / 100M)), and users >= 4 N / movies so small dumps stay below 25 %
density.  default_sizes itself (200 ratings per user, 1.5 sqrt(N) movies) would give 15,000 movies
at 100M, hence the Prize-calibrated constants here:

    100k: 712 x 562    1M: 4,802 x 1,777    10M: 48,019 x 5,619    30M: 144,057 x 9,733
    100M: 480,189 x 17,770

With ``--peers`` (at ``--peer-sizes``, default 1M and 10M) each size also runs single-machine
peers beside our job on the same input (``benchmarks/peers.py``, each in its own process):
``pandas_ingest`` (pandas parse of the dump, latest duplicate kept, dense ids, Parquet) against our
ingest, and ``scipy_jaccard`` (exact Jaccard top-20 from XᵀX) against ``jaccard_exact`` (our
similarity job with ``--exact`` and no held-out evaluation).  A second table gives ours / peer.

A third table weighs the factorize job's hyper-parameter search: the job's wall time against its
own fit of plain MLlib ALS at the chosen rank on the whole training set, and (when the stage
``factorize_exhaustive`` is named in ``--stages``: the same job with
``--set factorize.search_sample_ratings=0 --set factorize.search_iters=0``: the search on every
training rating, each candidate fitted with the full ``iters``) the chosen
model's probe RMSE against that exhaustive search's.

Work dir layout (``--work``), one folder per size: ``dump/`` (the raw files), ``dataset/``,
``similarity/``, ``model/``, ``recommend/`` (the jobs' outputs), ``STAGE.log`` (the job's output),
``STAGE.log.peak`` (the peak so far, to watch a long run) and ``STAGE.json`` (wall, peak RSS, rows,
exit code, command, load average, dates).  A stage whose output dir and successful ``STAGE.json``
exist, made from the same dump and after the stages it reads, is not run again, so a long size can
be run stage by stage across sessions (``--stages``);
``--fresh-stage`` redoes the named stages (and so makes the stages after them stale).  A failed
stage records its exit code and log tail; it is retried on the next run, and the stages that need
it are skipped.  Peak RSS is the sum over the process tree of spark-submit.sh (the driver Python,
the JVM and its Python workers), sampled every 0.2 s.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import measure  # noqa: E402

SIZES = (100_000, 1_000_000, 10_000_000, 30_000_000, 100_000_000)
STAGES = ("ingest", "similarity", "factorize", "recommend")
#: --peers: single-machine peers of a stage, each beside our run of the same task (PEER_OF)
PEER_STAGES = ("pandas_ingest", "jaccard_exact", "scipy_jaccard")
PEER_OF = {"pandas_ingest": "ingest", "scipy_jaccard": "jaccard_exact"}
PEER_SIZES = (1_000_000, 10_000_000)
#: run only when named in --stages: the factorize job with the search on every training rating
#: (no user sample), against which the default job's choice is compared (the search table)
EXTRA_STAGES = ("factorize_exhaustive",)
NEEDS = {"ingest": (), "similarity": ("ingest",), "factorize": ("ingest",),
         "recommend": ("ingest", "factorize"), "pandas_ingest": (), "jaccard_exact": ("ingest",),
         "scipy_jaccard": ("ingest",), "factorize_exhaustive": ("ingest",)}
OUTPUT = {"ingest": "dataset", "similarity": "similarity", "factorize": "model", "recommend": "recommend",
          "pandas_ingest": "pandas", "jaccard_exact": "jaccard_exact", "scipy_jaccard": "scipy_jaccard",
          "factorize_exhaustive": "model_exhaustive"}
ROWS_WHAT = {"ingest": "ratings in the dataset (probe removed)", "similarity": "neighbour rows written",
             "factorize": "training ratings (n_train)", "recommend": "users scored",
             "pandas_ingest": "ratings kept (probe not removed)", "jaccard_exact": "neighbour rows written",
             "scipy_jaccard": "neighbour rows", "factorize_exhaustive": "training ratings (n_train)"}
PRIZE = {"ratings": 100_000_000, "users": 480_189, "items": 17_770, "probe": 0.014, "qualifying": 0.028}
TASTE, SEED = 1.5, 42


# ------------------------------------------------------------------------------------ sizes
def parse_size(text: str) -> int:
    """``100k``, ``1M``, ``2.5M``, ``1e6`` or ``1000000`` -> ratings."""
    t = text.strip().replace("_", "").replace(",", "")
    mult = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(t[-1:].lower(), 1)
    try:
        n = float(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 100k, 1M, 30M)") from None
    if n < 1_000 or n != int(n):
        raise argparse.ArgumentTypeError(f"size {text!r} must be a whole number >= 1000")
    return int(n)


def label(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def prize_shape(n: int) -> dict:
    """The dump's parameters at ``n`` ratings (see the module docstring)."""
    items = max(10, round(PRIZE["items"] * math.sqrt(n / PRIZE["ratings"])))
    users = max(round(PRIZE["users"] * n / PRIZE["ratings"]), math.ceil(4 * n / items))
    return {"n_ratings": n, "n_users": users, "n_items": items, "taste": TASTE, "seed": SEED,
            "probe_fraction": PRIZE["probe"], "qualifying_fraction": PRIZE["qualifying"]}


# ------------------------------------------------------------------------------------ the dump
_GENERATE = """
import json, logging, sys
from batchml.synth.netflix import write_netflix_dump
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
a = json.loads(sys.argv[1])
d = write_netflix_dump(a.pop("out"), **a)
print(json.dumps({k: d.truth[k] for k in ("n_ratings", "n_users", "n_items", "n_probe", "n_qualifying")}))
"""


def ensure_dump(size_dir: Path, shape: dict) -> Path:
    """The raw dump of ``shape`` under ``size_dir/dump``, generated (into a temporary dir, then
    renamed) unless a dump of the same parameters is there; the generation is timed in
    ``generate.json``."""
    dump, tag = size_dir / "dump", size_dir / "dump" / "_bench.json"
    if tag.is_file() and json.loads(tag.read_text()) == shape:
        return dump
    tmp = size_dir / "dump.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(dump, ignore_errors=True)
    size_dir.mkdir(parents=True, exist_ok=True)
    print(f"[{label(shape['n_ratings'])}] generating the dump "
          f"({shape['n_users']:,} users x {shape['n_items']:,} movies) ...", flush=True)
    cmd = [sys.executable, "-c", _GENERATE, json.dumps({"out": str(tmp), **shape})]
    m = measure(cmd, cwd=str(ROOT), log=size_dir / "generate.log")
    if m.returncode != 0:
        tail = (size_dir / "generate.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"error: generating the {label(shape['n_ratings'])} dump failed:\n{tail}")
    truth = json.loads((tmp / "ground_truth" / "truth.json").read_text())
    (tmp / "_bench.json").write_text(json.dumps(shape))
    tmp.rename(dump)
    (size_dir / "generate.json").write_text(json.dumps({
        "wall_s": round(m.wall, 1), "peak_rss_bytes": m.peak_rss, "date": _now(),
        **{k: truth[k] for k in ("n_ratings", "n_users", "n_items", "n_probe", "n_qualifying")}}, indent=2))
    print(f"[{label(shape['n_ratings'])}] dump generated in {m.wall:.0f}s", flush=True)
    return dump


# ------------------------------------------------------------------------------------ stages
def stage_command(stage: str, size_dir: Path, log_level: str) -> list[str]:
    """The spark-submit.sh command line of ``stage`` (paths relative to the repository root when
    the work dir is inside it)."""
    p = {k: _rel(size_dir / v) for k, v in OUTPUT.items()}
    dump = _rel(size_dir / "dump")
    args = {
        "ingest": ["jobs/ingest.py", "--format", "netflix", "--input", dump, "--output", p["ingest"],
                   "--remove-probe"],
        "similarity": ["jobs/similarity.py", "--dataset", p["ingest"], "--output", p["similarity"]],
        "factorize": ["jobs/factorize.py", "--dataset", p["ingest"], "--output", p["factorize"],
                      "--test", "probe"],
        "recommend": ["jobs/recommend.py", "--model", p["factorize"], "--dataset", p["ingest"],
                      "--output", p["recommend"]],
        "jaccard_exact": ["jobs/similarity.py", "--dataset", p["ingest"], "--output", p["jaccard_exact"],
                          "--exact", "--set", "similarity.holdout_fraction=0"],
        "factorize_exhaustive": ["jobs/factorize.py", "--dataset", p["ingest"], "--output",
                                 p["factorize_exhaustive"], "--test", "probe",
                                 "--set", "factorize.search_sample_ratings=0",
                                 "--set", "factorize.search_iters=0"],
    }.get(stage)
    if args is None:   # a single-machine peer (benchmarks/peers.py)
        peer = {"pandas_ingest": ["ingest", "--format", "netflix", "--input", dump],
                "scipy_jaccard": ["jaccard", "--dataset", p["ingest"]]}[stage]
        return [sys.executable, "benchmarks/peers.py", *peer, "--output", p[stage]]
    return ["./spark-submit.sh", *args, "--log-level", log_level]


def stage_rows(stage: str, out: Path) -> tuple[int | None, dict]:
    """(rows, a few extra figures) read from the outputs ``out`` of ``stage``."""
    if stage == "ingest":
        s = json.loads((out / "_stats.json").read_text())
        return s["ratings"], {"users": s["users"], "items": s["items"],
                              "probe_pairs": (s.get("probe") or {}).get("pairs")}
    if stage in PEER_OF:
        return json.loads((out / "result.json").read_text())["rows"], {}
    m = json.loads((out / "metrics.json").read_text())
    if stage in ("similarity", "jaccard_exact"):
        s = m["similarity"]
        return s["rows"], {k: s.get(k) for k in ("pairs_generated", "users_capped", "distinct_pairs")}
    if stage in ("factorize", "factorize_exhaustive"):
        best = {k: v.get("rmse") for k, v in m.get("table", {}).items() if isinstance(v, dict)}
        return m["n_train"], {"n_test": m.get("n_test"), "test_rmse": best, "chosen": m.get("chosen"),
                              "fit_seconds": m.get("fit_seconds"),
                              "timings_seconds": m.get("timings_seconds", {})}
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    users = pq.read_table(out / "recommendations", columns=["user_idx"]).column("user_idx")
    return int(pc.count_distinct(users).as_py()), {"recommendations": m.get("recommendations")}


def load_result(size_dir: Path, stage: str) -> dict | None:
    path = size_dir / f"{stage}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def is_current(size_dir: Path, stage: str, shape: dict) -> bool:
    """True when ``stage`` succeeded on this dump, its output is there, and it ran after every
    stage it reads finished."""
    r = load_result(size_dir, stage)
    if not r or r["returncode"] != 0 or r.get("dump") != shape or not (size_dir / OUTPUT[stage]).is_dir():
        return False
    for up in NEEDS[stage]:
        u = load_result(size_dir, up)
        if not u or u["returncode"] != 0 or u["finished_epoch"] > r["started_epoch"]:
            return False
    return True


def run_stage(size_dir: Path, stage: str, shape: dict, log_level: str) -> dict:
    """Run one stage, write and return its ``STAGE.json``."""
    size_dir.mkdir(parents=True, exist_ok=True)
    if stage in ("ingest", "pandas_ingest"):
        ensure_dump(size_dir, shape)
    cmd = stage_command(stage, size_dir, log_level)
    log = size_dir / f"{stage}.log"
    print(f"[{label(shape['n_ratings'])}] {stage}: running ({_rel(log)}) ...", flush=True)
    started = time.time()
    m = measure(cmd, cwd=str(ROOT), log=log)
    r = {"size": shape["n_ratings"], "stage": stage, "command": " ".join(cmd),
         "returncode": m.returncode, "wall_s": round(m.wall, 2), "peak_rss_bytes": m.peak_rss,
         "rows": None, "rows_what": ROWS_WHAT[stage], "extra": {},
         "load": {"start": m.load_start, "end": m.load_end, "mean": round(m.load_mean, 2),
                  "max": m.load_max},
         "started": _iso(started), "finished": _now(), "started_epoch": started,
         "finished_epoch": time.time(), "dump": shape, "log": _rel(log),
         "env": {k: v for k, v in os.environ.items() if k.startswith("BATCHML_")},
         "machine": {"cpus": os.cpu_count(), "mem_gib": round(_mem_bytes() / 2**30, 1)}}
    if m.returncode == 0:
        try:
            r["rows"], r["extra"] = stage_rows(stage, size_dir / OUTPUT[stage])
        except (OSError, KeyError, ValueError) as exc:
            r["extra"] = {"rows_error": f"{type(exc).__name__}: {exc}"}
    else:
        r["log_tail"] = log.read_text(errors="replace")[-3000:]
    (size_dir / f"{stage}.json").write_text(json.dumps(r, indent=2, default=str))
    state = "done" if m.returncode == 0 else f"FAILED (exit {m.returncode}, see {_rel(log)})"
    print(f"[{label(shape['n_ratings'])}] {stage}: {state} in {m.wall:.0f}s, "
          f"peak {m.peak_rss / 2**30:.2f} GiB, load {m.load_mean:.1f}", flush=True)
    return r


def run_size(work: Path, n: int, stages: list[str], fresh: set[str], log_level: str) -> None:
    """Run the selected stages of one size in pipeline order (then its peers), skipping current ones."""
    size_dir, shape = work / label(n), prize_shape(n)
    for stage in STAGES + PEER_STAGES + EXTRA_STAGES:
        if stage not in stages:
            continue
        if stage not in fresh and is_current(size_dir, stage, shape):
            print(f"[{label(n)}] {stage}: cached ({_rel(size_dir / (stage + '.json'))})", flush=True)
            continue
        missing = [u for u in NEEDS[stage] if not is_current(size_dir, u, shape)]
        if missing:
            print(f"[{label(n)}] {stage}: skipped, needs {', '.join(missing)} first", flush=True)
            continue
        run_stage(size_dir, stage, shape, log_level)


# ------------------------------------------------------------------------------------ the table
def _cell(n: int, stage: str, work: Path) -> dict | None:
    """The result shown for (size, stage): the current successful run, else the last failure."""
    size_dir, shape = work / label(n), prize_shape(n)
    r = load_result(size_dir, stage)
    if r is None or r.get("dump") != shape:
        return None
    if r["returncode"] == 0 and not is_current(size_dir, stage, shape):
        return {**r, "stale": True}
    return r


def _exponent(t1: float | None, t2: float | None, n1: int, n2: int) -> str:
    if not t1 or not t2:
        return ""
    return f"{math.log(t2 / t1) / math.log(n2 / n1):.2f}"


def table(work: Path, sizes: list[int], stages: list[str]) -> str:
    """The cost table: per size and stage, then a total per size."""
    head = f"{'size':>5} {'stage':<11} {'wall s':>9} {'peak GiB':>9} {'rows':>13} {'exp':>5}  {'load mean/max':>13}"
    lines = [head, "-" * len(head)]
    prev: dict[str, tuple[int, float]] = {}
    for n in sizes:
        total, peak, complete, load_max = 0.0, 0, True, 0.0
        for stage in stages:
            r = _cell(n, stage, work)
            ok = r is not None and r["returncode"] == 0 and not r.get("stale")
            lines.append(_row(n, stage, r, prev.get(stage)))
            if ok:
                total += r["wall_s"]
                peak = max(peak, r["peak_rss_bytes"])
                load_max = max(load_max, r["load"]["max"])
                prev[stage] = (n, r["wall_s"])
            complete = complete and ok
        if complete and len(stages) > 1:
            p = prev.get("total")
            exp = _exponent(p[1], total, p[0], n) if p else ""
            lines.append(f"{label(n):>5} {'TOTAL':<11} {total:>9.1f} {peak / 2**30:>9.2f} {'':>13} "
                         f"{exp:>5}  {'max ' + format(load_max, '.1f'):>13}")
            prev["total"] = (n, total)
        lines.append("")
    return "\n".join(lines + _footer(stages))


def peer_table(work: Path, sizes: list[int]) -> str:
    """Ours vs the single-machine peer of the same task, per size: both walls, peaks and the ratio."""
    head = (f"{'size':>5} {'task':<8} {'ours':<14} {'wall s':>8} {'GiB':>6}   {'peer':<14} {'wall s':>8} "
            f"{'GiB':>6} {'ours/peer':>9}")
    lines = [head, "-" * len(head)]
    for n in sizes:
        for peer, ours in PEER_OF.items():
            a, b = _cell(n, ours, work), _cell(n, peer, work)
            if a is None and b is None:
                continue
            ratio = (f"{a['wall_s'] / b['wall_s']:9.1f}" if a and b and a["returncode"] == 0 == b["returncode"]
                     else f"{'':>9}")
            lines.append(f"{label(n):>5} {ours.split('_')[0]:<8} {ours:<14} {_wall(a):>8} {_gib(a):>6}   "
                         f"{peer:<14} {_wall(b):>8} {_gib(b):>6} {ratio}")
    return "\n".join(lines)


def search_table(work: Path, sizes: list[int]) -> str:
    """The factorize job's cost against one plain MLlib ALS fit of the chosen rank on the whole
    training set (timed inside the same job), and its chosen model's probe RMSE against the job
    whose search used every training rating (``factorize_exhaustive``), per size."""
    head = (f"{'size':>5} {'job s':>8} {'search s':>8} {'plain fit s':>11} {'job/fit':>7}  "
            f"{'chosen':<16} {'probe RMSE':>10}   {'exhaustive s':>12} {'chosen':<16} {'RMSE':>7} "
            f"{'gap %':>6}")
    lines = [head, "-" * len(head)]
    for n in sizes:
        a, b = _cell(n, "factorize", work), _cell(n, "factorize_exhaustive", work)
        if not a or a["returncode"] != 0:
            continue
        fit = (a["extra"].get("fit_seconds") or {}).get("plain_als")
        rmse = a["extra"]["test_rmse"].get("als_bias")
        line = (f"{label(n):>5} {a['wall_s']:>8.1f} {_search_seconds(a):>8.1f} "
                f"{fit or 0:>11.1f} {a['wall_s'] / fit if fit else 0:>7.2f}  "
                f"{_chosen(a):<16} {rmse:>10.4f}")
        if b and b["returncode"] == 0:
            best = b["extra"]["test_rmse"].get("als_bias")
            line += (f"   {b['wall_s']:>12.1f} {_chosen(b):<16} {best:>7.4f} "
                     f"{100 * (rmse / best - 1):>+6.2f}")
        lines.append(line)
    return "\n".join(lines + [
        "job s: the factorize job's wall time (JVM start to exit); search s: its validation splits and "
        "searches (on the user sample, then the refinement on a larger one); plain fit s: its fit of plain MLlib ALS at the chosen rank on the whole training set.",
        "probe RMSE: ALS+bias on the probe rows; exhaustive: the same job with "
        "factorize.search_sample_ratings=0 and search_iters=0 (every candidate fitted on every training "
        "rating with the full iterations); gap: ours / its - 1."])


def _search_seconds(r: dict) -> float:
    """The validation splits and searches of a factorize run (its ``timings_seconds``)."""
    t = r["extra"].get("timings_seconds") or {}
    keys = ("sample_size", "split_validation", "search_", "refine_")
    return sum(v for k, v in t.items() if k.startswith(keys))


def _chosen(r: dict) -> str:
    c = r["extra"].get("chosen") or {}
    return f"r{c.get('rank')} λ{c.get('als_bias_reg', 0):g}"


def _wall(r: dict | None) -> str:
    if r is None:
        return "not run"
    return f"{r['wall_s']:.1f}" if r["returncode"] == 0 else f"exit {r['returncode']}"


def _gib(r: dict | None) -> str:
    return f"{r['peak_rss_bytes'] / 2**30:.2f}" if r else ""


def _row(n: int, stage: str, r: dict | None, prev: tuple[int, float] | None) -> str:
    if r is None:
        return f"{label(n):>5} {stage:<11} {'not run':>9}"
    if r["returncode"] != 0:
        return (f"{label(n):>5} {stage:<11} {'FAILED':>9} exit {r['returncode']} after "
                f"{r['wall_s']:.0f}s, peak {r['peak_rss_bytes'] / 2**30:.2f} GiB (see {r['log']})")
    exp = _exponent(prev[1], r["wall_s"], prev[0], n) if prev else ""
    rows = f"{r['rows']:,}" if r.get("rows") is not None else "?"
    load = f"{r['load']['mean']:.1f}/{r['load']['max']:.1f}"
    stale = "  (stale: an input stage ran later)" if r.get("stale") else ""
    return (f"{label(n):>5} {stage:<11} {r['wall_s']:>9.1f} {r['peak_rss_bytes'] / 2**30:>9.2f} "
            f"{rows:>13} {exp:>5}  {load:>13}{stale}")


def _footer(stages: list[str]) -> list[str]:
    return [
        "exp: exponent of wall time vs ratings against the previous size, log(t2/t1) / log(n2/n1).",
        "peak GiB: RSS of spark-submit.sh and all its children (driver, JVM, Python workers).",
        "rows: " + "; ".join(f"{s} = {ROWS_WHAT[s]}" for s in stages) + ".",
        f"load: 1-minute load average sampled while the stage ran, on a shared {os.cpu_count()}-core "
        "machine; it includes the stage itself (local[*] keeps every core busy), so load above "
        "the core count means other work competed with it and the times are inflated.",
    ]


# ------------------------------------------------------------------------------------ helpers
def _rel(p: Path) -> str:
    p = Path(p).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def _now() -> str:
    return _iso(time.time())


def _mem_bytes() -> int:
    import psutil
    return psutil.virtual_memory().total


def _names(text: str, known: tuple[str, ...]) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in known]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {bad} (known: {', '.join(known)})")
    return names


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.strip().splitlines()[1:]))
    p.add_argument("--sizes", type=lambda t: sorted({parse_size(x) for x in t.split(",") if x.strip()}),
                   default=list(SIZES), help="comma-separated rating counts (default 100k,1M,10M,30M,100M)")
    p.add_argument("--stages", type=lambda t: _names(t, STAGES + PEER_STAGES + EXTRA_STAGES), default=list(STAGES),
                   help="stages to run (default the four jobs; peers may be named too, e.g. "
                        "ingest,pandas_ingest; the table shows these)")
    p.add_argument("--work", default=str(ROOT / "data" / "bench" / "scale"), help="cache dir")
    p.add_argument("--fresh-stage", type=lambda t: _names(t, STAGES + PEER_STAGES + EXTRA_STAGES), default=[],
                   help="redo these stages even when cached")
    p.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="the jobs' --log-level")
    p.add_argument("--table-only", action="store_true", help="run nothing, print the table of the cache")
    p.add_argument("--peers", action="store_true",
                   help="also run the single-machine peers (pandas ingest; our exact Jaccard and scipy's) "
                        "at the --peer-sizes among --sizes")
    p.add_argument("--peer-sizes", type=lambda t: sorted({parse_size(x) for x in t.split(",") if x.strip()}),
                   default=list(PEER_SIZES), help="sizes the peers run at (default 1M,10M)")
    args = p.parse_args(argv)
    work = Path(args.work).resolve()
    if not args.table_only:
        print(f"machine: {os.cpu_count()} cores, {_mem_bytes() / 2**30:.0f} GiB; "
              f"load average {os.getloadavg()[0]:.1f}; work dir {_rel(work)}", flush=True)
        for n in args.sizes:
            peers = list(PEER_STAGES) if args.peers and n in args.peer_sizes else []
            run_size(work, n, args.stages + peers, set(args.fresh_stage), args.log_level)
    print()
    print(table(work, args.sizes, [s for s in args.stages if s in STAGES]))
    print()
    print(peer_table(work, args.sizes))
    print()
    print(search_table(work, args.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
