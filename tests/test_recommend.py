"""Recommendations: blocked top-N against a brute-force numpy ranking, seen items, popular lists,
fold-in, and the job end to end on a generated dataset."""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F, types as T

from batchml.config import as_dict, build_config
from batchml.factor_model import FactorModel
from batchml.model_dir import ModelMeta, load_model, write_model
from batchml.ratings import read_test_split
from batchml.errors import InputError
from batchml.recommend.evaluation import evaluation_split
from batchml.recommend.foldin import fold_in, read_fold_in_csv
from batchml.recommend.item_lookup import ItemLookup
from batchml.recommend.job import run_recommend
from batchml.recommend.popular import item_totals, popular_items, popular_items_streamed
from batchml.recommend.scoring import (ItemArrays, block_size_for, model_item_arrays,
                                       recommend_for_vector, score_block, top_n_per_user,
                                       uniform_hash)
from batchml.schema import ITEM_COL, RATING_COL, USER_COL
from batchml.synth.model import draw_ratings, make_model, sample_pairs
from batchml.synth.ratings_tables import write_dataset

SIDE_T = lambda key: T.StructType([  # noqa: E731
    T.StructField(key, T.IntegerType(), False),
    T.StructField("bias", T.DoubleType(), True),
    T.StructField("features", T.ArrayType(T.FloatType()), True),
])


def _side_df(spark, key, bias, factors):
    rows = [(int(k), None if b is None else float(b), None if f is None else [float(x) for x in f])
            for k, (b, f) in enumerate(zip(bias, factors))]
    return spark.createDataFrame(rows, SIDE_T(key))


def _brute_force(mu, bu, bi, p, q, seen: dict, n, candidates=None):
    """Plain numpy: every score, seen and non-candidate items removed, full sort."""
    out = {}
    for u in range(len(bu)):
        s = mu + bu[u] + bi + q.astype(np.float64) @ p[u].astype(np.float64)
        ok = np.ones(len(bi), bool)
        ok[list(seen.get(u, ()))] = False
        if candidates is not None:
            ok &= np.isin(np.arange(len(bi)), candidates)
        items = np.flatnonzero(ok)
        order = items[np.lexsort((items, -s[items]))][:n]
        out[u] = [(int(i), float(s[i])) for i in order]
    return out


@pytest.fixture(scope="module")
def small(spark):
    rng = np.random.default_rng(7)
    n_users, n_items, rank = 37, 29, 4
    bu, bi = rng.normal(0, 0.3, n_users), rng.normal(0, 0.5, n_items)
    p = rng.normal(0, 0.7, (n_users, rank)).astype(np.float32)
    q = rng.normal(0, 0.7, (n_items, rank)).astype(np.float32)
    seen = {u: set(rng.choice(n_items, size=rng.integers(0, 8), replace=False).tolist())
            for u in range(n_users)}
    seen[3] = set(range(n_items)) - {5, 11}           # only two unseen items left
    pairs = [(u, i, 4.0) for u, items in seen.items() for i in sorted(items)]
    ratings = spark.createDataFrame(pairs, f"{USER_COL} int, {ITEM_COL} int, {RATING_COL} float")
    users = _side_df(spark, USER_COL, bu, p)
    items_pdf = pd.DataFrame({ITEM_COL: np.arange(n_items), "bias": bi, "features": list(q)})
    return dict(mu=3.5, bu=bu, bi=bi, p=p, q=q, seen=seen, ratings=ratings, users=users,
                items_pdf=items_pdf, rank=rank)


def _collect(recs_df):
    got = {}
    for r in recs_df.orderBy(USER_COL, "rank").collect():
        got.setdefault(r[USER_COL], []).append((r[ITEM_COL], r["score"], r["rank"]))
    return got


@pytest.fixture(scope="module")
def all_items_recs(spark, small):
    """Every unseen candidate of every user (n = catalog size), in blocks of 6 users, 3 tasks."""
    items = model_item_arrays(small["items_pdf"], mu=small["mu"], gamma=1.0, rank=small["rank"])
    recs = top_n_per_user(small["users"], items, n=len(items), seen_df=small["ratings"],
                          block_size=6, partitions=3)
    return recs.cache()


