"""Factorization: biases, splits, prediction fallbacks, the pipeline end to end, the model dir."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F, types as T

from batchml.bias import fit_biases, relaxation_factor
from batchml.config import build_config
from batchml.errors import JobError
from batchml.factor_fit import aligned_model, bias_model
from batchml.factor_model import FactorModel, evaluate, with_prediction
from batchml.factor_search import overfit_check
from batchml.factorize import (SampleLimits, als_blocks, hold_out_test, item_cf_metrics,
                               refine_sample_limit, run_factorize, sample_limits, search_iters,
                               search_sample_limit)
from batchml.model_dir import load_model, read_meta
from batchml.holdout_spec import parse_test_spec
from batchml.ratings import sample_users, split_holdout, split_random, split_temporal
from batchml.schema import BIAS_COL, FEATURES_COL, ITEM_COL, RATING_COL, TS_COL, USER_COL
from batchml.synth.model import draw_dates, draw_ratings, make_model, sample_pairs
from batchml.synth.ratings_tables import write_dataset

ROOT = Path(__file__).resolve().parents[1]

RATINGS_T = T.StructType([
    T.StructField(USER_COL, T.IntegerType(), False),
    T.StructField(ITEM_COL, T.IntegerType(), False),
    T.StructField(RATING_COL, T.FloatType(), False),
])


def _ratings_df(spark, u, i, r):
    rows = [(int(a), int(b), float(c)) for a, b, c in zip(u, i, r)]
    return spark.createDataFrame(rows, RATINGS_T)


# ------------------------------------------------------------------------------------- biases
def _numpy_biases(u, i, r, n_users, n_items, reg_user, reg_item):
    """Joint solve of min sum (r - mu - b_u - b_i)^2 + reg_u sum b_u^2 + reg_i sum b_i^2, mu = mean."""
    mu = r.mean()
    n = n_users + n_items
    a = np.zeros((n, n))
    rhs = np.zeros(n)
    for uu, ii, rr in zip(u, i, r):
        ju, ji = uu, n_users + ii
        a[ju, ju] += 1
        a[ji, ji] += 1
        a[ju, ji] += 1
        a[ji, ju] += 1
        rhs[ju] += rr - mu
        rhs[ji] += rr - mu
    a[np.arange(n_users), np.arange(n_users)] += reg_user
    a[n_users + np.arange(n_items), n_users + np.arange(n_items)] += reg_item
    b = np.linalg.solve(a, rhs)
    return mu, b[:n_users], b[n_users:]


def test_biases_match_joint_least_squares(spark):
    rng = np.random.default_rng(3)
    n_users, n_items = 30, 20
    model = make_model(n_users, n_items, 2, 0.5, rng, user_bias_sd=0.8, item_bias_sd=0.8)
    u, i = sample_pairs(240, n_users, n_items, rng)
    r = draw_ratings(model, u, i, rng).astype(float)
    reg_user, reg_item = 15.0, 25.0
    biases = fit_biases(_ratings_df(spark, u, i, r), reg_user=reg_user, reg_item=reg_item,
                        sweeps=40, tol=1e-9)
    assert biases.sweeps < 40, "alternating updates did not converge"
    mu, bu, bi = _numpy_biases(u, i, r, n_users, n_items, reg_user, reg_item)
    assert biases.mu == pytest.approx(mu, abs=1e-9)
    seen_u, seen_i = np.unique(u), np.unique(i)
    exp_u = spark.createDataFrame([(int(k), float(bu[k])) for k in seen_u],
                                  f"{USER_COL} int, {BIAS_COL} double")
    exp_i = spark.createDataFrame([(int(k), float(bi[k])) for k in seen_i],
                                  f"{ITEM_COL} int, {BIAS_COL} double")
    assert_approx_df_equality(biases.user_bias_df.select(USER_COL, BIAS_COL), exp_u, 1e-7,
                              ignore_row_order=True, ignore_nullable=True)
    assert_approx_df_equality(biases.item_bias_df.select(ITEM_COL, BIAS_COL), exp_i, 1e-7,
                              ignore_row_order=True, ignore_nullable=True)


def test_over_relaxation_waits_for_the_contraction_ratio():
    # Young's optimum for a two-block system: omega = 2 / (1 + sqrt(1 - rho)), rho = the ratio of
    # successive plain-sweep changes; plain sweeps (1.0) until three ratios were seen
    assert relaxation_factor([1.0, 0.5, 0.4]) == 1.0
    assert relaxation_factor([1.0, 0.5, 0.4, 0.32]) == pytest.approx(2 / (1 + 0.2 ** 0.5))
    assert relaxation_factor([1.0, 0.5, 0.4, 0.4]) == 1.0  # no contraction: stay plain
    assert relaxation_factor([1.0, 0.9, 0.899, 0.8989]) <= 1.9


def test_biases_with_offset_fit_the_offset_target(spark):
    # target = rating - offset: a constant offset of 1 shifts mu by -1 and leaves biases alone
    df = spark.createDataFrame([(0, 0, 4.0, 1.0), (0, 1, 2.0, 1.0), (1, 0, 5.0, 1.0)],
                               [USER_COL, ITEM_COL, RATING_COL, "off"])
    plain = fit_biases(df, reg_user=1.0, reg_item=1.0, sweeps=2)
    shifted = fit_biases(df, reg_user=1.0, reg_item=1.0, sweeps=2, col_offset="off")
    assert shifted.mu == pytest.approx(plain.mu - 1.0)
    assert_approx_df_equality(shifted.user_bias_df, plain.user_bias_df, 1e-12,
                              ignore_row_order=True)


def test_one_sweep_is_the_item_then_user_update(spark):
    # sweep 1: b_i = sum(r - mu) / (reg_i + n_i) with b_u = 0, then b_u from those b_i
    df = spark.createDataFrame([(0, 0, 5.0), (0, 1, 3.0), (1, 0, 4.0), (2, 1, 1.0)],
                               [USER_COL, ITEM_COL, RATING_COL])
    b = fit_biases(df, reg_user=1.0, reg_item=2.0, sweeps=1)
    mu = 13.0 / 4
    bi = {0: (5 + 4 - 2 * mu) / (2 + 2), 1: (3 + 1 - 2 * mu) / (2 + 2)}
    bu = {0: (5 - mu - bi[0] + 3 - mu - bi[1]) / (1 + 2), 1: (4 - mu - bi[0]) / (1 + 1),
          2: (1 - mu - bi[1]) / (1 + 1)}
    assert b.mu == pytest.approx(mu)
    got_i = {r[ITEM_COL]: r[BIAS_COL] for r in b.item_bias_df.collect()}
    got_u = {r[USER_COL]: r[BIAS_COL] for r in b.user_bias_df.collect()}
    assert got_i == pytest.approx(bi) and got_u == pytest.approx(bu)


def test_small_lookup_tables_are_broadcast(spark):
    from batchml.spark import BROADCAST_MAX_VALUES, maybe_broadcast

    big = spark.range(1000).withColumnRenamed("id", "k")
    small = spark.range(10).withColumnRenamed("id", "k")

    def plan(df):
        return df._jdf.queryExecution().executedPlan().toString()

    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")  # only the hint may broadcast
    try:
        assert "BroadcastHashJoin" in plan(big.join(maybe_broadcast(small), on="k"))
        too_wide = maybe_broadcast(small, values_per_row=BROADCAST_MAX_VALUES)
        assert "BroadcastHashJoin" not in plan(big.join(too_wide, on="k"))
    finally:
        spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")


def test_driver_sweeps_equal_the_spark_sweeps(spark):
    """local=True runs the same updates, relaxation and early stop on the driver: same μ, sweeps,
    history and tables as the Spark jobs (to float rounding), with an offset and for a grid."""
    from batchml.bias import fit_bias_grid

    rng = np.random.default_rng(11)
    model = make_model(120, 80, 2, 0.5, rng, user_bias_sd=0.8, item_bias_sd=0.8)
    u, i = sample_pairs(3000, 120, 80, rng)
    r = draw_ratings(model, u, i, rng)
    df = _ratings_df(spark, u, i, r).withColumn("off", F.col(USER_COL) % 3 * 0.1).cache()
    for args in (dict(sweeps=30, tol=1e-6), dict(sweeps=3, tol=None, col_offset="off")):
        spark_fit, local_fit = (fit_biases(df, reg_user=4.0, reg_item=2.0, local=local, **args)
                                for local in (False, True))
        assert local_fit.mu == pytest.approx(spark_fit.mu, abs=1e-12)
        assert (local_fit.sweeps, local_fit.n_users, local_fit.n_items) == (
            spark_fit.sweeps, spark_fit.n_users, spark_fit.n_items)
        assert local_fit.history == pytest.approx(spark_fit.history, abs=1e-12)
        for side in ("user_bias_df", "item_bias_df"):
            got, want = getattr(local_fit, side), getattr(spark_fit, side)
            assert got.schema == want.schema
            assert_approx_df_equality(got, want, 1e-10, ignore_row_order=True)
    regs = [(1.0, 2.0), (5.0, 0.5), (20.0, 10.0)]
    spark_grid, local_grid = (fit_bias_grid(df, regs=regs, sweeps=30, tol=1e-4, local=local)
                              for local in (False, True))
    assert local_grid.tables.sweeps == spark_grid.tables.sweeps
    for side in ("user_df", "item_df"):
        assert_approx_df_equality(getattr(local_grid.tables, side),
                                  getattr(spark_grid.tables, side), 1e-10, ignore_row_order=True)


def test_biases_on_empty_ratings_fail(spark):
    for local in (False, True):
        with pytest.raises(ValueError, match="empty"):
            fit_biases(spark.createDataFrame([], RATINGS_T), reg_user=1.0, reg_item=1.0,
                       local=local)


# --------------------------------------------------------------------------------- prediction
SIDE_T = lambda key: T.StructType([  # noqa: E731
    T.StructField(key, T.IntegerType(), False),
    T.StructField(BIAS_COL, T.DoubleType(), True),
    T.StructField(FEATURES_COL, T.ArrayType(T.FloatType()), True),
])
PAIRS_T = T.StructType([T.StructField(USER_COL, T.IntegerType(), True),
                        T.StructField(ITEM_COL, T.IntegerType(), True)])
PRED_T = T.StructType(PAIRS_T.fields + [T.StructField("prediction", T.DoubleType(), True)])


@pytest.fixture(scope="module")
def tiny_model(spark):
    users = spark.createDataFrame([(0, 0.5, [1.0, 0.0]), (1, -0.25, None), (2, 0.0, [4.0, 4.0])],
                                  SIDE_T(USER_COL))
    items = spark.createDataFrame([(0, 0.25, [0.5, 2.0]), (1, 0.125, None), (2, -3.0, [-1.0, 0.0])],
                                  SIDE_T(ITEM_COL))
    return FactorModel(mu=3.0, user_df=users, item_df=items, rating_min=1.0, rating_max=5.0)


def test_prediction_uses_what_is_known(spark, tiny_model):
    pairs = spark.createDataFrame([(0, 0), (0, 1), (1, 0), (9, 0), (0, 9), (9, 9), (None, 0),
                                   (2, 0), (0, 2)], PAIRS_T)
    expected = spark.createDataFrame([
        (0, 0, 3.0 + 0.5 + 0.25 + 0.5),   # full model
        (0, 1, 3.0 + 0.5 + 0.125),        # item without factors: biases only
        (1, 0, 3.0 - 0.25 + 0.25),        # user without factors
        (9, 0, 3.0 + 0.25),               # unknown user: mu + b_i
        (0, 9, 3.0 + 0.5),                # unknown item: mu + b_u
        (9, 9, 3.0),                      # both unknown: mu
        (None, 0, 3.25),                  # null id: as unknown
        (2, 0, 5.0),                      # 3 + 0 + .25 + 10 clipped to the top of the scale
        (0, 2, 1.0),                      # 3 + .5 - 3 - 1 = -0.5 clipped to the bottom
    ], PRED_T)
    assert_approx_df_equality(with_prediction(pairs, tiny_model), expected, 1e-9,
                              ignore_row_order=True, ignore_nullable=True)


def test_plain_model_falls_back_to_its_fallback(spark, tiny_model):
    plain = FactorModel(mu=0.0, user_df=tiny_model.user_df.drop(BIAS_COL),
                        item_df=tiny_model.item_df.drop(BIAS_COL), fallback=3.5)
    pairs = spark.createDataFrame([(0, 0), (1, 0), (9, 0)], PAIRS_T)
    expected = spark.createDataFrame([(0, 0, 1.0), (1, 0, 3.5), (9, 0, 3.5)], PRED_T)
    # (0, 0): p.q = 0.5, clipped up to 1
    assert_approx_df_equality(with_prediction(pairs, plain), expected, 1e-9,
                              ignore_row_order=True, ignore_nullable=True)


def _item_cf_reference(train, test, mu, bu, bi, lo=1.0, hi=5.0, plain=False):
    """Plain-Python baseline-adjusted item-CF RMSE: all items with a shared user are neighbours,
    weighted by Jaccard of their user sets (``plain``: no baseline, the training mean where u
    rated no neighbour)."""
    users_of: dict[int, set[int]] = {}
    rated: dict[int, dict[int, float]] = {}
    for u, i, r in train:
        users_of.setdefault(i, set()).add(u)
        rated.setdefault(u, {})[i] = r

    def base(u, i):
        return 0.0 if plain else mu + bu.get(u, 0.0) + bi.get(i, 0.0)

    fallback = float(np.mean([r for _, _, r in train])) if plain else 0.0

    errs = []
    for u, i, r in test:
        num = den = 0.0
        for j, r_uj in rated.get(u, {}).items():
            a, b = users_of.get(i, set()), users_of[j]
            s = len(a & b) / len(a | b) if j != i and a & b else 0.0
            num += s * (r_uj - base(u, j))
            den += s
        pred = base(u, i) + (num / den if den > 0 else fallback)
        errs.append(min(max(pred, lo), hi) - r)
    return float(np.sqrt(np.mean(np.square(errs))))


def test_item_cf_on_bias_residuals_matches_plain_python(spark):
    rng = np.random.default_rng(11)
    pairs = zip(rng.integers(0, 12, 90), rng.integers(0, 8, 90))
    rows = sorted({(int(u), int(i)) for u, i in pairs})
    rated = [(u, i, float(rng.integers(1, 6))) for u, i in rows]
    test = [t for k, t in enumerate(rated) if k % 7 == 0] + [(20, 1, 4.0)]  # + an unknown user
    train = [t for k, t in enumerate(rated) if k % 7 != 0]
    mu = 3.2
    bu = {u: 0.1 * (u % 5) - 0.2 for u in range(12)}
    bi = {i: 0.3 - 0.1 * i for i in range(8)}
    baseline = FactorModel(
        mu=mu, user_df=spark.createDataFrame(list(bu.items()), f"{USER_COL} int, {BIAS_COL} double"),
        item_df=spark.createDataFrame(list(bi.items()), f"{ITEM_COL} int, {BIAS_COL} double"))
    got = item_cf_metrics(_ratings_df(spark, *zip(*train)), _ratings_df(spark, *zip(*test)),
                          neighbours=50, max_items_per_user=0, seed=1, baseline=baseline)
    assert got["item_cf_bias"]["n"] == len(test) and got["item_cf_bias"]["n_missing"] == 0
    assert got["item_cf_bias"]["rmse"] == pytest.approx(
        _item_cf_reference(train, test, mu, bu, bi), abs=1e-9)
    assert got["item_cf"]["rmse"] == pytest.approx(
        _item_cf_reference(train, test, mu, bu, bi, plain=True), abs=1e-9)
    # on a user sample of the test rows: only those rows are scored, from the same neighbours
    # and the same training mean (the sample's users' training rows are all it reads)
    test_df = _ratings_df(spark, *zip(*test))
    some = item_cf_metrics(_ratings_df(spark, *zip(*train)), test_df, neighbours=50,
                           max_items_per_user=0, seed=1, baseline=baseline, n_test=len(test),
                           max_test=6)
    kept = {r[USER_COL] for r in sample_users(test_df, fraction=6 / len(test), seed=5).collect()}
    sub = [t for t in test if t[0] in kept]
    assert 0 < len(sub) < len(test) and some["item_cf"]["n"] == len(sub)
    assert some["item_cf_bias"]["test_users_fraction"] == round(6 / len(test), 4)
    for name, plain in (("item_cf", True), ("item_cf_bias", False)):
        assert some[name]["rmse"] == pytest.approx(
            _item_cf_reference(train, sub, mu, bu, bi, plain=plain), abs=1e-9)


@pytest.mark.slow
def test_item_cf_on_residuals_beats_biases_when_users_rate_what_they_like(spark):
    """Missing-not-at-random choice (taste): Jaccard neighbours share taste, so averaging u's
    residuals on i's neighbours improves on the bias model; at random choice they would not."""
    rng = np.random.default_rng(8)
    model = make_model(500, 200, 3, 0.4, rng, factor_sd=0.8)
    u, i = sample_pairs(30_000, 500, 200, rng, model=model, taste=2.0)
    df = _ratings_df(spark, u, i, draw_ratings(model, u, i, rng)).cache()
    train, test = split_random(df, fraction=0.1, seed=3)
    biases = fit_biases(train, reg_user=5.0, reg_item=5.0, sweeps=2)
    base = bias_model(biases, rating_min=1.0, rating_max=5.0)
    cf = item_cf_metrics(train, test, neighbours=20, max_items_per_user=0, seed=1, baseline=base)
    assert cf["item_cf_bias"]["rmse"] < 0.97 * evaluate(base, test)["rmse"]


