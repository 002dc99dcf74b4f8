"""A hand-written model dir, dataset dir and similarity output (pyarrow, no Spark) with known
answers, shared by the query and web page tests.

Alice rated two LOTR films; the obscure movie has two 5-star ratings, the plain one 100 ratings
averaging 4.6; wrestling 300 ratings of 2 (the global mean is 2.66).  LOTR and Battlestar share a
taste vector, wrestling opposes it.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batchml.schema import ITEM_COL, RATING_COL, USER_COL

TITLES = ["The Lord of the Rings: The Fellowship of the Ring", "The Lord of the Rings: The Two Towers",
          "The Lord of the Rings: The Return of the King", "Battlestar Galactica: Season 1",
          "Battlestar Galactica: Season 2", "WWE: WrestleMania XX", "WWE: Royal Rumble 2004",
          "WWE: SummerSlam 2003", "Obscure Movie", "Plain Movie"]


def _write(path, table):
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-00000.parquet")


def write_handmade_outputs(base):
    """Write ``base``/ds (dataset), ``base``/model (model dir), ``base``/sim (similarity); return
    ``base``."""
    rank, n_items = 2, len(TITLES)
    taste = np.array([1.0, 0.5])
    q = np.zeros((n_items, rank))
    q[:5], q[5:8] = taste, -taste
    q[8], q[9] = [0.1, -0.2], [0.0, 0.1]
    bias = np.array([0.3, 0.3, 0.3, 0.2, 0.2, -0.4, -0.4, -0.4, 0.0, 0.1])
    item_ids = [str(100 + k) for k in range(n_items)]
    items = pa.table({ITEM_COL: pa.array(range(n_items), pa.int32()), "item_id": item_ids,
                      "title": TITLES, "year": pa.array([2001] * n_items, pa.int32())})
    _write(base / "ds" / "items", items)
    _write(base / "ds" / "users", pa.table({USER_COL: pa.array([0, 1, 2], pa.int32()),
                                            "user_id": ["alice", "bob", "carol"]}))
    # alice rated two LOTR films; the obscure movie has two 5-star ratings; the plain one 100
    # ratings averaging 4.6; wrestling 300 ratings of 2 (the global mean is 2.66)
    rows = [(0, 0, 5.0), (0, 1, 5.0), (1, 8, 5.0), (2, 8, 5.0)]
    rows += [(u, 9, 5.0 if u < 63 else 4.0) for u in range(3, 103)]
    rows += [(u, i, 2.0) for u in range(3, 103) for i in (5, 6, 7)]
    u, i, r = zip(*rows)
    _write(base / "ds" / "ratings", pa.table({USER_COL: pa.array(u, pa.int32()),
                                              ITEM_COL: pa.array(i, pa.int32()),
                                              RATING_COL: pa.array(r, pa.float32())}))
    model = base / "model"
    _write(model / "items", items.append_column("bias", pa.array(bias))
           .append_column("features", pa.array([list(map(float, x)) for x in q], pa.list_(pa.float32())))
           .append_column("n_ratings", pa.array([1, 1, 0, 0, 0, 1, 1, 0, 2, 3], pa.int64())))
    _write(model / "users", pa.table({
        USER_COL: pa.array([0, 1, 2], pa.int32()), "user_id": ["alice", "bob", "carol"],
        "bias": pa.array([0.2, None, -0.1]),
        "features": pa.array([[1.0, 0.5], None, [-1.0, -0.5]], pa.list_(pa.float32())),
        "n_ratings": pa.array([2, 3, 3], pa.int64())}))
    (model / "model.json").write_text(json.dumps({
        "format": "batchml.factorize/1", "kind": "biased", "mu": 3.5, "gamma": 1.0, "rank": rank,
        "rating_min": 1.0, "rating_max": 5.0, "fallback": None, "settings": {}}))
    _write(base / "sim" / "similar_items", pa.table({
        ITEM_COL: pa.array([1, 1, 1], pa.int32()), "other_idx": pa.array([2, 0, 5], pa.int32()),
        "similarity": [0.9, 0.8, 0.1], "co_count": pa.array([40, 30, 2], pa.int64()),
        "rank": pa.array([1, 2, 3], pa.int32())}))
    return base