def test_top_n_equals_brute_force_numpy(small, all_items_recs):
    got = _collect(all_items_recs.where(F.col("rank") <= 5))
    want = _brute_force(small["mu"], small["bu"], small["bi"], small["p"], small["q"],
                        small["seen"], 5)
    assert sorted(got) == sorted(want)
    for u, lst in want.items():
        assert [g[0] for g in got[u]] == [i for i, _ in lst], u
        assert [g[2] for g in got[u]] == list(range(1, len(lst) + 1))
        np.testing.assert_allclose([g[1] for g in got[u]], [s for _, s in lst], rtol=1e-9, atol=1e-9)
    assert len(got[3]) == 2  # fewer unseen items than n


def test_seen_items_never_recommended(small, all_items_recs):
    assert all_items_recs.join(small["ratings"], on=[USER_COL, ITEM_COL], how="inner").count() == 0
    n_seen = sum(len(v) for v in small["seen"].values())
    assert all_items_recs.count() == len(small["bu"]) * len(small["bi"]) - n_seen


def test_gamma_min_ratings_and_missing_parameters(spark, small):
    pdf = small["items_pdf"].copy()
    pdf["n_ratings"] = np.arange(len(pdf))            # item i has i ratings
    pdf.loc[7, ["bias", "features"]] = [None, None]   # untrained: never a candidate
    items = model_item_arrays(pdf, mu=small["mu"], gamma=0.5, rank=small["rank"], min_ratings=10)
    assert 7 not in items.idx and items.idx.min() == 10
    users = small["users"].withColumn("features", F.when(F.col(USER_COL) == 0, None)
                                      .otherwise(F.col("features")))
    got = _collect(top_n_per_user(users, items, n=4, seen_df=small["ratings"], partitions=2))
    p = small["p"].copy()
    p[0] = 0.0
    want = _brute_force(small["mu"], small["bu"], small["bi"], p, small["q"] * 0.5,
                        small["seen"], 4, candidates=items.idx)
    for u, lst in want.items():
        assert [g[0] for g in got.get(u, [])] == [i for i, _ in lst], u


def test_random_lists_are_seeded_and_independent_of_blocks(spark, small):
    items = model_item_arrays(small["items_pdf"], mu=small["mu"], gamma=1.0, rank=small["rank"])
    a = _collect(top_n_per_user(small["users"], items, n=5, seen_df=small["ratings"],
                                random_seed=1, partitions=2, block_size=5))
    b = _collect(top_n_per_user(small["users"], items, n=5, seen_df=small["ratings"],
                                random_seed=1, partitions=3, block_size=7))
    assert a == b
    assert all(i not in small["seen"][u] for u, lst in a.items() for i, _, _ in lst)
    users, ids = np.arange(40), np.arange(30)
    h1, h2 = uniform_hash(users, ids, 1), uniform_hash(users, ids, 2)
    assert ((0 <= h1) & (h1 < 1)).all() and (h1 != h2).mean() > 0.99
    assert abs(h1.mean() - 0.5) < 0.02


def test_no_users_no_rows(spark, small):
    items = model_item_arrays(small["items_pdf"], mu=small["mu"], gamma=1.0, rank=small["rank"])
    assert top_n_per_user(small["users"].limit(0), items, n=5, seen_df=small["ratings"],
                          partitions=1).count() == 0


def test_block_size_from_the_memory_budget():
    # 1,024 users x 3M items at 24 bytes a score would be ~74 GB: the budget caps the block
    assert block_size_for(3_000_000, max_users=1024, memory_mb=512) == 7
    assert block_size_for(17_770, max_users=1024, memory_mb=512) == 1024     # Netflix: unchanged
    assert block_size_for(17_770, max_users=4096, memory_mb=512) == 1258
    assert block_size_for(50_000_000, max_users=1024, memory_mb=1) == 1      # never below one user
    assert block_size_for(0, max_users=8, memory_mb=1) == 8


