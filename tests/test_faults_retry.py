"""Fault suite, task retry: with ``spark.task.maxFailures`` = 3 (master ``local[2,3]``) and the
first attempt of every even-numbered task failing at the library's fault points
(:data:`batchml.spark.FAULT_CONF`: the ingest's staged writes, every ``materialize``), the jobs'
outputs equal a clean run's, row for row: the dense ids and tables of ingest, and the factor
model of factorize with a fixed seed (its test and validation splits, biases and ALS factors), and
the top-K table of similarity (its partial products run in a ``mapInArrow`` that loses tasks).

Each run is a real job process (a retry needs its own master); the outputs are compared with
pandas.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from batchml.spark import FAULT_CONF
from batchml.synth.movielens import write_movielens_dump
from test_user_errors import job, run

pytestmark = [pytest.mark.fault, pytest.mark.slow]

FAULT_MARK = "batchml test fault"


def _conf(tmp: Path, name: str, faults: bool) -> str:
    extra = {"spark.default.parallelism": "4", "spark.sql.adaptive.coalescePartitions.enabled": "false"}
    if faults:
        extra[FAULT_CONF] = "*"
    cfg = {"spark": {"master": "local[2,3]", "shuffle_partitions": 4, "driver_memory": "1g", "ui": False,
                     "log_level": "WARN", "checkpoint_dir": str(tmp / f"ckpt-{name}"), "extra": extra},
           "factorize": {"ranks": [4], "regs": [0.1], "search_extend": 0, "bias_reg_user": [5.0],
                         "bias_reg_item": [3.0], "bias_sweeps": 4, "iters": 4, "item_cf_neighbours": 10}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _table(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    df = df.map(lambda v: tuple(v) if hasattr(v, "__len__") and not isinstance(v, str) else v)
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def _run(tmp: Path, name: str, faults: bool, *argv: str) -> None:
    proc = run(job(*argv[:1], *argv[1:], "--conf", _conf(tmp, name, faults)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the faulted run really lost tasks and retried them
    assert (FAULT_MARK in proc.stderr) == faults, proc.stderr[-3000:]


def _assert_same_tables(a: Path, b: Path) -> None:
    tables = sorted(p.name for p in a.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert tables == sorted(p.name for p in b.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    for t in tables:
        pd.testing.assert_frame_equal(_table(a / t), _table(b / t), check_exact=True, obj=t)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retry")
    dump = write_movielens_dump(tmp / "raw", 3000, variant="csv", seed=5, plant=1, duplicates=5)
    out = {}
    for name, faults in (("clean", False), ("faulted", True)):
        ds, model = tmp / f"ds-{name}", tmp / f"model-{name}"
        _run(tmp, f"ingest-{name}", faults, "ingest", "--format", "movielens", "--input", str(dump.path),
             "--output", str(ds))
        _run(tmp, f"factorize-{name}", faults, "factorize", "--dataset", str(tmp / "ds-clean"),
             "--output", str(model))
        _run(tmp, f"similarity-{name}", faults, "similarity", "--dataset", str(tmp / "ds-clean"),
             "--output", str(tmp / f"sim-{name}"))
        out[name] = (ds, model)
    return out


def test_ingest_after_task_retries_equals_a_clean_run(runs):
    (clean, _), (faulted, _) = runs["clean"], runs["faulted"]
    _assert_same_tables(clean, faulted)
    stats = [json.loads((d / "_stats.json").read_text()) for d in (clean, faulted)]
    for s in stats:
        s.pop("timings_s"), s.pop("input")
    assert stats[0] == stats[1]


def test_factorize_after_task_retries_equals_a_clean_run(runs):
    (_, clean), (_, faulted) = runs["clean"], runs["faulted"]
    _assert_same_tables(clean, faulted)
    meta = [json.loads((d / "model.json").read_text()) for d in (clean, faulted)]
    assert meta[0] == meta[1]


def test_similarity_after_task_retries_equals_a_clean_run(runs):
    base = runs["clean"][0].parent
    _assert_same_tables(base / "sim-clean", base / "sim-faulted")
