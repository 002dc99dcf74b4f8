"""Similarity: Jaccard / cosine / Pearson top-K against plain-Python references (both the shuffle
and the broadcast path), the heavy-user cap, salting, user-user, "because you liked X", item-CF
prediction, and the job end to end."""
from __future__ import annotations

import json
import math
import random
from collections import defaultdict

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F, types as T

from batchml.cli import setting_overrides
from batchml.schema import (CO_COUNT_COL, ITEM_COL, OTHER_COL, RANK_COL, RATING_COL,
                            SIMILARITY_COL, USER_COL)
from batchml.similarity.item_blocks import PAIRS_COL, Ratings, UserRows, block_top_k, dense_codes
from batchml.similarity.neighbours import because_you_liked, predict_item_cf
from batchml.similarity.pair_sums import bucket_partial_products
from batchml.similarity.pipeline import (SimilarityParams, co_occurrences, compute_similar,
                                         filter_user_cap, similar_items, with_pair_values)
from jobs_loader import load_job

RATINGS3 = T.StructType([
    T.StructField(USER_COL, T.IntegerType(), False),
    T.StructField(ITEM_COL, T.IntegerType(), False),
    T.StructField(RATING_COL, T.FloatType(), False),
])
SIMILAR = T.StructType([
    T.StructField(ITEM_COL, T.IntegerType()),
    T.StructField(OTHER_COL, T.IntegerType()),
    T.StructField(SIMILARITY_COL, T.DoubleType()),
    T.StructField(CO_COUNT_COL, T.LongType()),
    T.StructField(RANK_COL, T.IntegerType()),
])


# ----------------------------------------------------------------------------- data and oracles
def edge_case_rows(seed: int = 7) -> list[tuple[int, int, float]]:
    """A heavy user, many small users (ties), an item with one user, a user with one item."""
    rng = random.Random(seed)
    r: dict[tuple[int, int], float] = {}
    for i in range(24):                       # user 0 rates every item but the lonely one (24)
        r[(0, i)] = float(rng.randint(1, 5))
    for u in range(1, 31):                    # small users over items 0..11: many equal Jaccards
        for i in rng.sample(range(12), rng.randint(2, 5)):
            r[(u, i)] = float(rng.randint(1, 5))
    r[(31, 3)] = 4.0                          # a user with one item
    r[(32, 24)] = 5.0                         # item 24 has a single user, who also rates 5 and 6
    r[(32, 5)] = 2.0
    r[(32, 6)] = 3.0
    return [(u, i, v) for (u, i), v in sorted(r.items())]


def power_law_rows(n: int = 2500, seed: int = 3) -> list[tuple[int, int, float]]:
    """Generated with the known model: power-law users (a few rate a large share of the catalog)."""
    from batchml.synth.model import draw_ratings, make_model, sample_pairs
    rng = np.random.default_rng(seed)
    model = make_model(120, 80, 3, 0.5, rng)
    u, i = sample_pairs(n, 120, 80, rng)
    v = draw_ratings(model, u, i, rng)
    return [(int(a), int(b), float(c)) for a, b, c in zip(u, i, v)]


def sets_of(rows, key: int = 1, member: int = 0) -> dict[int, set[int]]:
    out: dict[int, set[int]] = defaultdict(set)
    for row in rows:
        out[row[key]].add(row[member])
    return out


def ranked(scores: dict[int, list[tuple[float, int, int]]], k: int) -> list[tuple]:
    """Top-k per item of (similarity, other, co) lists: similarity desc, other asc."""
    out = []
    for a, lst in scores.items():
        lst = sorted(lst, key=lambda t: (-t[0], t[1]))
        out += [(a, b, s, co, rank) for rank, (s, b, co) in enumerate(lst[:k], start=1)]
    return out


def jaccard_reference(rows, k: int, min_support: int = 1, key: int = 1, member: int = 0):
    """Brute force over plain sets, as the seed's mostSimilarFast: J = |A & B| / |A | B|."""
    users_of = sets_of(rows, key, member)
    scores: dict[int, list] = defaultdict(list)
    for a, ua in users_of.items():
        for b, ub in users_of.items():
            co = len(ua & ub)
            if a != b and co >= max(min_support, 1):
                scores[a].append((co / len(ua | ub), b, co))
    return ranked(scores, k), scores