def test_scoring_block_stays_within_its_memory_budget():
    """The measured peak of one block (tracemalloc sees numpy's buffers) fits the budget."""
    rng = np.random.default_rng(1)
    m, rank, budget_mb = 20_000, 8, 4
    items = ItemArrays(idx=np.arange(m, dtype=np.int32), offset=rng.normal(3.5, 0.3, m),
                       factors=rng.normal(0, 0.5, (m, rank)).astype(np.float32))
    b = block_size_for(m, max_users=10_000, memory_mb=budget_mb)
    assert 1 < b < 10_000
    none = np.empty(0, np.int64)
    for factors, seed in ((rng.normal(0, 0.5, (b, rank)).astype(np.float32), None), (None, 7)):
        tracemalloc.start()
        score_block(items, np.arange(b), np.zeros(b), factors, none, none, 10, seed)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= budget_mb * 2 ** 20


# ---------------------------------------------------------------------------------- popular
def test_popular_shrunk_mean_beats_two_five_star_ratings(spark):
    rows = [(u, 0, 5.0) for u in range(2)]                               # 2 ratings, mean 5.0
    rows += [(u, 1, 5.0 if u % 10 < 6 else 4.0) for u in range(1000)]    # 1000 ratings, mean 4.6
    rows += [(u, 2, 3.0) for u in range(300)]                            # 300 ratings, mean 3.0
    rows += [(u, 3, 1.0) for u in range(1, 3)]                           # 2 ratings, mean 1.0
    df = spark.createDataFrame(rows, f"{USER_COL} int, {ITEM_COL} int, {RATING_COL} float")
    mu = sum(r[2] for r in rows) / len(rows)
    pop = {r[ITEM_COL]: r for r in popular_items(df, prior_strength=25.0).collect()}
    for item, n, mean in ((0, 2, 5.0), (1, 1000, 4.6), (2, 300, 3.0), (3, 2, 1.0)):
        assert pop[item]["n_ratings"] == n
        assert pop[item]["shrunk_mean"] == pytest.approx((n * mean + 25 * mu) / (n + 25))
    assert pop[1]["rank"] == 1 and pop[0]["rank"] == 2
    raw = {r[ITEM_COL]: r["rank"] for r in popular_items(df, prior_strength=0.0).collect()}
    assert raw[0] == 1  # without the prior the two 5-star ratings win: the failure mode


def test_popular_min_ratings_bias_rank_and_empty(spark):
    rows = [(u, 0, 5.0) for u in range(2)] + [(u, 1, 4.0) for u in range(50)]
    df = spark.createDataFrame(rows, f"{USER_COL} int, {ITEM_COL} int, {RATING_COL} float")
    bias = spark.createDataFrame([(0, 0.9), (1, 0.1)], f"{ITEM_COL} int, bias double")
    pop = popular_items(df, prior_strength=5.0, min_ratings=3, item_bias_df=bias).collect()
    assert [(r[ITEM_COL], r["rank"], r["bias_rank"], r["bias"]) for r in pop] == [(1, 1, 1, 0.1)]
    both = {r[ITEM_COL]: r["bias_rank"] for r in
            popular_items(df, prior_strength=5.0, item_bias_df=bias).collect()}
    assert both == {0: 1, 1: 2}
    assert popular_items(df.limit(0), prior_strength=5.0).count() == 0


