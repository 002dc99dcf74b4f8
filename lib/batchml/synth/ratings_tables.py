"""Write a dataset dir (the ingest job's output layout) straight from generated arrays.

Tests and benchmarks use this instead of going through a raw dump and the ingest job::

    out/ratings/     user_idx int, item_idx int, rating float, ts timestamp null
    out/users/       user_idx int, user_id string          (user_id = "u<idx>")
    out/items/       item_idx int, item_id string, title string null, year int null   ("i<idx>")
    out/probe/       user_idx int, item_idx int              (only when ``probe`` is given)
    out/_stats.json  counts and the rating histogram
    out/ground_truth/ (only when ``model`` is given)
        truth.json      mu, noise_sigma, rank, rating_min, rating_max, n_users, n_items
        users.parquet   user_id string, bias double, factors list<double>
        items.parquet   item_id string, bias double, factors list<double>

The ``ground_truth`` layout matches what :func:`batchml.synth.netflix.write_netflix_dump` saves
beside a raw dump (there the id columns are ``customer_id`` / ``movie_id``, int64), so one reader
(:func:`batchml.factorize.read_ground_truth`) handles both.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batchml.schema import (GROUND_TRUTH, ITEM_COL, ITEM_ID_COL, ITEMS, PROBE, RATING_COL, RATINGS,
                            STATS_FILE, TITLE_COL, TRUTH_FILE, TS_COL, USER_COL, USER_ID_COL, USERS, YEAR_COL)
from batchml.synth.model import RatingModel



def user_ids(idx: np.ndarray) -> list[str]:
    """Source ids written for user indices (``u<idx>``)."""
    return [f"u{int(i)}" for i in idx]


def item_ids(idx: np.ndarray) -> list[str]:
    """Source ids written for item indices (``i<idx>``)."""
    return [f"i{int(i)}" for i in idx]


def _write_table(table: pa.Table, path: Path, rows_per_file: int = 1_000_000) -> None:
    path.mkdir(parents=True, exist_ok=True)
    n_files = max(1, -(-table.num_rows // rows_per_file))
    for k in range(n_files):
        part = table.slice(k * rows_per_file, rows_per_file)
        pq.write_table(part, path / f"part-{k:05d}.parquet")


def write_dataset(out: str | os.PathLike, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                  ts: np.ndarray | None = None, model: RatingModel | None = None,
                  probe: np.ndarray | None = None, n_users: int | None = None,
                  n_items: int | None = None) -> Path:
    """Write a dataset dir from per-rating arrays.

    Parameters
    ----------
    out : path of the dataset dir (created; existing tables are overwritten).
    users, items : per-rating user and item indices (0-based, dense).
    ratings : per-rating values.
    ts : optional per-rating ``datetime64`` values (``ts`` column; null when omitted).
    model : the generating :class:`RatingModel`; its parameters go to ``ground_truth/``.
    probe : optional row indices (into the arrays) written as the ``probe`` pairs table; the rows
        stay in ``ratings`` too, as in an ingest without ``remove_probe``.
    n_users, n_items : sizes of the id maps (default: from ``model``, else max index + 1).

    Returns
    -------
    The dataset dir as a :class:`Path`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    users = np.asarray(users, dtype=np.int32)
    items = np.asarray(items, dtype=np.int32)
    n = len(users)
    if not (len(items) == n == len(ratings)):
        raise ValueError("users, items and ratings must have the same length")
    n_users = n_users or (model.n_users if model is not None else int(users.max()) + 1 if n else 0)
    n_items = n_items or (model.n_items if model is not None else int(items.max()) + 1 if n else 0)
    _write_table(_ratings_table(users, items, ratings, ts), out / RATINGS)
    _write_id_maps(out, n_users, n_items)
    if probe is not None:
        probe = np.asarray(probe, dtype=np.int64)
        _write_table(pa.table({USER_COL: pa.array(users[probe], pa.int32()),
                               ITEM_COL: pa.array(items[probe], pa.int32())}), out / PROBE)
    stats = _stats(users, items, ratings, probe)
    (out / STATS_FILE).write_text(json.dumps(stats, indent=2))
    if model is not None:
        write_ground_truth(out / GROUND_TRUTH, model)
    return out


def _ratings_table(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, ts: np.ndarray | None) -> pa.Table:
    n = len(users)
    ts_arr = (pa.array(np.asarray(ts).astype("datetime64[us]"), type=pa.timestamp("us", tz="UTC"))
              if ts is not None else pa.nulls(n, type=pa.timestamp("us", tz="UTC")))
    return pa.table({
        USER_COL: pa.array(users, pa.int32()),
        ITEM_COL: pa.array(items, pa.int32()),
        RATING_COL: pa.array(np.asarray(ratings, dtype=np.float32), pa.float32()),
        TS_COL: ts_arr,
    })


def _write_id_maps(out: Path, n_users: int, n_items: int) -> None:
    """The ``users`` and ``items`` tables (ids ``u<idx>`` / ``i<idx>``, titles ``Item <idx>``)."""
    u_idx = np.arange(n_users, dtype=np.int32)
    i_idx = np.arange(n_items, dtype=np.int32)
    _write_table(pa.table({USER_COL: pa.array(u_idx), USER_ID_COL: pa.array(user_ids(u_idx))}),
                 out / USERS)
    _write_table(pa.table({
        ITEM_COL: pa.array(i_idx), ITEM_ID_COL: pa.array(item_ids(i_idx)),
        TITLE_COL: pa.array([f"Item {i}" for i in i_idx], pa.string()),
        YEAR_COL: pa.nulls(n_items, pa.int32()),
    }), out / ITEMS)


def _stats(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, probe: np.ndarray | None) -> dict:
    """``_stats.json``: counts and the rating histogram."""
    n = len(users)
    values, counts = np.unique(np.asarray(ratings, dtype=float), return_counts=True)
    return {
        "source": "batchml.synth.ratings_tables", "ratings": n,
        "distinct_users": int(len(np.unique(users))), "distinct_items": int(len(np.unique(items))),
        "rating_mean": float(np.mean(ratings)) if n else None,
        "rating_histogram": {f"{v:g}": int(c) for v, c in zip(values, counts)},
        "probe": int(len(probe)) if probe is not None else None,
    }


def write_ground_truth(gt: str | os.PathLike, model: RatingModel) -> Path:
    """Save a :class:`RatingModel` as ``truth.json`` + ``users.parquet`` + ``items.parquet``."""
    gt = Path(gt)
    gt.mkdir(parents=True, exist_ok=True)
    u_idx = np.arange(model.n_users)
    i_idx = np.arange(model.n_items)
    pq.write_table(pa.table({
        USER_ID_COL: pa.array(user_ids(u_idx)), "bias": pa.array(model.user_bias, pa.float64()),
        "factors": pa.array(list(model.user_factors.astype(float)), pa.list_(pa.float64())),
    }), gt / "users.parquet")
    pq.write_table(pa.table({
        ITEM_ID_COL: pa.array(item_ids(i_idx)), "bias": pa.array(model.item_bias, pa.float64()),
        "factors": pa.array(list(model.item_factors.astype(float)), pa.list_(pa.float64())),
    }), gt / "items.parquet")
    truth = {"mu": model.mu, "noise_sigma": model.noise, "rank": int(model.user_factors.shape[1]),
             "rating_min": model.rating_min, "rating_max": model.rating_max,
             "n_users": model.n_users, "n_items": model.n_items}
    (gt / TRUTH_FILE).write_text(json.dumps(truth, indent=2))
    return gt
