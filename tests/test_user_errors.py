"""A user's mistake ends with exactly one ``error:`` line on stderr and a non-zero exit, never a traceback.

Each case runs the real entry point in its own process, as a user would (the job runner stops its
SparkSession, so these cannot share the test session).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    env.update({"SPARK_LOCAL_IP": "127.0.0.1", "BATCHML_PYTHON": sys.executable,
                "PYSPARK_PYTHON": sys.executable, "BATCHML_DRIVER_MEMORY": "1g"})
    return env


def run(argv: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def assert_one_error_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    assert not any(ln.startswith("error:") for ln in proc.stdout.splitlines())
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def job(name: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "jobs" / f"{name}.py"), *args]


@pytest.mark.parametrize("spec", ["random:abc", "random:1.5"])
def test_bad_test_spec(tmp_path, spec):
    proc = run(job("factorize", "--dataset", str(tmp_path), "--output", str(tmp_path / "m"), "--test", spec))
    assert_one_error_line(proc, 2, "factorize.test", spec)


def test_flag_out_of_range_is_refused_like_the_same_set(tmp_path):
    by_flag = run(job("tumor_prepare", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--size", "0"))
    by_set = run(job("tumor_prepare", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                     "--set", "tumor.size=0"))
    assert assert_one_error_line(by_flag, 2, "tumor.size") == assert_one_error_line(by_set, 2, "tumor.size")


@pytest.mark.slow
@pytest.mark.parametrize("name, args", [
    ("similarity", ["--dataset", "{missing}", "--output", "{tmp}/o"]),
    ("factorize", ["--dataset", "{missing}", "--output", "{tmp}/o"]),
    ("recommend", ["--model", "{missing}", "--dataset", "{missing}", "--output", "{tmp}/o"]),
    ("ingest", ["--format", "movielens", "--input", "{missing}", "--output", "{tmp}/o"]),
    ("tumor_train", ["--data", "{missing}", "--output", "{tmp}/o"]),
])
def test_missing_input_is_one_error_line(tmp_path, name, args):
    argv = [a.format(missing=tmp_path / "absent", tmp=tmp_path) for a in args]
    assert_one_error_line(run(job(name, *argv)), 1, "absent")
    assert not (tmp_path / "o").exists()


def _movielens_dump(path: Path) -> Path:
    from batchml.synth.movielens import write_movielens_dump
    write_movielens_dump(str(path), 200, seed=1)
    return path


def _snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("output", ["{raw}", "{raw}/ds", "{raw}/..", "{raw}/./sub/../"])
def test_output_over_input_is_refused_and_the_input_kept(tmp_path, output):
    raw = _movielens_dump(tmp_path / "raw")
    before = _snapshot(raw)
    proc = run(job("ingest", "--format", "movielens", "--input", str(raw),
                   "--output", output.format(raw=raw)))
    assert_one_error_line(proc, 2, "overlaps --input")
    assert _snapshot(raw) == before


def test_jobs_never_write_over_their_dataset_or_model(tmp_path):
    ds, model = tmp_path / "ds", tmp_path / "model"
    for d in (ds, model):
        d.mkdir()
        (d / "keep.txt").write_text("mine")
    cases = [job("factorize", "--dataset", str(ds), "--output", str(ds)),
             job("similarity", "--dataset", str(ds), "--output", str(ds / "sim")),
             job("recommend", "--model", str(model), "--dataset", str(ds), "--output", str(model)),
             job("tumor_train", "--data", str(ds), "--output", str(tmp_path))]
    for argv in cases:
        assert_one_error_line(run(argv), 2, "overlaps")
    assert (ds / "keep.txt").read_text() == (model / "keep.txt").read_text() == "mine"


def test_output_that_is_an_existing_file_is_refused_and_kept(tmp_path):
    raw = _movielens_dump(tmp_path / "raw")
    target = tmp_path / "notes.txt"
    target.write_text("do not touch")
    proc = run(job("ingest", "--format", "movielens", "--input", str(raw), "--output", str(target)))
    assert_one_error_line(proc, 1, "existing file")
    assert target.read_text() == "do not touch"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "raw"]


@pytest.mark.parametrize("uri", ["s3a://bucket/ds", "s3://bucket/ds", "gs://bucket/ds"])
def test_output_on_an_object_store_is_refused(tmp_path, uri):
    raw = _movielens_dump(tmp_path / "raw")
    proc = run(job("ingest", "--format", "movielens", "--input", str(raw), "--output", uri))
    assert_one_error_line(proc, 2, "not supported")


def test_tumor_model_dir_must_be_a_path_workers_write(tmp_path):
    proc = run(job("tumor_train", "--data", str(tmp_path), "--output", "hdfs:///models/tumor"))
    assert_one_error_line(proc, 2, "local or shared-mount path")


def test_spark_submit_option_without_value():
    assert_one_error_line(run(["./spark-submit.sh", "--conf"]), 2, "--conf needs a value")
    assert_one_error_line(run(["./spark-submit.sh", "jobs/ingest.py", "--master"]), 2, "--master")
    assert_one_error_line(run(["./spark-submit.sh"]), 2, "no job file")


@pytest.mark.slow
def test_checkout_path_with_a_space(tmp_path):
    """spark-submit.sh quotes the log4j URI: a checkout under a path with a space still runs jobs."""
    dest = tmp_path / "my checkout"
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".venv", ".git", "data", "dist", "__pycache__"))
    assert run(["./spark-submit.sh", "--help"], cwd=dest).returncode == 0
    out = tmp_path / "gen out"
    proc = run(["./spark-submit.sh", "jobs/generate.py", "--format", "movielens", "--output", str(out),
                "--ratings", "300"], cwd=dest)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "u.data").is_file()