def test_popular_spark_and_streamed_lists_agree(spark):
    """The job (Spark) and the query (record batches streamed into numpy) share one formula and
    one order."""
    rng = np.random.default_rng(2)
    items = rng.integers(0, 40, 600)
    rows = [(int(u), int(i), float(r)) for u, (i, r) in enumerate(zip(items, rng.integers(1, 6, 600)))]
    rows += [(1000, 40, 3.0), (1001, 41, 3.0), (1002, 41, 3.0)]      # ties broken by count, then index
    pdf = pd.DataFrame(rows, columns=[USER_COL, ITEM_COL, RATING_COL]).astype({RATING_COL: np.float32})
    df = spark.createDataFrame(pdf)
    mu = float(pdf[RATING_COL].astype(np.float64).mean())
    want = popular_items(df, prior_strength=10.0, min_ratings=2).toPandas().sort_values("rank")
    batches = pa.Table.from_pandas(pdf, preserve_index=False).to_batches(max_chunksize=64)
    got = popular_items_streamed(item_totals(reversed(batches)), prior_strength=10.0, mu=mu,
                                 min_ratings=2)
    assert got[ITEM_COL].tolist() == want[ITEM_COL].tolist()
    np.testing.assert_allclose(got["shrunk_mean"], want["shrunk_mean"], rtol=1e-12)
    assert got["n_ratings"].tolist() == want["n_ratings"].tolist()


# ---------------------------------------------------------------------------------- fold-in
def test_fold_in_recovers_a_generated_users_factors():
    rng = np.random.default_rng(3)
    n_items, rank, mu = 400, 6, 3.6
    q = rng.normal(0, 0.6, (n_items, rank)).astype(np.float32)
    bi = rng.normal(0, 0.5, n_items)
    items = ItemArrays(idx=np.arange(n_items, dtype=np.int32), offset=mu + bi, factors=q)
    true_b, true_p = 0.4, rng.normal(0, 0.8, rank)
    rated = rng.choice(n_items, size=300, replace=False)
    r = mu + bi[rated] + true_b + q[rated].astype(np.float64) @ true_p + rng.normal(0, 0.1, 300)
    fi = fold_in(rated, r, items, mu=mu, reg=1e-4, bias_reg=1e-4)
    assert fi.bias == pytest.approx(true_b, abs=0.03)
    np.testing.assert_allclose(fi.factors, true_p, atol=0.05)
    # strong regularization pulls toward zero: the fit really depends on reg
    weak = fold_in(rated, r, items, mu=mu, reg=50.0, bias_reg=1e4)
    assert np.linalg.norm(weak.factors) < 0.5 * np.linalg.norm(true_p)
    top = recommend_for_vector(items, bias=fi.bias, factors=fi.factors, n=10, exclude=rated)
    assert not set(top[ITEM_COL]) & set(rated.tolist()) and len(top) == 10


LOTR = ["The Lord of the Rings: The Fellowship of the Ring", "The Lord of the Rings: The Two Towers",
        "The Lord of the Rings: The Return of the King"]
BSG = ["Battlestar Galactica: Season 1", "Battlestar Galactica: Season 2"]
WWE = ["WWE: WrestleMania XX", "WWE: Royal Rumble 2004", "WWE: SummerSlam 2003"]


@pytest.fixture(scope="module")
def seed_catalog():
    """30 items; the named ones share (LOTR, BSG) or oppose (WWE) a taste vector, as synth.netflix."""
    rng = np.random.default_rng(11)
    rank, n = 8, 30
    q = rng.normal(0, 0.5, (n, rank))
    bias = rng.normal(0, 0.3, n)
    taste = rng.normal(0, 1, rank)
    taste *= 1.2 / np.linalg.norm(taste)
    titles = [f"Filler Movie {k}" for k in range(n)]
    for k, t in enumerate(LOTR + BSG):
        titles[k], q[k], bias[k] = t, taste + rng.normal(0, 0.05, rank), abs(bias[k]) + 0.3
    for k, t in enumerate(WWE, start=10):
        titles[k], q[k], bias[k] = t, -taste + rng.normal(0, 0.05, rank), -abs(bias[k]) - 0.3
    items_pdf = pd.DataFrame({ITEM_COL: np.arange(n), "item_id": [str(1000 + k) for k in range(n)],
                              "title": titles, "year": [2001] * n})
    arrays = ItemArrays(idx=np.arange(n, dtype=np.int32), offset=3.6 + bias,
                        factors=q.astype(np.float32))
    return items_pdf, arrays