def metric_reference(rows, metric: str) -> list[tuple]:
    """Every pair (both directions) with cosine_binary, cosine or Pearson, from plain formulas."""
    by_item: dict[int, dict[int, float]] = defaultdict(dict)
    for u, i, v in rows:
        by_item[i][u] = v
    mean = {i: sum(d.values()) / len(d) for i, d in by_item.items()}
    norm = {i: math.sqrt(sum(x * x for x in d.values())) for i, d in by_item.items()}
    out = []
    for a, da in by_item.items():
        for b, db in by_item.items():
            common = set(da) & set(db)
            if a == b or not common:
                continue
            if metric == "cosine_binary":
                s = len(common) / math.sqrt(len(da) * len(db))
            elif metric == "cosine":
                s = sum(da[u] * db[u] for u in common) / (norm[a] * norm[b])
            else:
                xs = {u: da[u] - mean[a] for u in common}
                ys = {u: db[u] - mean[b] for u in common}
                den = math.sqrt(sum(x * x for x in xs.values()) * sum(y * y for y in ys.values()))
                if den == 0:
                    continue
                s = sum(xs[u] * ys[u] for u in common) / den
            out.append((a, b, s, len(common)))
    return out


def ratings_df(spark, rows, partitions: int = 2):
    return spark.createDataFrame(rows, RATINGS3).repartition(partitions)


def expected_df(spark, rows):
    return spark.createDataFrame(rows, SIMILAR)


# ---------------------------------------------------------------------------------------- Jaccard
@pytest.mark.parametrize("broadcast", [False, True])
def test_jaccard_top_k_equals_brute_force_on_edge_cases(spark, broadcast):
    rows = edge_case_rows()
    k = 4
    expected, scores = jaccard_reference(rows, k)
    # the data must exercise what the test claims: ties across the top-k cut, a heavy user,
    # an item with one user, a user with one item
    assert any(len(lst) > k and sorted(s for s, _, _ in lst)[::-1][k - 1] ==
               sorted(s for s, _, _ in lst)[::-1][k] for lst in scores.values())
    assert len(sets_of(rows)[24]) == 1 and len(sets_of(rows, 0, 1)[31]) == 1
    assert len(sets_of(rows, 0, 1)[0]) == 24

    got = similar_items(ratings_df(spark, rows), metric="jaccard", top_k=k, broadcast=broadcast)
    assert got.columns == [ITEM_COL, OTHER_COL, SIMILARITY_COL, CO_COUNT_COL, RANK_COL]
    assert_df_equality(got, expected_df(spark, expected), ignore_row_order=True,
                       ignore_nullable=True)


def test_broadcast_path_applies_min_support_on_power_law_data(spark):
    rows = power_law_rows()
    expected, _ = jaccard_reference(rows, 5, min_support=3)
    got = similar_items(ratings_df(spark, rows, 3), metric="jaccard", top_k=5, min_support=3,
                        broadcast=True)
    assert_df_equality(got, expected_df(spark, expected), ignore_row_order=True,
                       ignore_nullable=True)


def test_salted_join_gives_the_exact_result_on_power_law_data(spark):
    rows = power_law_rows()
    per_user = sets_of(rows, 0, 1)
    assert max(map(len, per_user.values())) > 30          # a heavy user is salted below
    expected, _ = jaccard_reference(rows, 5, min_support=2)
    got = similar_items(ratings_df(spark, rows, 3), metric="jaccard", top_k=5, min_support=2,
                        salt_buckets=4, salt_min_items=10, seed=11)
    assert_df_equality(got, expected_df(spark, expected), ignore_row_order=True,
                       ignore_nullable=True)


@pytest.mark.parametrize("broadcast", [False, True])
def test_user_user_similarity_is_the_same_code_with_roles_swapped(spark, broadcast):
    rows = edge_case_rows()
    expected, _ = jaccard_reference(rows, 3, key=0, member=1)      # users' item sets
    got = similar_items(ratings_df(spark, rows), metric="jaccard", top_k=3, broadcast=broadcast,
                        col_user=ITEM_COL, col_item=USER_COL)
    assert got.columns[0] == USER_COL
    want = expected_df(spark, expected).withColumnRenamed(ITEM_COL, USER_COL)
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("broadcast", [False, True])
def test_empty_ratings_give_an_empty_table(spark, broadcast):
    got = similar_items(spark.createDataFrame([], RATINGS3), metric="pearson", top_k=3,
                        max_items_per_user=2, salt_buckets=2, broadcast=broadcast)
    assert got.count() == 0
    assert got.columns == [ITEM_COL, OTHER_COL, SIMILARITY_COL, CO_COUNT_COL, RANK_COL]
    if broadcast:                                    # the driver computes nothing, the same way
        top, report = compute_similar(spark.createDataFrame([], RATINGS3), SimilarityParams(
            metric="pearson", broadcast_max_ratings=10, driver_max_pairs=10))
        assert (report["pairs_method"], report["ratings_in"], top.count()) == ("driver", 0, 0)
        assert top.columns == got.columns