def test_global_mean_model_and_empty_pairs(spark):
    gm = FactorModel(mu=3.6)
    pairs = spark.createDataFrame([(1, 2)], PAIRS_T)
    assert [r["prediction"] for r in with_prediction(pairs, gm).collect()] == [pytest.approx(3.6)]
    assert with_prediction(spark.createDataFrame([], PAIRS_T), gm).count() == 0


def test_aligned_model_unit_factors_and_least_squares_gamma(spark, tiny_model):
    train = spark.createDataFrame([(0, 0, 4.0), (2, 2, 1.0), (0, 2, 2.0), (2, 0, 5.0)], RATINGS_T)
    aligned = aligned_model(tiny_model, train)
    uf = {r[USER_COL]: np.array(r[FEATURES_COL]) for r in aligned.user_df.collect()
          if r[FEATURES_COL] is not None}
    itf = {r[ITEM_COL]: np.array(r[FEATURES_COL]) for r in aligned.item_df.collect()
           if r[FEATURES_COL] is not None}
    for v in list(uf.values()) + list(itf.values()):
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-6)
    bu = {0: 0.5, 2: 0.0}
    bi = {0: 0.25, 2: -3.0}
    x, y = [], []
    for u, i, r in [(0, 0, 4.0), (2, 2, 1.0), (0, 2, 2.0), (2, 0, 5.0)]:
        a = np.array({0: [1, 0], 2: [1, 1]}[u], float)
        b = np.array({0: [0.5, 2.0], 2: [-1, 0]}[i], float)
        x.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        y.append(r - 3.0 - bu[u] - bi[i])
    x, y = np.array(x), np.array(y)
    assert aligned.gamma == pytest.approx(float(x @ y / (x @ x)), rel=1e-6)


