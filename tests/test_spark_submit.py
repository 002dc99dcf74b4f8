"""End to end through ./spark-submit.sh: local mode, and a standalone cluster on loopback."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from batchml.synth.netflix import write_netflix_dump

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update({"SPARK_LOCAL_IP": "127.0.0.1", "BATCHML_PYTHON": sys.executable,
                "PYSPARK_PYTHON": sys.executable, "BATCHML_DRIVER_MEMORY": "1g",
                "SPARK_WORKER_DIR": str(tmp_path / "work")})
    return env


def _ingest_args(raw: Path, out: Path, tmp_path: Path) -> list[str]:
    return ["jobs/ingest.py", "--format", "netflix", "--input", str(raw), "--output", str(out),
            "--set", "spark.shuffle_partitions=4", "--set", f"spark.checkpoint_dir={tmp_path / 'chk'}"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return write_netflix_dump(tmp_path_factory.mktemp("submit") / "raw", n_ratings=2000, seed=5, plant=1)


def test_local_mode(raw, tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.run(["./spark-submit.sh", *_ingest_args(raw.path, out, tmp_path)], cwd=ROOT,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["ratings"] == raw.n_ratings and stats["reconcile"]["ratings_reconcile"]


def test_bad_flag_exits_nonzero(tmp_path):
    proc = subprocess.run(["./spark-submit.sh", "jobs/ingest.py", "--format", "netflix", "--input", "x",
                           "--output", str(tmp_path / "o"), "--set", "spark.nope=1"],
                          cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "spark.nope" in proc.stdout + proc.stderr


def _wait(url: str, pred, timeout: float = 90) -> dict:
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


def test_standalone_cluster_on_loopback(raw, tmp_path):
    import pyspark
    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    port, ui = _free_port(), _free_port()
    env = _env(tmp_path)
    (tmp_path / "work").mkdir()
    master = subprocess.Popen([str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)], env=env,
                              stdout=open(tmp_path / "master.log", "w"), stderr=subprocess.STDOUT)
    worker = None
    try:
        _wait(f"http://127.0.0.1:{ui}/json/", lambda j: j.get("status") == "ALIVE")
        worker = subprocess.Popen([str(spark_class), "org.apache.spark.deploy.worker.Worker",
                                   f"spark://127.0.0.1:{port}", "--host", "127.0.0.1", "--cores", "2",
                                   "--memory", "2g", "--webui-port", str(_free_port()),
                                   "--work-dir", str(tmp_path / "work")], env=env,
                                  stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT)
        _wait(f"http://127.0.0.1:{ui}/json/", lambda j: j.get("aliveworkers", 0) >= 1)
        out = tmp_path / "ds"
        proc = subprocess.run(["./spark-submit.sh", "--master", f"spark://127.0.0.1:{port}",
                               "--conf", "spark.executor.memory=1g",
                               *_ingest_args(raw.path, out, tmp_path)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        assert (ROOT / "dist" / "batchml.zip").is_file()
        stats = json.loads((out / "_stats.json").read_text())
        assert stats["ratings"] == raw.n_ratings and stats["reconcile"]["all_files_reconcile"]
        apps = _wait(f"http://127.0.0.1:{ui}/json/", lambda j: j.get("completedapps"))["completedapps"]
        assert any(a["name"] == "batchml-ingest" for a in apps), "the job ran on the standalone cluster"
    finally:
        for p in (worker, master):
            if p is not None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