# ---------------------------------------------------------------------------- cosine, Pearson
@pytest.mark.parametrize("broadcast", [False, True])
@pytest.mark.parametrize("metric", ["cosine_binary", "cosine", "pearson"])
def test_cosine_and_pearson_match_plain_python(spark, metric, broadcast):
    rows = edge_case_rows(seed=5)
    want = metric_reference(rows, metric)
    assert len(want) > 100 and (metric != "pearson" or min(s for *_, s, _ in want) < 0)
    # pearson: item 24 has one rater, so its centred value is 0 and its pairs are undefined
    assert metric != "pearson" or len(want) < len(metric_reference(rows, "cosine"))
    got = (similar_items(ratings_df(spark, rows), metric=metric, top_k=1000, salt_buckets=3,
                         salt_min_items=4, broadcast=broadcast)
           .drop(RANK_COL))
    schema = T.StructType(SIMILAR.fields[:4])
    assert_approx_df_equality(got, spark.createDataFrame(want, schema), 1e-9,
                              ignore_row_order=True, ignore_nullable=True)


# ------------------------------------------------------------------------- partial products
def pair_sums_reference(rows) -> list[tuple]:
    """(i, j, co, sum_xy, sum_xx, sum_yy) over co-raters for i < j, x/y the ratings of i/j."""
    by_user: dict[int, dict[int, float]] = defaultdict(dict)
    for u, i, v in rows:
        by_user[u][i] = v
    acc: dict[tuple[int, int], list] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for items in by_user.values():
        for i, x in items.items():
            for j, y in items.items():
                if i < j:
                    a = acc[(i, j)]
                    a[0] += 1
                    a[1] += x * y
                    a[2] += x * x
                    a[3] += y * y
    return [(i, j, *a) for (i, j), a in acc.items()]


def test_co_occurrences_in_tiny_chunks_with_salting_match_plain_sums(spark):
    rows = power_law_rows(n=1500, seed=2)
    values = with_pair_values(ratings_df(spark, rows, 3), metric="cosine")
    # chunks of ~64 products and sparse accumulation flushed every few dozen pairs: every bucket
    # emits many runs, salted users span several buckets
    got = co_occurrences(values, partitions=3, chunk_nnz=64, dense_cells=16, salt_buckets=3,
                         salt_min_items=20, seed=5)
    schema = ("item_idx int, other_idx int, co_count long, sum_xy double, sum_xx double, "
              "sum_yy double")
    assert_approx_df_equality(got, spark.createDataFrame(pair_sums_reference(rows), schema), 1e-9,
                              ignore_row_order=True, ignore_nullable=True)


def test_bucket_partial_products_streams_bounded_batches_that_sum_to_xtx():
    import pyarrow as pa
    rng = np.random.default_rng(1)
    u = rng.integers(0, 40, 600)
    i = rng.integers(0, 30, 600)
    pairs = sorted(set(zip(u.tolist(), i.tolist())))
    u, i = (np.array(c) for c in zip(*pairs))
    batches = [pa.RecordBatch.from_arrays(
        [pa.array(u[a:a + 100]), pa.array(np.zeros(len(u[a:a + 100]), np.int32)),
         pa.array(i[a:a + 100]), pa.array(np.ones(len(u[a:a + 100]), bool))],
        names=["_u", "_s", "_i", "_l"]) for a in range(0, len(u), 100)]
    x = np.zeros((40, 30), dtype=np.int64)
    x[u, i] = 1
    want = np.triu(x.T @ x, k=1)
    for dense_cells in (10**6, 10):                         # dense and sparse accumulation
        out = list(bucket_partial_products(iter(batches), has_value=False, salts=1,
                                           chunk_nnz=50, dense_cells=dense_cells, batch_rows=7))
        assert len(out) > 1 and all(b.num_rows <= 7 for b in out)
        got = np.zeros_like(want)
        for b in out:
            d = b.to_pydict()
            np.add.at(got, (d[ITEM_COL], d[OTHER_COL]), d[CO_COUNT_COL])
        assert np.array_equal(got, want)
    assert list(bucket_partial_products(iter([]), has_value=False, salts=1)) == []