@pytest.mark.parametrize("key", ["title", "item_id", "item"])
def test_fold_in_seed_example_lotr_bsg_over_wrestling(tmp_path, seed_catalog, key):
    items_pdf, arrays = seed_catalog
    ids = dict(zip(items_pdf["title"], items_pdf["item_id"]))
    rated = [(LOTR[0], 5), (BSG[0], 5), (WWE[0], 1)]
    if key == "item_id":
        lines = [f"{ids[t]},{r}" for t, r in rated]
    else:   # titles with commas or colons survive quoting; case does not matter
        lines = [f'"{t.upper() if k == 0 else t}",{r}' for k, (t, r) in enumerate(rated)]
    path = tmp_path / "me.csv"
    path.write_text(f"{key},rating\n" + "\n".join(lines) + "\n")
    lookup = ItemLookup(items_pdf)
    idx, r = read_fold_in_csv(str(path), lookup)
    assert sorted(idx.tolist()) == [0, 3, 10]
    fi = fold_in(idx, r, arrays, mu=3.6, reg=0.1, bias_reg=10.0)
    top = recommend_for_vector(arrays, bias=fi.bias, factors=fi.factors, n=30, exclude=idx)
    order = list(top[ITEM_COL])
    assert set(order) == set(range(30)) - {0, 3, 10}
    favourites = [order.index(k) for k in (1, 2, 4)]
    wrestling = [order.index(k) for k in (11, 12)]
    assert max(favourites) < min(wrestling)
    assert sorted(favourites) == [0, 1, 2]           # the other LOTR/BSG items top the list


def test_fold_in_file_errors_name_the_line(tmp_path, seed_catalog):
    lookup = ItemLookup(seed_catalog[0])
    bad = tmp_path / "bad.csv"
    bad.write_text('title,rating\n"The Lord of the Rings: The Two Tower",5\n'
                   '"Battlestar Galactica: Season 1",five\n')
    with pytest.raises(InputError) as err:
        read_fold_in_csv(str(bad), lookup)
    msg = str(err.value)
    assert "line 2" in msg and "did you mean" in msg and "The Two Towers" in msg
    assert "line 3" in msg and "'five' is not a number" in msg
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("1000,5\n")
    with pytest.raises(InputError, match="first line must name the columns"):
        read_fold_in_csv(str(nohead), lookup)
    with pytest.raises(InputError, match="cannot read"):
        read_fold_in_csv(str(tmp_path / "missing.csv"), lookup)


