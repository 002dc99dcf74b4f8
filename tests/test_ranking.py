"""Ranking metrics against a plain-Python computation on a hand-made case."""
from __future__ import annotations

import math

import pytest

from batchml.ranking import list_metrics, ranking_metrics
from batchml.schema import ITEM_COL, RATING_COL, USER_COL

# user -> recommended items in rank order
RECS = {1: [10, 11, 12], 2: [20, 21, 22], 4: [40, 41, 42], 5: [50, 51, 52, 53, 54],
        6: [60, 61, 62]}
# held-out ratings: user -> {item: rating}
TEST = {1: {11: 5.0, 12: 4.0, 13: 4.5, 14: 2.0},   # 2 hits of 3 relevant
        2: {20: 5.0},                              # hit at rank 1
        3: {30: 4.0},                              # relevant items, no list at all
        4: {40: 3.0},                              # nothing relevant at threshold 4
        5: {53: 5.0},                              # hit beyond k
        6: {62: 4.0, 63: 4.0, 64: 5.0, 65: 4.0}}   # 1 hit at rank 3 of 4 relevant (> k)


def _plain(k, threshold):
    """The definitions of batchml.ranking, spelled out with loops."""
    per = []
    for u, rated in TEST.items():
        rel = {i for i, r in rated.items() if threshold is None or r >= threshold}
        if not rel:
            continue
        lst = RECS.get(u, [])[:k]
        hits = [1 if i in rel else 0 for i in lst]
        p = sum(hits) / k
        r = sum(hits) / len(rel)
        dcg = sum(h / math.log2(pos + 2) for pos, h in enumerate(hits))
        idcg = sum(1 / math.log2(pos + 2) for pos in range(min(len(rel), k)))
        ap = sum(sum(hits[:pos + 1]) / (pos + 1) for pos, h in enumerate(hits) if h)
        ap /= min(len(rel), k)
        per.append((p, r, dcg / idcg, ap))
    n = len(per)
    return {name: sum(x[j] for x in per) / n for j, name in
            enumerate(("precision", "recall", "ndcg", "map"))} | {"users": n}


@pytest.fixture(scope="module")
def frames(spark):
    recs = spark.createDataFrame(
        [(u, i, float(-r), r + 1) for u, items in RECS.items() for r, i in enumerate(items)],
        f"{USER_COL} int, {ITEM_COL} int, score double, rank int")
    test = spark.createDataFrame(
        [(u, i, r) for u, rated in TEST.items() for i, r in rated.items()],
        f"{USER_COL} int, {ITEM_COL} int, {RATING_COL} float")
    return recs, test


@pytest.mark.parametrize("k,threshold", [(3, 4.0), (2, 4.0), (5, None)])
def test_ranking_metrics_equal_plain_python(frames, k, threshold):
    recs, test = frames
    got = ranking_metrics(recs, test, k=k, threshold=threshold)
    want = _plain(k, threshold)
    assert got["users"] == want["users"] and got["k"] == k
    for name in ("precision", "recall", "ndcg", "map"):
        assert got[name] == pytest.approx(want[name], abs=1e-12), name


def test_hand_values_at_k3(frames):
    """A few values worked out by hand, so the reference itself is checked."""
    got = ranking_metrics(*frames, k=3, threshold=4.0)
    assert got["users"] == 5                         # users 1, 2, 3, 5, 6 (4 has nothing relevant)
    assert got["precision"] == pytest.approx((2 / 3 + 1 / 3 + 0 + 0 + 1 / 3) / 5)
    assert got["recall"] == pytest.approx((2 / 3 + 1 + 0 + 0 + 1 / 4) / 5)
    ap1 = (1 / 2 + 2 / 3) / 3                        # hits at ranks 2 and 3, 3 relevant
    assert got["map"] == pytest.approx((ap1 + 1 + 0 + 0 + (1 / 3) / 3) / 5)


def test_ranking_metrics_empty_test(frames):
    recs, test = frames
    got = ranking_metrics(recs, test.limit(0), k=3)
    assert got["users"] == 0 and got["precision"] is None and got["ndcg"] is None


def test_list_metrics_coverage_and_popularity(spark, frames):
    recs, _ = frames
    counts = spark.createDataFrame([(10, 100), (11, 50), (20, 7)], f"{ITEM_COL} int, n_ratings long")
    got = list_metrics(recs.where("rank <= 3"), counts, catalog_size=30)
    n = sum(min(3, len(v)) for v in RECS.values())
    assert got["recommendations"] == n and got["distinct_items"] == n
    assert got["coverage"] == pytest.approx(n / 30)
    assert got["mean_popularity"] == pytest.approx((100 + 50 + 7) / n)
    empty = list_metrics(recs.limit(0), counts, catalog_size=30)
    assert empty["coverage"] == 0 and empty["mean_popularity"] is None