@pytest.mark.parametrize("ids", [
    [5, 3, 5, 0, 9, 3],                                   # small non-negative: the lookup table
    [2**40 + 7, -3, 2**40 + 7, 12, -3, 5],                # large and negative: np.unique
    np.array([7, 7, 1], dtype=np.int32)])
def test_dense_codes_match_a_sorted_distinct_list(ids):
    distinct, codes = dense_codes(np.asarray(ids))
    want = sorted(set(np.asarray(ids).tolist()))
    assert distinct.tolist() == want and codes.dtype == np.int32
    assert [want[c] for c in codes.tolist()] == np.asarray(ids).tolist()


def test_user_rows_group_each_users_ratings_in_input_order():
    users = np.array([40, 10, 40, 25, 10, 40], dtype=np.int32)
    items = np.array([3, 9, 1, 3, 3, 9], dtype=np.int32)
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    rows = UserRows.of(users, items, values)
    assert rows.items.tolist() == [1, 3, 9] and rows.indptr.tolist() == [0, 2, 3, 6]
    got = [[(int(rows.items[rows.indices[k]]), float(rows.values[k]))
            for k in range(rows.indptr[u], rows.indptr[u + 1])] for u in range(3)]
    assert got == [[(9, 2.0), (3, 5.0)], [(3, 4.0)], [(3, 1.0), (1, 3.0), (9, 6.0)]]
    r = Ratings.from_rows(rows)
    assert r.n_item.tolist() == [1, 3, 2] and r.x.sum() == 6
    assert np.allclose(r.norm_item, np.sqrt([9.0, 1 + 16 + 25, 4 + 36]))
    assert np.allclose(r.xv2t.toarray(), (r.xv.toarray() ** 2).T)


def test_block_top_k_in_tiny_chunks_over_three_blocks_matches_brute_force():
    rows = power_law_rows(n=1500, seed=6)
    u, i = (np.array(c) for c in list(zip(*rows))[:2])
    ratings = Ratings.of(u * 7 + 1, i * 3 + 5, None)         # ids need not be dense
    got, pairs = [], 0
    for block in range(3):
        # chunks of at most 40 products: nearly one item per chunk
        for batch in block_top_k(ratings, block, 3, metric="jaccard", top_k=4, min_support=2,
                                 chunk_products=40):
            d = batch.to_pydict()
            got += [(a, b, s, c, r) for a, b, s, c, r, p in zip(
                d[ITEM_COL], d[OTHER_COL], d[SIMILARITY_COL], d[CO_COUNT_COL], d[RANK_COL],
                d[PAIRS_COL]) if p is None]
            pairs += sum(p for p in d[PAIRS_COL] if p is not None)
    expected, scores = jaccard_reference([(a * 7 + 1, b * 3 + 5, v) for a, b, v in rows], 4,
                                         min_support=2)
    assert sorted(got) == sorted(expected)
    all_pairs, _ = jaccard_reference(rows, 10**6)
    assert pairs == len(all_pairs)                     # directed co-occurring pairs


@pytest.mark.parametrize("metric", ["jaccard", "pearson"])
def test_compute_similar_driver_broadcast_and_shuffle_paths_agree(spark, metric):
    rows = power_law_rows(n=1500, seed=8)
    base = ratings_df(spark, rows, 3)
    common = dict(metric=metric, top_k=6, min_support=2, max_items_per_user=15, seed=3)
    shuffle_top, shuffle = compute_similar(base, SimilarityParams(**common))
    assert shuffle["pairs_method"] == "shuffle" and shuffle["users_capped"] > 0
    for method, driver_max_pairs in (("broadcast", 0), ("driver", 10**9)):
        timings: dict = {}
        params = SimilarityParams(**common, broadcast_max_ratings=10**6,
                                  driver_max_pairs=driver_max_pairs)
        top, report = compute_similar(base, params, timings=timings)
        assert report["pairs_method"] == method and set(timings) == {"cap", "top_k"}
        assert report["item_blocks"] >= 1
        for key in ("users", "users_capped", "ratings_in", "ratings_kept", "ratings_dropped_by_cap",
                    "pairs_without_cap", "pairs_generated", "max_user_items", "max_user_items_kept",
                    "distinct_pairs", "pairs_after_min_support", "rows"):
            assert report[key] == shuffle[key] > 0, (method, key)
        if metric == "jaccard":                         # the same double arithmetic: bit for bit
            assert_df_equality(top, shuffle_top, ignore_row_order=True, ignore_nullable=True)
        else:
            assert_approx_df_equality(top, shuffle_top, 1e-9, ignore_row_order=True,
                                      ignore_nullable=True)
        top.unpersist()
    # more input ratings than broadcast_max_ratings: the shuffle path
    small = SimilarityParams(**common, broadcast_max_ratings=len(rows) - 1)
    fallback, again = compute_similar(base, small)
    assert again["pairs_method"] == "shuffle" and again["rows"] == shuffle["rows"]
    fallback.unpersist()
    shuffle_top.unpersist()


