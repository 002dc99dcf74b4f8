"""A standalone Spark cluster on 127.0.0.1 whose worker shares nothing with this checkout.

The worker runs in its own mount namespace where tmpfs mounts hide this checkout and the driver's
virtual environment, with a clean environment (``env -i``, PATH=/usr/bin:/bin), its own copy of
Spark's bin/ and jars/ (no pyspark Python code) as SPARK_HOME, and a working dir under /tmp.  So an
executor's Python can only come from the archive that ``./spark-submit.sh`` ships (``make
dist-env``); the jobs' outputs go to a dir under /tmp that driver and worker both see.  Runs
ingest -> factorize -> recommend with ``conf/cluster.yaml``, the tumor jobs with two barrier tasks,
and shows that without the archive the executors have no Python.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pyspark
import pytest

from batchml.model_dir import MODEL_FILE
from batchml.schema import METRICS_FILE, RANK_COL, RECOMMENDATIONS, STATS_FILE, USER_COL
from batchml.synth.images import write_phantoms
from batchml.synth.netflix import write_netflix_dump
from batchml.tumor import schema as TS

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix).resolve()
ARCHIVES = {"rating": ROOT / "dist" / "batchml-env.tar.gz", "tumor": ROOT / "dist" / "batchml-tumor-env.tar.gz"}
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, pred, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                last = json.loads(r.read())
                if pred(last):
                    return last
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not ready: {last}")


def _hidden_paths() -> list[Path]:
    """The checkout, and the driver's venv where it is not inside the checkout."""
    return [ROOT] + ([] if VENV.is_relative_to(ROOT) else [VENV])


def _hide_script(command: list[str]) -> str:
    """``sh -c`` text run under ``unshare -m``: tmpfs over every hidden path, then ``command``."""
    mounts = [f"mount -t tmpfs none {shlex.quote(str(p))}" for p in _hidden_paths()]
    return " && ".join(mounts + ["exec " + shlex.join(command)])


def _cannot_hide() -> str | None:
    """Why the worker cannot be cut off from the checkout here, or None."""
    if os.geteuid() != 0:
        return "needs root: the worker hides the checkout with unshare -m and tmpfs mounts"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", _hide_script(["test", "!", "-e", str(ROOT / "jobs")])],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -m / mount -t tmpfs not permitted here: {probe.stderr.strip()[:200]}"
    return None


def _spark_home_copy(dest: Path) -> Path:
    """Spark's launch scripts and jars, outside the checkout and the venv (hard links where the
    filesystem allows); pyspark's own Python code is left behind."""
    src = Path(pyspark.__file__).parent
    link = lambda s, d: os.link(s, d) if os.stat(s).st_dev == os.stat(dest.parent).st_dev else shutil.copy2(s, d)  # noqa: E731
    for sub in ("bin", "jars"):
        shutil.copytree(src / sub, dest / sub, copy_function=link)
    return dest


