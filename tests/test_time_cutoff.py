"""The global time cut-off split (``--test cutoff:F``): no test rating precedes a training rating."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from batchml.holdout_spec import parse_test_spec
from batchml.ratings import read_test_split, split_time_cutoff
from batchml.schema import ITEM_COL, RATING_COL, TS_COL, USER_COL

SCHEMA = f"{USER_COL} int, {ITEM_COL} int, {RATING_COL} float, {TS_COL} timestamp"


def _rows(n: int = 60, seed: int = 3):
    rng = np.random.default_rng(seed)
    base = dt.datetime(2005, 1, 1)
    rows = []
    for k in range(n):
        ts = None if k % 17 == 0 else base + dt.timedelta(hours=int(rng.integers(0, 24 * 400)))
        rows.append((int(k % 7), int(k), float(rng.integers(1, 6)), ts))
    return rows


def test_parse_cutoff_spec():
    assert parse_test_spec("cutoff:0.2").kind == "cutoff"
    with pytest.raises(ValueError):
        parse_test_spec("cutoff:1.2")


def test_cutoff_matches_a_plain_python_reference(spark):
    rows = _rows()
    df = spark.createDataFrame(rows, SCHEMA)
    train, test = split_time_cutoff(df, fraction=0.25)
    micros = [int(r[3].replace(tzinfo=dt.timezone.utc).timestamp() * 1_000_000) for r in rows if r[3]]
    cut = np.percentile(np.array(micros, dtype=np.float64), 75)   # linear, as Spark's percentile
    expected = {r[1] for r in rows if r[3] and r[3].replace(tzinfo=dt.timezone.utc).timestamp() * 1e6 > cut}
    got_test = {r[ITEM_COL] for r in test.collect()}
    got_train = {r[ITEM_COL] for r in train.collect()}
    assert got_test == expected
    assert got_train == {r[1] for r in rows} - expected          # null times stay in training
    latest_train = max(r[TS_COL] for r in train.collect() if r[TS_COL] is not None)
    assert all(r[TS_COL] > latest_train for r in test.collect())  # no leak from the future


def test_cutoff_through_the_test_spec_reader(spark, tmp_path):
    df = spark.createDataFrame(_rows(), SCHEMA)
    split = read_test_split(spark, df, dataset=str(tmp_path), spec="cutoff:0.25", seed=1)
    assert split.train.count() + split.test.count() == df.count()
    assert split.test.count() > 0
