"""End to end through ./spark-submit.sh in local mode, and its refusals (the standalone cluster run is
in test_cluster.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchml.synth.netflix import write_netflix_dump

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


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


def _refusal(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_cluster_mode_refuses_a_missing_environment_archive(tmp_path):
    env = _env(tmp_path) | {"BATCHML_ENV_ARCHIVE": str(tmp_path / "gone.tar.gz")}
    proc = subprocess.run(["./spark-submit.sh", "--master", "spark://127.0.0.1:1", "jobs/ingest.py", "--format",
                           "netflix", "--input", "x", "--output", str(tmp_path / "o")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "gone.tar.gz" in _refusal(proc)


@pytest.mark.parametrize("job, archive", [("jobs/ingest.py", "batchml-env.tar.gz"),
                                          ("jobs/tumor_train.py", "batchml-tumor-env.tar.gz")])
def test_cluster_mode_needs_the_job_familys_archive(tmp_path, job, archive):
    """A checkout without dist/ (here: a copy of the script beside no archives) refuses to submit."""
    script = tmp_path / "spark-submit.sh"
    shutil.copy2(ROOT / "spark-submit.sh", script)
    env = {k: v for k, v in _env(tmp_path).items() if k != "BATCHML_ENV_ARCHIVE"}
    proc = subprocess.run([str(script), "--master", "yarn", job, "--output", str(tmp_path / "o")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    line = _refusal(proc)
    assert f"dist/{archive}" in line and "make dist-env" in line