# ------------------------------------------------------------------------------- the job
@pytest.fixture(scope="module")
def job_run(spark, test_config, tmp_path_factory):
    """A generated dataset with a probe table, its true model saved as a model dir, the job run."""
    base = tmp_path_factory.mktemp("rec")
    rng = np.random.default_rng(5)
    n_users, n_items, rank = 300, 120, 4
    truth = make_model(n_users, n_items, rank, noise=0.3, rng=rng, factor_sd=1.0)
    u, i = sample_pairs(12_000, n_users, n_items, rng)
    r = draw_ratings(truth, u, i, rng)
    probe = np.sort(rng.choice(len(u), size=1500, replace=False))
    ds = write_dataset(base / "ds", u, i, r, probe=probe)
    # ratings without the probe rows; the probe table keeps their ratings (a test ratings dir)
    keep = np.setdiff1d(np.arange(len(u)), probe)
    test_dir = base / "test"
    test_dir.mkdir()
    pq.write_table(pa.table({USER_COL: pa.array(u[probe], pa.int32()),
                             ITEM_COL: pa.array(i[probe], pa.int32()),
                             RATING_COL: pa.array(r[probe].astype(np.float32))}),
                   test_dir / "part-0.parquet")
    write_dataset(base / "train", u[keep], i[keep], r[keep], n_users=n_users, n_items=n_items)
    ds = base / "train"
    users_df = spark.read.parquet(str(ds / "users"))
    items_df = spark.read.parquet(str(ds / "items"))
    model = FactorModel(mu=truth.mu, user_df=_side_df(spark, USER_COL, truth.user_bias,
                                                      truth.user_factors),
                        item_df=_side_df(spark, ITEM_COL, truth.item_bias, truth.item_factors),
                        rank=rank, kind="ground_truth")
    model_dir = base / "model"
    model_dir.mkdir()
    write_model(str(model_dir), model, ModelMeta.of(model, split_test=None, split_seed=None),
                users_df=users_df, items_df=items_df)
    users_file = base / "users.txt"
    users_file.write_text("user_id\nu0\nu7\nnobody\n")
    foldin = base / "new.csv"
    foldin.write_text("item,rating\ni0,5\nItem 1,4\ni2,1\n")
    cfg = build_config(as_dict(test_config), ["recommend.top_n=5", "recommend.seed=3"])
    out = base / "out"
    metrics = run_recommend(spark, cfg, model=str(model_dir), dataset=str(ds), output=str(out),
                            test=str(test_dir), fold_in_file=str(foldin))
    sub = run_recommend(spark, cfg.replace(**{"recommend.evaluate": "false"}), model=str(model_dir),
                        dataset=str(ds), output=str(base / "sub"), users_file=str(users_file))
    return dict(base=base, out=out, metrics=metrics, sub=sub, truth=truth, n_users=n_users,
                ds=ds, test_dir=test_dir)