@dataclass
class Cluster:
    url: str
    ui: str
    base: Path
    work: Path
    logs: Path

    def submit(self, job: str, *job_args: str, archive: str | None = None, timeout: int = 600):
        env = {k: v for k, v in os.environ.items()
               if k not in {"PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "BATCHML_ENV_ARCHIVE"}}
        env.update({"SPARK_LOCAL_IP": "127.0.0.1", "BATCHML_PYTHON": sys.executable,
                    "BATCHML_DRIVER_MEMORY": "1g"})
        if archive is not None:
            env["BATCHML_ENV_ARCHIVE"] = archive
        cmd = ["./spark-submit.sh", "--master", self.url, "--conf", "spark.executor.memory=1g",
               job, *job_args, "--log-level", "WARNING"]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

    def apps(self) -> list[dict]:
        return _wait(f"{self.ui}/json/", lambda j: True)["completedapps"]

    def executor_dirs(self, app_name: str) -> list[Path]:
        """The worker's dirs of the executors of the completed app named ``app_name``."""
        ids = [a["id"] for a in self.apps() if a["name"] == app_name]
        return [d for i in ids for d in (self.work / i).glob("*") if d.is_dir()]

    def diagnose(self) -> str:
        """The tails of the worker's and the newest executor's logs, for a failure message."""
        tails = [f"--- {p}\n" + p.read_text(errors="replace")[-1500:]
                 for p in [self.logs / "worker.log", *sorted(self.work.glob("*/*/stderr"),
                                                               key=os.path.getmtime)[-1:]]
                 if p.is_file()]
        return "\n".join(tails)


def _start(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen | None) -> None:
    """End ``proc`` and what it started (its own process group)."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _cannot_hide()
    if reason:
        pytest.skip(reason)
    missing = [str(p) for p in ARCHIVES.values() if not p.is_file()]
    assert not missing, f"{missing} missing: run `make dist-env` (make test does)"
    base = tmp_path_factory.mktemp("cluster")
    assert not any(base.resolve().is_relative_to(p) for p in _hidden_paths()), "the worker must see the outputs"
    home, work, logs = _spark_home_copy(base / "spark-home"), base / "work", base / "logs"
    for d in (work, logs, base / "home"):
        d.mkdir()
    clean_env = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={base / 'home'}", f"SPARK_HOME={home}",
                 "SPARK_LOCAL_IP=127.0.0.1", "SPARK_NO_DAEMONIZE=1"]
    spark_class = str(home / "bin" / "spark-class")
    port, ui = _free_port(), _free_port()
    master = worker = None
    try:
        master = _start([*clean_env, spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                         "--port", str(port), "--webui-port", str(ui)], logs / "master.log", base)
        _wait(f"http://127.0.0.1:{ui}/json/", lambda j: j.get("status") == "ALIVE")
        worker_cmd = [*clean_env, spark_class, "org.apache.spark.deploy.worker.Worker",
                      f"spark://127.0.0.1:{port}", "--host", "127.0.0.1", "--cores", "2", "--memory", "4g",
                      "--webui-port", str(_free_port()), "--work-dir", str(work)]
        worker = _start(["unshare", "-m", "sh", "-c", _hide_script(worker_cmd)], logs / "worker.log", base)
        _wait(f"http://127.0.0.1:{ui}/json/", lambda j: j.get("aliveworkers", 0) >= 1)
        yield Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}", base, work, logs)
    finally:
        _stop(worker)
        _stop(master)


def _assert_ran(proc, cluster: Cluster) -> None:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:] + "\n" + cluster.diagnose()


def _assert_shipped_python(cluster: Cluster, app_name: str, family: str) -> None:
    """The app's executors unpacked the family's archive and ran Python from it."""
    dirs = cluster.executor_dirs(app_name)
    assert dirs, f"{app_name} did not run on the standalone worker"
    site = "environment/lib/python{}.{}/site-packages".format(*sys.version_info[:2])
    for d in dirs:
        assert (d / "environment" / "bin" / "python").exists(), f"{d}: no shipped environment"
        assert (d / site / "tensorflow").is_dir() == (family == "tumor"), f"{d}: wrong archive"


def _cluster_conf(cluster: Cluster, *extra: str) -> list[str]:
    """conf/cluster.yaml (event logs on) sized down to this test, paths both sides see."""
    events = cluster.base / "events"
    events.mkdir(exist_ok=True)
    sets = ["spark.shuffle_partitions=4", f"spark.checkpoint_dir={cluster.base / 'chk'}",
            f"spark.extra.spark.eventLog.dir=file://{events}", "ingest.max_reject_fraction=0.05", *extra]
    return ["--conf", "conf/cluster.yaml", *[a for s in sets for a in ("--set", s)]]


def _finished_event_logs(events: Path) -> list[Path]:
    """The event logs of finished apps: a file, or with rolling logs (Spark 4's default) a dir whose
    ``appstatus_*`` file lost its ``.inprogress`` suffix."""
    return [p for p in events.iterdir() if not p.name.endswith(".inprogress") and (
        p.is_file() or any(f.name.startswith("appstatus_") and not f.name.endswith(".inprogress")
                           for f in p.iterdir()))]


def test_rating_jobs_on_a_worker_that_shares_nothing(cluster):
    raw = write_netflix_dump(cluster.base / "raw", n_ratings=3000, seed=5, plant=1)
    ds, model, recs = cluster.base / "ds", cluster.base / "model", cluster.base / "recs"
    proc = cluster.submit("jobs/ingest.py", "--format", "netflix", "--input", str(raw.path), "--output", str(ds),
                          "--remove-probe", *_cluster_conf(cluster))
    _assert_ran(proc, cluster)
    stats = json.loads((ds / STATS_FILE).read_text())
    assert stats["reconcile"]["all_files_reconcile"] and stats["ratings"] > 0
    proc = cluster.submit("jobs/factorize.py", "--dataset", str(ds), "--output", str(model), "--test", "probe",
                          *_cluster_conf(cluster, "factorize.ranks=2", "factorize.regs=0.1",
                                         "factorize.rounds=1", "factorize.iters=2", "factorize.bias_sweeps=1",
                                         "factorize.item_cf_neighbours=5"))
    _assert_ran(proc, cluster)
    assert (model / METRICS_FILE).is_file() and (model / MODEL_FILE).is_file()
    proc = cluster.submit("jobs/recommend.py", "--model", str(model), "--dataset", str(ds), "--output", str(recs),
                          "--top-n", "3", *_cluster_conf(cluster, "recommend.min_ratings=0"))
    _assert_ran(proc, cluster)
    top = pq.read_table(recs / RECOMMENDATIONS).to_pandas()
    assert len(top) > 0 and top.groupby(USER_COL)[RANK_COL].max().max() <= 3
    assert (recs / METRICS_FILE).is_file()
    for app in ("batchml-ingest", "batchml-factorize", "batchml-recommend"):
        _assert_shipped_python(cluster, app, "rating")
    logs = _finished_event_logs(cluster.base / "events")
    assert len(logs) == 3, f"conf/cluster.yaml turns event logs on: {logs}"


def test_tumor_jobs_with_two_barrier_tasks(cluster):
    images = cluster.base / "images"
    write_phantoms(images, n_per_class=24, min_size=24, max_size=48, seed=3, duplicates=1, broken=1)
    shards, model = cluster.base / "shards", cluster.base / "tumor-model"
    proc = cluster.submit("jobs/tumor_prepare.py", "--input", str(images), "--output", str(shards),
                          "--size", "24", *_cluster_conf(cluster))
    _assert_ran(proc, cluster)
    stats = json.loads((shards / STATS_FILE).read_text())
    assert stats["accepted"] == 48 and stats["rejected"] == 2 and stats["reconcile"]["ok"], stats
    proc = cluster.submit("jobs/tumor_train.py", "--data", str(shards), "--output", str(model), "--workers", "2",
                          "--epochs", "2", "--batch-size", "8",
                          *_cluster_conf(cluster, "tumor.architecture=small", "tumor.grid_images=4"))
    _assert_ran(proc, cluster)
    metrics = json.loads((model / METRICS_FILE).read_text())
    assert metrics["workers"] == 2 and 0.0 <= metrics["ber"] <= 1.0, metrics
    assert (model / TS.MODEL_FILE).is_file()
    for app in ("batchml-tumor-prepare", "batchml-tumor-train"):
        _assert_shipped_python(cluster, app, "tumor")


def test_without_the_archive_executors_have_no_python(cluster):
    """BATCHML_ENV_ARCHIVE=none: executors are told to run the driver's .venv python, which the
    worker cannot see.  The ingest runs no Python on executors and succeeds; the similarity job's
    partial products (``mapInArrow`` on its shuffle path) fail at their first Python task (what a
    missing archive would do)."""
    raw = write_netflix_dump(cluster.base / "raw-none", n_ratings=500, seed=6, plant=0)
    ds = cluster.base / "ds-none"
    proc = cluster.submit("jobs/ingest.py", "--format", "netflix", "--input", str(raw.path), "--output", str(ds),
                          *_cluster_conf(cluster, "spark.extra.spark.task.maxFailures=1"), archive="none",
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = cluster.base / "sim-none"
    proc = cluster.submit("jobs/similarity.py", "--dataset", str(ds), "--output", str(out),
                          *_cluster_conf(cluster, "spark.extra.spark.task.maxFailures=1",
                                         "similarity.broadcast_max_ratings=0"), archive="none", timeout=300)
    assert proc.returncode != 0 and not out.exists()
    assert sys.executable in proc.stdout + proc.stderr + cluster.diagnose(), (proc.stdout + proc.stderr)[-3000:]