def test_overfit_warning_is_logged():
    log = logging.getLogger("batchml.factorize")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    try:
        assert overfit_check(0.21, 0.9, 0.8, "seed model")
        assert not overfit_check(0.80, 0.85, 0.8, "fine model")
    finally:
        log.removeHandler(handler)
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "overfit" in records[0].getMessage()


# ------------------------------------------------------------------------------------- splits
def test_progress_logs_an_eta_for_the_planned_steps_only(caplog):
    from batchml.logs import Progress
    log = logging.getLogger("batchml.test_progress")
    p = Progress("candidate", 2, log)
    with caplog.at_level(logging.INFO, logger="batchml.test_progress"):
        p.step("a")
        p.plan_more(1)
        p.step("b")
        p.step("c")
        p.step("d")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("candidate 1/2 done") and "ETA" in lines[0] and lines[0].endswith(": a")
    assert lines[1].startswith("candidate 2/3 done") and "ETA" in lines[1]
    assert lines[2].startswith("candidate 3/3 done") and "ETA" not in lines[2]
    assert lines[3].startswith("candidate 4 (beyond the planned 3)")


def test_parse_test_spec():
    assert parse_test_spec("probe").kind == "probe"
    assert parse_test_spec("random:0.1").fraction == 0.1
    assert parse_test_spec("temporal:0.25").kind == "temporal"
    assert parse_test_spec("/data/test").path == "/data/test"
    for bad in ("random:x", "random:1.5", "temporal:0", ""):
        with pytest.raises(ValueError):
            parse_test_spec(bad)