def test_job_writes_every_output(spark, job_run):
    out, m = job_run["out"], job_run["metrics"]
    recs = spark.read.parquet(str(out / "recommendations"))
    assert recs.columns == [USER_COL, ITEM_COL, "score", "rank"]
    assert recs.count() == m["recommendations"] == job_run["n_users"] * 5
    ratings = spark.read.parquet(str(job_run["ds"] / "ratings"))
    assert recs.join(ratings, on=[USER_COL, ITEM_COL], how="inner").count() == 0
    readable = spark.read.parquet(str(out / "recommendations_readable"))
    row = readable.where(F.col("user_id") == "u0").orderBy("rank").first()
    assert row["rank"] == 1 and row["title"] == f"Item {row[ITEM_COL]}"
    assert spark.read.parquet(str(out / "popular")).count() > 0
    assert json.loads((out / "metrics.json").read_text())["recommendations"] == m["recommendations"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.tmp")]


def test_job_ranking_metrics_model_beats_random(job_run):
    ev = job_run["metrics"]["evaluation"]
    lists = ev["lists"]
    assert set(lists) == {"model", "popular", "random"}
    assert ev["relevance_threshold"] == 4.0 and ev["k"] == 5
    assert lists["model"]["ndcg"] > 2 * lists["random"]["ndcg"]
    assert lists["model"]["precision"] > lists["random"]["precision"]
    assert lists["random"]["coverage"] > lists["popular"]["coverage"]
    assert lists["popular"]["mean_popularity"] > lists["random"]["mean_popularity"]


def test_job_users_file_and_fold_in(spark, job_run):
    sub = job_run["sub"]
    assert sub["unknown_users"] == ["nobody"] and sub["recommendations"] == 10
    assert "evaluation" not in sub or sub["evaluation"] is None
    got = spark.read.parquet(str(job_run["base"] / "sub" / "recommendations_readable"))
    assert sorted({r["user_id"] for r in got.collect()}) == ["u0", "u7"]
    fi = job_run["metrics"]["fold_in"]
    assert fi["n_ratings"] == 3 and len(fi["top"]) == 5
    assert not {t["item_id"] for t in fi["top"]} & {"i0", "i1", "i2"}


def test_failed_run_leaves_previous_output(spark, test_config, job_run):
    base = job_run["base"]
    before = sorted(str(p.relative_to(base)) for p in (base / "sub").rglob("*"))
    bad = base / "bad.csv"
    bad.write_text("item,rating\nNo Such Film,5\n")
    cfg = build_config(as_dict(test_config), ["recommend.evaluate=false"])
    with pytest.raises(InputError, match='no such item id or title "No Such Film"'):
        run_recommend(spark, cfg, model=str(base / "model"), dataset=str(job_run["ds"]),
                      output=str(base / "sub"), users_file=str(base / "users.txt"),
                      fold_in_file=str(bad))
    assert sorted(str(p.relative_to(base)) for p in (base / "sub").rglob("*")) == before
    assert not [p for p in base.iterdir() if p.name.startswith(".sub.tmp")]
    with pytest.raises(InputError, match="not a model dir"):
        run_recommend(spark, cfg, model=str(base / "ds"), dataset=str(job_run["ds"]),
                      output=str(base / "sub"))


def test_evaluation_split_uses_the_models_recorded_split():
    meta = ModelMeta(kind="biased", mu=3.5, gamma=1.0, rank=4, rating_min=1.0, rating_max=5.0,
                     split_test="random:0.2", split_seed=123)
    assert evaluation_split(meta, test=None, default_seed=7) == ("random:0.2", 123)
    assert evaluation_split(meta, test="temporal:0.1", default_seed=7) == ("temporal:0.1", 123)
    older = ModelMeta(kind="biased", mu=3.5, gamma=1.0, rank=4, rating_min=1.0, rating_max=5.0)
    assert evaluation_split(older, test=None, default_seed=7) == ("probe", 7)


def test_job_evaluates_on_the_split_seed_the_model_was_trained_with(spark, test_config, job_run):
    """A model trained on random:0.2 with seed 123: the job re-creates that split, not one from
    factorize.seed."""
    base, ds = job_run["base"], str(job_run["ds"])
    md = load_model(spark, str(base / "model"))
    seeded = base / "model_seed123"
    seeded.mkdir()
    write_model(str(seeded), md.model, ModelMeta.of(md.model, split_test="random:0.2", split_seed=123),
                users_df=spark.read.parquet(f"{ds}/users"), items_df=spark.read.parquet(f"{ds}/items"))
    cfg = build_config(as_dict(test_config), ["recommend.top_n=5", "recommend.readable=false",
                                              "factorize.seed=7"])
    metrics = run_recommend(spark, cfg, model=str(seeded), dataset=ds, output=str(base / "seeded"),
                            users_file=str(base / "users.txt"))
    ratings = spark.read.parquet(f"{ds}/ratings")
    rows = {seed: read_test_split(spark, ratings, dataset=ds, spec="random:0.2", seed=seed).test.count()
            for seed in (123, 7)}
    assert rows[123] != rows[7]        # the two seeds really hold out different rows
    ev = metrics["evaluation"]
    assert ev["test"] == "random:0.2" and ev["test_rows"] == rows[123]


def test_job_cli_help(capsys):
    from jobs_loader import load_job
    job = load_job("recommend")
    with pytest.raises(SystemExit) as exc:
        job.main(["--help"])
    assert exc.value.code == 0
    assert "--fold-in" in capsys.readouterr().out


def test_global_row_number_matches_a_plain_sort_across_partitions(spark):
    from batchml.spark import with_global_row_number

    rng = np.random.default_rng(4)
    rows = [(int(k), float(v)) for k, v in zip(rng.permutation(500), rng.integers(0, 7, 500))]
    df = spark.createDataFrame(rows, "k int, v double").repartition(5)
    assert df.sort("v").rdd.getNumPartitions() > 1  # the offsets between partitions are exercised
    got = with_global_row_number(df, [F.col("v").desc(), F.col("k").asc()], "rn")
    expected = [(k, v, n + 1) for n, (k, v) in enumerate(sorted(rows, key=lambda r: (-r[1], r[0])))]
    assert sorted(tuple(r) for r in got.collect()) == sorted(expected)
    assert got.columns == ["k", "v", "rn"]
    assert with_global_row_number(df.limit(0), [F.col("k")], "rn").count() == 0