# ------------------------------------------------------------------------------------------ cap
def test_user_cap_is_deterministic_reported_and_exact_on_what_it_keeps(spark):
    rows = power_law_rows(n=1500, seed=9)
    cap = 12
    n_per_user = {u: len(s) for u, s in sets_of(rows, 0, 1).items()}
    heavy = {u for u, n in n_per_user.items() if n > cap}
    assert len(heavy) >= 3

    def kept(df, seed):
        out = filter_user_cap(df, max_items_per_user=cap, seed=seed)
        return sorted((r[USER_COL], r[ITEM_COL]) for r in out.select(USER_COL, ITEM_COL).collect())

    base = ratings_df(spark, rows, 3)
    first = kept(base, 42)
    again = kept(spark.createDataFrame(rows[::-1], RATINGS3).repartition(5), 42)
    assert first == again                                     # independent of order/partitioning
    assert kept(base, 43) != first                            # the seed picks the sample
    per_user = defaultdict(int)
    for u, _ in first:
        per_user[u] += 1
    assert per_user == {u: min(n, cap) for u, n in n_per_user.items()}
    assert set(first) <= {(u, i) for u, i, _ in rows}

    params = SimilarityParams(metric="jaccard", top_k=5, min_support=1, max_items_per_user=cap,
                              salt_buckets=2, salt_min_items=5, seed=42)
    top, report = compute_similar(base, params)
    keep = set(first)
    expected, _ = jaccard_reference([r for r in rows if (r[0], r[1]) in keep], 5)
    assert_df_equality(top, expected_df(spark, expected), ignore_row_order=True,
                       ignore_nullable=True)
    top.unpersist()
    assert report["users_capped"] == len(heavy)
    assert report["ratings_dropped_by_cap"] == sum(n_per_user[u] - cap for u in heavy)
    assert report["pairs_without_cap"] == sum(n * (n - 1) // 2 for n in n_per_user.values())
    assert report["pairs_generated"] == sum(min(n, cap) * (min(n, cap) - 1) // 2
                                            for n in n_per_user.values())
    assert report["max_user_items_kept"] == cap
    assert report["user_buckets"] >= 1
    assert report["partial_rows"] >= report["distinct_pairs"] > 0


# ------------------------------------------------------------------------ because you liked X
def test_because_you_liked_excludes_seen_and_names_the_reason(spark):
    ratings = ratings_df(spark, [(0, 1, 5.0), (0, 2, 4.0), (0, 3, 2.0), (0, 4, 5.0), (1, 1, 5.0)])
    similar = expected_df(spark, [
        (1, 10, 0.5, 3, 1), (1, 11, 0.2, 2, 2), (1, 2, 0.9, 4, 3),   # 2 is seen by user 0
        (2, 11, 0.6, 3, 1), (2, 12, 0.1, 1, 2),
        (3, 13, 0.99, 5, 1),                                       # 3 rated 2: not liked
        (4, 10, 0.5, 2, 1),                                        # ties 1->10: same score/rating
    ])
    got = because_you_liked(ratings, similar, users=[0], min_rating=4.0, top_n=3)
    schema = "user_idx int, item_idx int, score double, because_idx int, because_rating double, rank int"
    want = spark.createDataFrame([(0, 11, 0.6, 2, 4.0, 1), (0, 10, 0.5, 1, 5.0, 2),
                                  (0, 12, 0.1, 2, 4.0, 3)], schema)
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    # no liked items -> no rows
    assert because_you_liked(ratings, similar, users=[7]).count() == 0


# ------------------------------------------------------------------------------- item-CF predict
def test_predict_item_cf_by_hand(spark):
    train = ratings_df(spark, [(0, 1, 4.0), (0, 2, 2.0), (0, 3, 5.0), (1, 3, 1.0), (2, 9, 3.0)])
    similar = expected_df(spark, [
        (0, 1, 0.5, 2, 1), (0, 2, 0.25, 1, 2), (0, 3, -0.4, 1, 3),     # negative: not used
        (5, 3, 0.3, 1, 1),
    ])
    pairs = spark.createDataFrame([(0, 0, 3.0), (1, 0, 2.0), (1, 5, 4.0), (2, 5, 1.0), (3, 0, None)],
                                  "user_idx int, item_idx int, rating double")
    got = predict_item_cf(train, pairs, similar)
    mu = (4 + 2 + 5 + 1 + 3) / 5                                    # 3.0
    want = spark.createDataFrame([
        (0, 0, 3.0, (0.5 * 4 + 0.25 * 2) / (0.5 + 0.25)),           # 3.3333
        (1, 0, 2.0, mu),                                            # only a negative neighbour
        (1, 5, 4.0, 1.0),                                           # one neighbour (3), rated 1
        (2, 5, 1.0, mu),                                            # neighbour not rated
        (3, 0, None, mu),                                           # unknown user
    ], "user_idx int, item_idx int, rating double, prediction double")
    assert_approx_df_equality(got, want, 1e-12, ignore_row_order=True, ignore_nullable=True)
    fixed = predict_item_cf(train, pairs.select(USER_COL, ITEM_COL), similar, global_mean=2.5)
    assert fixed.columns == [USER_COL, ITEM_COL, "prediction"]
    assert {(r[0], r[1]): r[2] for r in fixed.collect()}[(3, 0)] == 2.5


# ------------------------------------------------------------------------------------------- job
def _write_dataset(path, rows):
    from batchml.synth.ratings_tables import write_dataset
    u, i, v = (np.array(c) for c in zip(*rows))
    return write_dataset(path, u, i, v)


def test_job_writes_exact_tables_titles_and_metrics(spark, test_config, tmp_path, capsys):
    job = load_job("similarity")
    rows = power_law_rows(n=1200, seed=4)
    data = _write_dataset(tmp_path / "ds", rows)
    out = tmp_path / "sim"
    args = job.build_parser().parse_args([
        "--dataset", str(data), "--output", str(out), "--top-k", "3", "--exact",
        "--show", "Item 5", "--show-user", "0"])
    flags = dict(o.split("=", 1) for o in setting_overrides(args))    # as run_job applies them
    cfg = test_config.replace(**{"similarity.holdout_fraction": 0.2, "similarity.salt_min_items": 5,
                                 **flags})
    assert job.run(spark, cfg, args) == 0

    expected, _ = jaccard_reference(rows, 3)
    assert_df_equality(spark.read.parquet(str(out / "similar_items")), expected_df(spark, expected),
                       ignore_row_order=True, ignore_nullable=True)
    readable = spark.read.parquet(str(out / "similar_items_readable"))
    row = readable.where((F.col(ITEM_COL) == 5) & (F.col(RANK_COL) == 1)).first()
    assert row["title"] == "Item 5" and row["other_title"] == f"Item {row[OTHER_COL]}"
    metrics = json.loads((out / "metrics.json").read_text())
    sim = metrics["similarity"]
    assert sim["max_items_per_user"] == 0 and sim["users_capped"] == 0
    n_users = sets_of(rows, 0, 1)
    assert sim["pairs_generated"] == sum(len(s) * (len(s) - 1) // 2 for s in n_users.values())
    ev = metrics["evaluation"]
    assert ev["train"] + ev["test"] == len(rows) and ev["item_cf"]["n"] == ev["test"]
    assert ev["item_cf"]["rmse"] > 0 and ev["global_mean"]["rmse"] > 0
    assert sim["pairs_method"] == "driver"                     # the default for small ratings
    assert {"cap", "top_k", "write", "eval_cap", "eval_top_k", "eval_predict"} <= set(metrics["timings_s"])
    printed = capsys.readouterr().out
    assert "most similar to 'Item 5'" in printed and "because user 0 liked" in printed


def test_job_rejects_an_unknown_metric_before_starting_spark(tmp_path):
    job = load_job("similarity")
    code = job.main(["--dataset", str(tmp_path), "--output", str(tmp_path / "o"),
                     "--set", "similarity.metric=euclid"])
    assert code == 2
    assert not (tmp_path / "o").exists()