def test_random_split_is_deterministic_and_disjoint(spark):
    rows = [(u, i, float(1 + (u * i) % 5)) for u in range(40) for i in range(25)]
    df = spark.createDataFrame(rows, RATINGS_T)
    train_a, test_a = split_random(df, fraction=0.2, seed=11)
    train_b, test_b = split_random(df, fraction=0.2, seed=11)
    assert_df_equality(test_a, test_b, ignore_row_order=True)
    assert_df_equality(train_a, train_b, ignore_row_order=True)
    _, test_c = split_random(df, fraction=0.2, seed=12)
    assert test_c.join(test_a, on=[USER_COL, ITEM_COL], how="left_anti").count() > 0
    keys = [USER_COL, ITEM_COL]
    assert train_a.join(test_a, on=keys, how="inner").count() == 0
    assert_df_equality(train_a.unionByName(test_a), df, ignore_row_order=True)
    assert 0.15 * len(rows) < test_a.count() < 0.25 * len(rows)


def test_user_sample_keeps_whole_users_deterministically(spark):
    rows = [(u, i, float(1 + (u * i) % 5)) for u in range(200) for i in range(5)]
    df = spark.createDataFrame(rows, RATINGS_T)
    a = sample_users(df, fraction=0.3, seed=7)
    assert_df_equality(a, sample_users(df, fraction=0.3, seed=7), ignore_row_order=True)
    kept = {r[USER_COL] for r in a.select(USER_COL).distinct().collect()}
    assert 0.2 * 200 < len(kept) < 0.4 * 200
    assert a.count() == 5 * len(kept)  # every kept user keeps all their ratings
    assert sample_users(df, fraction=1.0, seed=7) is df


def test_temporal_split_holds_out_each_users_latest(spark):
    schema = T.StructType(RATINGS_T.fields + [T.StructField(TS_COL, T.TimestampType(), True)])
    import datetime as dt
    day = lambda d: dt.datetime(2005, 1, d)  # noqa: E731
    rows = [(1, i, 3.0, day(i + 1)) for i in range(10)] + [(2, i, 4.0, day(i + 1)) for i in range(3)]
    rows += [(3, i, 2.0, None) for i in range(5)] + [(3, 9, 2.0, day(1))]
    df = spark.createDataFrame(rows, schema)
    train, test = split_temporal(df, fraction=0.2, seed=1)
    # user 1: 10 ratings -> the 2 latest; user 2: floor(0.6) = 0; user 3: 6 -> the 1 dated rating
    expected = spark.createDataFrame([(1, 8, 3.0, day(9)), (1, 9, 3.0, day(10)),
                                      (3, 9, 2.0, day(1))], schema)
    assert_df_equality(test, expected, ignore_row_order=True, ignore_nullable=True)
    assert train.count() == len(rows) - 3
    train2, test2 = split_temporal(df, fraction=0.2, seed=1)
    assert_df_equality(test2, test, ignore_row_order=True)


def test_holdout_pairs_are_removed_from_training(spark):
    ratings = spark.createDataFrame([(0, 0, 5.0), (0, 1, 3.0), (1, 0, 4.0), (1, 2, 1.0)], RATINGS_T)
    probe = spark.createDataFrame([(0, 1), (1, 2), (7, 7)], PAIRS_T)
    train, test = split_holdout(ratings, probe)
    assert_df_equality(train, spark.createDataFrame([(0, 0, 5.0), (1, 0, 4.0)], RATINGS_T),
                       ignore_row_order=True)
    assert_df_equality(test, spark.createDataFrame([(0, 1, 3.0), (1, 2, 1.0)], RATINGS_T),
                       ignore_row_order=True)
    # an explicit test table carries its own ratings
    explicit = spark.createDataFrame([(0, 0, 2.0)], RATINGS_T)
    train2, test2 = split_holdout(ratings, explicit)
    assert train2.join(explicit, on=[USER_COL, ITEM_COL], how="inner").count() == 0
    assert_df_equality(test2, explicit, ignore_row_order=True)


def test_hold_out_test_fails_when_a_test_pair_is_also_in_training(spark):
    """A (user, item) rated twice (an ingest contract broken) straddling the time cut-off leaks:
    the job stops with a JobError naming the leaked rows, and a clean table passes."""
    schema = T.StructType([*RATINGS_T.fields, T.StructField(TS_COL, T.TimestampType(), False)])
    day = lambda d: pd.Timestamp("2005-01-01") + pd.Timedelta(days=d)  # noqa: E731
    rows = [(u, i, 3.0, day(u * 7 + i).to_pydatetime()) for u in range(4) for i in range(5)]
    s = build_config({"factorize": {"test": "cutoff:0.25"}}).factorize
    held = hold_out_test(spark, spark.createDataFrame(rows, schema), s, dataset="unused", timings={})
    assert held.n_test + held.n_train == len(rows) and held.n_test > 0
    twice = rows + [(0, 0, 4.0, day(100).to_pydatetime())]   # (0, 0) again, after the cut-off
    with pytest.raises(JobError, match="1 test rows are also in the training set"):
        hold_out_test(spark, spark.createDataFrame(twice, schema), s, dataset="unused", timings={})


# ------------------------------------------------------------------------------ end to end
N_RATINGS = 20_000


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Strong biases, low-rank interaction, known noise; 2% probe pairs (also in ratings)."""
    out = tmp_path_factory.mktemp("fz") / "dataset"
    rng = np.random.default_rng(5)
    n_users, n_items = 300, 150
    model = make_model(n_users, n_items, 3, 0.4, rng, user_bias_sd=0.8, item_bias_sd=0.8,
                       factor_sd=0.8)
    u, i = sample_pairs(N_RATINGS, n_users, n_items, rng)
    r = draw_ratings(model, u, i, rng)
    probe = np.sort(rng.choice(N_RATINGS, size=N_RATINGS // 50, replace=False))
    write_dataset(out, u, i, r, ts=draw_dates(N_RATINGS, rng), model=model, probe=probe)
    return out


@pytest.fixture(scope="module")
def factorized(spark, generated, tmp_path_factory):
    cfg = build_config({"factorize": {
        "test": "probe", "ranks": [3], "regs": [0.05], "iters": 5, "rounds": 2, "bias_sweeps": 2,
        "bias_reg_user": 5.0, "bias_reg_item": 5.0, "item_cf_neighbours": 20,
        "item_cf_max_items_per_user": 0, "model": "biased", "search_sample_ratings": 8000,
        "search_sample_item_ratings": 80, "search_refine_item_ratings": 110}})
    out = tmp_path_factory.mktemp("fz") / "model"
    metrics = run_factorize(spark, cfg, dataset=str(generated), output=str(out))
    return metrics, out


@pytest.mark.slow
def test_als_bias_beats_the_baselines(factorized):
    metrics, _ = factorized
    t = {k: v["rmse"] for k, v in metrics["table"].items()}
    assert t["als_bias"] < t["bias_only"] < t["global_mean"]
    assert t["als_bias"] < t["plain_als"]
    assert metrics["floor"]["rmse"] <= t["als_bias"] < 1.15 * metrics["floor"]["rmse"]
    assert {"global_mean", "bias_only", "plain_als", "als_bias", "aligned", "item_cf",
            "item_cf_bias"} <= set(t)
    assert t["item_cf_bias"] < t["item_cf"]
    assert all(v["n"] == metrics["n_test"] and v["n_missing"] == 0
               for v in metrics["table"].values())
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]


@pytest.mark.slow
def test_the_search_runs_on_a_user_sample_of_a_large_training_set(factorized):
    metrics, _ = factorized
    fraction = metrics["validation"]["search_users_fraction"]
    # 150 movies x 80 ratings each is more than search_sample_ratings: the item floor sizes it
    assert fraction == pytest.approx(150 * 80 / (metrics["n_train"] * 0.9))
    # the refine's larger sample: 110 per item, below the 0.9 * 19,600 fit ratings
    assert metrics["validation"]["refine_users_fraction"] == pytest.approx(
        150 * 110 / (metrics["n_train"] * 0.9))
    assert set(metrics["validation"]["val_rmse"]) == {"als_bias", "plain_als"}
    assert metrics["n_train"] > 15_000  # the chosen setting is re-fit on all of training
    # then the regs are searched again on that larger sample, and the choice comes from there
    refined = [r for r in metrics["validation"]["als_bias_grid"] if r["step"].startswith("refine_")]
    assert refined and metrics["chosen"]["als_bias_reg"] in {r["reg"] for r in refined}
    assert metrics["validation"]["val_rmse"]["als_bias"] == min(r["val_rmse"] for r in refined)
    assert any(r["step"].startswith("refine_") for r in metrics["validation"]["plain_als_grid"])
    assert {"refine_als_bias", "refine_plain_als"} <= set(metrics["timings_seconds"])


def test_search_sample_limit_keeps_enough_ratings_per_item():
    s = build_config({"factorize": {"search_sample_ratings": 1000,
                                    "search_sample_item_ratings": 20}}).factorize
    assert search_sample_limit(s, 10) == 1000         # the ratings limit
    assert search_sample_limit(s, 80) == 1600         # the item floor
    assert search_sample_limit(replace(s, search_sample_item_ratings=0), 80) == 1000
    assert search_sample_limit(replace(s, search_sample_ratings=0), 80) == 0   # no sample


def test_refine_sample_limit_is_per_item_and_never_below_the_search_sample():
    s = build_config({"factorize": {"search_sample_ratings": 1000, "search_sample_item_ratings": 20,
                                    "search_refine_item_ratings": 50}}).factorize
    assert refine_sample_limit(s, 80) == 4000          # 50 per item
    assert refine_sample_limit(s, 10) == 1000          # the search's own sample is the least
    assert refine_sample_limit(replace(s, search_refine_item_ratings=0), 80) == 0  # every rating


def test_sample_limits_count_items_only_when_a_sample_is_possible(spark):
    rows = [(u, i, 3.0) for u in range(20) for i in range(u % 5, 10)]   # 10 items, 160 ratings
    df = spark.createDataFrame(rows, [USER_COL, ITEM_COL, RATING_COL])
    s = build_config({"factorize": {"search_sample_ratings": 50, "search_sample_item_ratings": 6,
                                    "search_refine_item_ratings": 9}}).factorize
    assert sample_limits(df, len(rows), s) == SampleLimits(search=60, refine=90)
    assert sample_limits(df, len(rows), replace(s, search_sample_ratings=500)).refine == 0
    assert sample_limits(df, len(rows), replace(s, search_sample_ratings=0)) == SampleLimits(0, 0)


def test_search_candidates_run_fewer_iterations_never_more_than_the_fit():
    s = build_config({"factorize": {"iters": 10, "search_iters": 5}}).factorize
    assert search_iters(s) == 5
    assert search_iters(replace(s, iters=3)) == 3      # never more than the final fit
    assert search_iters(replace(s, search_iters=0)) == 10


def test_als_blocks_one_per_core_and_one_per_block_of_ratings_unless_set():
    s = build_config({"factorize": {"als_block_ratings": 1000}}).factorize
    assert als_blocks(s, 500, parallelism=2) == 2           # small: one per core
    assert als_blocks(s, 2000, parallelism=2) == 2
    assert als_blocks(s, 2001, parallelism=2) == 3          # large: one per 1000 ratings
    assert als_blocks(s, 10_000, parallelism=4) == 10
    assert als_blocks(replace(s, als_blocks=1), 10_000, parallelism=4) == 1


def test_probe_rows_never_reach_training(spark, generated, factorized):
    """The saved per-user and per-item training counts equal ratings minus probe, by joins."""
    metrics, out = factorized
    ratings = spark.read.parquet(f"{generated}/ratings")
    probe = spark.read.parquet(f"{generated}/probe")
    assert metrics["n_test"] == probe.count()
    outside = ratings.join(probe, on=[USER_COL, ITEM_COL], how="left_anti")
    for key, table in ((USER_COL, "users"), (ITEM_COL, "items")):
        expected = outside.groupBy(key).agg(F.count(F.lit(1)).alias("n_ratings"))
        saved = (spark.read.parquet(f"{out}/{table}").where(F.col("n_ratings").isNotNull())
                 .select(key, "n_ratings"))
        assert_df_equality(saved, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.slow
def test_model_dir_predicts_source_ids(spark, factorized):
    metrics, out = factorized
    users = pd.read_parquet(f"{out}/users")
    items = pd.read_parquet(f"{out}/items")
    meta = json.loads((out / "model.json").read_text())
    assert json.loads((out / "metrics.json").read_text())["table"] == metrics["table"]
    pairs = [("u0", "i0"), ("u5", "i7"), ("u1", "nope"), ("ghost", "i3"), ("ghost", "nope")]
    got = load_model(spark, str(out)).predict(
        spark.createDataFrame(pairs, ["user_id", "item_id"])).toPandas()
    ub = users.set_index("user_id")
    ib = items.set_index("item_id")
    for uid, iid in pairs:
        score = meta["mu"]
        if uid in ub.index and ub.loc[uid, "bias"] == ub.loc[uid, "bias"]:
            score += ub.loc[uid, "bias"]
        if iid in ib.index and ib.loc[iid, "bias"] == ib.loc[iid, "bias"]:
            score += ib.loc[iid, "bias"]
        if uid in ub.index and iid in ib.index:
            p, q = ub.loc[uid, "features"], ib.loc[iid, "features"]
            if p is not None and q is not None:
                score += meta["gamma"] * float(np.dot(p.astype(float), q.astype(float)))
        want = min(max(score, meta["rating_min"]), meta["rating_max"])
        row = got[(got.user_id == uid) & (got.item_id == iid)]
        assert row.prediction.tolist() == [pytest.approx(want, abs=1e-6)], (uid, iid)


@pytest.mark.slow
def test_job_fails_cleanly_without_probe_table(tmp_path):
    rng = np.random.default_rng(1)
    model = make_model(20, 10, 2, 0.5, rng)
    u, i = sample_pairs(60, 20, 10, rng)
    write_dataset(tmp_path / "ds", u, i, draw_ratings(model, u, i, rng))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "factorize.py"), "--dataset", str(tmp_path / "ds"),
         "--output", str(tmp_path / "model"), "--test", "probe", "--set", "spark.master=local[1]",
         "--set", "spark.checkpoint_dir=" + str(tmp_path / "ckpt")],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "no probe table" in proc.stderr
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_model_dir_records_its_test_split(factorized):
    _, out = factorized
    meta = read_meta(str(out))
    assert (meta.split_test, meta.split_seed) == ("probe", 42)


def test_probe_removed_at_ingest_is_reported(spark, tmp_path):
    """A probe whose ratings the ingest dropped leaves nothing to score: a clear error, no output."""
    rng = np.random.default_rng(2)
    model = make_model(20, 10, 2, 0.5, rng)
    u, i = sample_pairs(60, 20, 10, rng)
    ds = write_dataset(tmp_path / "ds", u, i, draw_ratings(model, u, i, rng))
    (ds / "probe").mkdir()
    pd.DataFrame({USER_COL: np.array([0], np.int32), ITEM_COL: np.array([99], np.int32)}) \
        .to_parquet(ds / "probe" / "part-00000.parquet")  # a pair with no rating in `ratings`
    stats = json.loads((ds / "_stats.json").read_text())
    (ds / "_stats.json").write_text(json.dumps({**stats, "probe_removed_from_ratings": True}))
    cfg = build_config({"factorize": {"test": "probe"}})
    with pytest.raises(JobError, match="--remove-probe"):
        run_factorize(spark, cfg, dataset=str(ds), output=str(tmp_path / "model"))
    assert not (tmp_path / "model").exists()


# ------------------------------------------------------------------- a test set ingested apart
def _write_foreign_dataset(out: Path, users, items, ratings, *, user_ids, item_ids) -> Path:
    """A dataset dir numbering its own ids: index k of the users table is ``user_ids[k]``."""
    write_dataset(out, users, items, ratings, n_users=len(user_ids), n_items=len(item_ids))
    for name, key, id_col, ids in (("users", USER_COL, "user_id", user_ids),
                                   ("items", ITEM_COL, "item_id", item_ids)):
        (out / name / "part-00000.parquet").unlink()
        pd.DataFrame({key: np.arange(len(ids), dtype=np.int32), id_col: list(ids)}) \
            .to_parquet(out / name / "part-00000.parquet")
    return out


@pytest.fixture(scope="module")
def split_apart(tmp_path_factory):
    """One split three ways: train and test ingested apart (the test dataset numbers its ids in a
    shuffled order and holds 5 users and 3 items training never saw), and the same rows as one
    dataset with a bare table of its indices as the test set."""
    base = tmp_path_factory.mktemp("apart")
    rng = np.random.default_rng(11)
    n_users, n_items = 80, 50
    model = make_model(n_users, n_items, 2, 0.4, rng, user_bias_sd=0.8, item_bias_sd=0.8)
    u, i = sample_pairs(1800, n_users, n_items, rng)
    r = draw_ratings(model, u, i, rng)
    is_test = (rng.random(len(u)) < 0.15) | (u >= 75) | (i >= 47)
    tr, te = ~is_test, is_test
    write_dataset(base / "train", u[tr], i[tr], r[tr], n_users=75, n_items=47)
    uo, io = rng.permutation(n_users), rng.permutation(n_items)  # test index k <-> id u{uo[k]}
    u_pos, i_pos = np.argsort(uo), np.argsort(io)
    _write_foreign_dataset(base / "test", u_pos[u[te]], i_pos[i[te]], r[te],
                           user_ids=[f"u{k}" for k in uo], item_ids=[f"i{k}" for k in io])
    write_dataset(base / "whole", u, i, r, n_users=n_users, n_items=n_items)
    pd.DataFrame({USER_COL: u[te].astype(np.int32), ITEM_COL: i[te].astype(np.int32),
                  RATING_COL: r[te].astype(np.float32)}).to_parquet(base / "test_table.parquet")
    return base, int(te.sum())


def _small_job(test: str) -> object:
    return build_config({"factorize": {
        "test": test, "ranks": [2], "regs": [0.1], "iters": 3, "rounds": 1, "bias_sweeps": 2,
        "item_cf_neighbours": 10, "item_cf_max_items_per_user": 0}})


@pytest.mark.slow
def test_test_dataset_ingested_apart_scores_as_the_same_split(spark, split_apart):
    base, n_test = split_apart
    apart = run_factorize(spark, _small_job(str(base / "test")), dataset=str(base / "train"),
                          output=str(base / "m_apart"))
    whole = run_factorize(spark, _small_job(str(base / "test_table.parquet")),
                          dataset=str(base / "whole"), output=str(base / "m_whole"))
    assert apart["n_test"] == whole["n_test"] == apart["test_rows"] == n_test
    assert apart["n_train"] == whole["n_train"]
    assert set(apart["table"]) == set(whole["table"])
    for row, m in whole["table"].items():
        assert apart["table"][row]["rmse"] == pytest.approx(m["rmse"], rel=1e-4), row
        assert apart["table"][row]["n"] == n_test and apart["table"][row]["n_missing"] == 0, row
    # the users and items training never saw are counted, and scored by the fallbacks
    for m in (apart, whole):
        assert (m["unknown_users"], m["unknown_items"]) == (5, 3)
        assert m["unknown_user_rows"] > 0 and m["unknown_item_rows"] > 0


def test_foreign_ratings_map_through_source_ids(spark, split_apart):
    from batchml.ratings import map_foreign_ratings

    base, n_test = split_apart
    mapped = map_foreign_ratings(spark, str(base / "test"), dataset=str(base / "train")).toPandas()
    table = pd.read_parquet(base / "test_table.parquet")
    assert len(mapped) == n_test
    known = mapped[(mapped[USER_COL] >= 0) & (mapped[ITEM_COL] >= 0)]
    expect = table[(table[USER_COL] < 75) & (table[ITEM_COL] < 47)]
    got = known.sort_values([USER_COL, ITEM_COL]).reset_index(drop=True)
    want = expect.sort_values([USER_COL, ITEM_COL]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[[USER_COL, ITEM_COL, RATING_COL]], want, check_dtype=False)
    unknown_users = mapped.loc[mapped[USER_COL] < 0, USER_COL].unique()
    assert len(unknown_users) == 5      # one negative index per unknown id, never a training index


def test_a_test_dir_that_is_neither_fails_with_an_input_error(spark, tmp_path, split_apart):
    from batchml.errors import InputError
    from batchml.ratings import read_test_split

    base, _ = split_apart
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "ratings.csv").write_text("userId,movieId,rating\n1,2,3.0\n")
    ratings = spark.read.parquet(f"{base}/train/ratings")
    with pytest.raises(InputError, match="neither a dataset dir"):
        read_test_split(spark, ratings, dataset=str(base / "train"), spec=str(tmp_path / "notes"),
                        seed=1)


# ------------------------------------------------------------------------------ the line search
def test_line_search_extends_past_the_edge_until_the_score_turns():
    from batchml.factor_search import line_search

    tried = []

    def score_at(reg):  # best at reg = 1, outside the grid
        tried.append(reg)
        return {"reg": reg, "val_rmse": 1.0 + np.log10(reg) ** 2}

    rows = line_search(score_at, [0.01, 0.1], param="reg", extend=5)
    assert tried == pytest.approx([0.01, 0.1, 1.0, 10.0])
    assert [r["step"] for r in rows] == ["grid", "grid", "extend_up", "extend_up"]
    # bounded, downwards too, and a one-value grid is a choice, not a search
    tried.clear()
    rows = line_search(score_at, [100.0, 1000.0], param="reg", extend=1)
    assert tried == pytest.approx([100.0, 1000.0, 10.0]) and rows[-1]["step"] == "extend_down"
    assert len(line_search(score_at, [0.01], param="reg", extend=5)) == 1
    at_zero = line_search(lambda reg: {"reg": reg, "val_rmse": reg}, [0.0, 0.1], param="reg",
                          extend=5)
    assert [r["reg"] for r in at_zero] == [0.0, 0.1]  # no step below 0


def test_a_rank_past_the_grid_is_probed_before_its_reg_line():
    from batchml.factor_search import best_of, rank_reg_search

    def searched(gain_per_doubling):
        tried = []

        def score_at(rank, reg):  # best reg 0.1 at every rank; larger ranks gain a little
            tried.append((rank, reg))
            return {"rank": rank, "reg": reg,
                    "val_rmse": 1.0 + np.log10(reg / 0.1) ** 2 - gain_per_doubling * np.log2(rank)}
        return rank_reg_search(score_at, [10, 20], [0.05, 0.1, 0.2], extend=2), tried

    rows, tried = searched(1e-4)  # rank 40 gains 0.01 % on rank 20: one probe, no reg line
    assert tried[-1] == (40, 0.1) and len(tried) == 7 and rows[-1]["step"] == "probe"
    assert best_of(rows)["rank"] == 20  # too small a gain to pay for the larger rank
    rows, tried = searched(0.01)  # 1 % per doubling: rank 40 and 80 get their reg lines
    ranks = [r for r, _ in tried]
    assert ranks.count(40) == 3 and ranks.count(80) == 3
    assert tried.count((40, 0.1)) == 1  # the probe is a point of the reg line, not fitted twice
    assert best_of(rows)["rank"] == 80


def test_with_probe_ranks_a_grid_rank_past_the_first_gets_its_reg_line_only_when_it_gains():
    from batchml.factor_search import best_of, rank_reg_search

    def searched(gain_at_50):
        tried = []

        def score_at(rank, reg):  # best reg 0.2 at rank 10, 0.1 at rank 50
            best = 0.2 if rank == 10 else 0.1
            tried.append((rank, reg))
            return {"rank": rank, "reg": reg,
                    "val_rmse": 1.0 + np.log10(reg / best) ** 2 - (gain_at_50 if rank == 50 else 0)}
        return rank_reg_search(score_at, [10, 50], [0.05, 0.1, 0.2], extend=2,
                               probe_ranks=True), tried

    rank10 = [(10, 0.05), (10, 0.1), (10, 0.2), (10, 0.4)]  # the grid, then one step up
    rows, tried = searched(-0.05)  # rank 50 loses: one probe at rank 10's best reg, no line
    assert tried == rank10 + [(50, 0.2), (5, 0.2)]
    assert best_of(rows)["rank"] == 10 and rows[4]["eligible"] is False
    rows, tried = searched(0.2)  # it gains: the probe, then the rest of its own reg grid
    assert tried[:4] == rank10 and [g for k, g in tried if k == 50] == [0.2, 0.05, 0.1]
    assert (best_of(rows)["rank"], best_of(rows)["reg"]) == (50, 0.1)



def test_rank_search_extends_with_integer_ranks():
    from batchml.factor_search import line_search

    rows = line_search(lambda k: {"rank": k, "val_rmse": abs(k - 40)}, [5, 10], param="rank",
                       extend=3, integer=True, minimum=1)
    assert [r["rank"] for r in rows] == [5, 10, 20, 40, 80]


def test_ranking_evaluation_keeps_unknown_test_users_for_the_fallback(spark, split_apart):
    from batchml.ratings import holdout_coverage
    from batchml.recommend.evaluation import _model_users, read_test_rows

    base, n_test = split_apart
    ratings = spark.read.parquet(f"{base}/train/ratings")
    train, test, note = read_test_rows(spark, ratings, dataset=str(base / "train"),
                                       spec=str(base / "test"), seed=1)
    assert note is None
    cov = holdout_coverage(train, test)
    assert (cov["test_rows"], cov["unknown_users"], cov["unknown_items"]) == (n_test, 5, 3)
    model_users = spark.createDataFrame([(k, 0.1 * k, [1.0, 0.0]) for k in range(75)],
                                        f"{USER_COL} int, {BIAS_COL} double, {FEATURES_COL} array<float>")
    users = _model_users(model_users, test.select(USER_COL).distinct()).toPandas()
    assert len(users) == test.select(USER_COL).distinct().count()
    new = users[users[USER_COL] < 0]
    assert len(new) == 5 and new[BIAS_COL].isna().all() and new[FEATURES_COL].isna().all()


def test_an_extension_that_barely_helps_is_the_last():
    from batchml.factor_search import line_search

    rows = line_search(lambda k: {"rank": k, "val_rmse": 0.9 - 1e-5 * k}, [10, 50], param="rank",
                       extend=3, integer=True, minimum=1, max_ratio=2)
    assert [r["rank"] for r in rows] == [10, 50, 100]


def test_a_rank_past_the_grid_is_tried_only_within_the_budget():
    from batchml.factor_search import rank_reg_search

    def score_at(rank, reg):  # larger ranks gain 1 % per doubling: the edge is always the top
        return {"rank": rank, "reg": reg,
                "val_rmse": 1.0 + np.log10(reg / 0.1) ** 2 - 0.01 * np.log2(rank)}

    def ranks_tried(budget, **kw):
        return sorted({r["rank"] for r in rank_reg_search(score_at, [10, 50], [0.05, 0.1, 0.2],
                                                          extend=2, budget=budget, **kw)})
    # the grid costs 3 * (10² + 50²) = 7800 (+ 10² for rank 10's reg extension): rank 100 (10⁴)
    # costs more than that; with 1.3 times it is probed, gains, and gets its reg line, after which
    # the search has spent 7900 + 3·10⁴, which is less than rank 200's 4·10⁴ at 1.0, more at 1.3
    assert ranks_tried(1.0) == [10, 50] == ranks_tried(1.0, probe_ranks=True)
    assert ranks_tried(1.3) == [10, 50, 100, 200] == ranks_tried(None)
    assert ranks_tried(1.3, probe_ranks=True) == [10, 50, 100, 200]  # a probed rank-50 costs the same
    assert ranks_tried(0.0) == [10, 50]
    def top_ranks(budget):  # this grid costs 3·(10² + 50² + 100²) + 10² = 37900 < 4·10⁴
        rows = rank_reg_search(score_at, [10, 50, 100], [0.05, 0.1, 0.2], extend=1, budget=budget)
        return max(r["rank"] for r in rows)
    assert (top_ranks(1.0), top_ranks(1.1)) == (100, 200)


def test_a_concurrent_grid_gives_the_rows_of_the_sequential_one():
    import threading
    import time
    from batchml.factor_search import line_search, rank_reg_search, thread_map

    threads = set()

    def score_at(rank, reg):
        threads.add(threading.get_ident())
        time.sleep(0.02)  # long enough for the pool's threads to share the grid
        return {"rank": rank, "reg": reg,
                "val_rmse": 1.0 + np.log10(reg / 0.3) ** 2 - 0.01 * np.log2(rank)}

    ordered = rank_reg_search(score_at, [5, 10], [0.05, 0.1, 0.2], extend=2)
    threads.clear()
    concurrent = rank_reg_search(score_at, [5, 10], [0.05, 0.1, 0.2], extend=2,
                                 map_fn=thread_map(3))
    assert concurrent == ordered and len(threads) > 1
    line = line_search(lambda g: {"reg": g, "val_rmse": abs(g - 0.5)}, [0.05, 0.1, 0.2],
                       param="reg", extend=2, map_fn=thread_map(2))
    assert [r["reg"] for r in line] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8])
