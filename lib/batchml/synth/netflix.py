"""Synthetic Netflix Prize dumps in the exact raw format, with the ground truth saved beside them.

Layouts: ``combined`` (Kaggle's ``combined_data_1..4.txt``) or ``training_set``
(``training_set/mv_0000001.txt`` ...), optionally gzipped; plus ``movie_titles.csv`` (ISO-8859-1,
commas in titles, ``NULL`` years), ``probe.txt`` and ``qualifying.txt``.  Broken lines of every
reject kind can be planted; their counts by reason are saved in ``ground_truth/truth.json``.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from batchml.errors import ConfigError
from batchml.io import reasons as R
from batchml.schema import GROUND_TRUTH, TRUTH_FILE
from batchml.synth.lines import as_strings, date_strings, join_cols, write_lines
from batchml.synth.model import (NETFLIX_FIRST_DATE, NETFLIX_LAST_DATE, RatingModel, default_sizes,
                                 draw_dates, draw_day_offsets, draw_ratings, make_model, row_slices,
                                 sample_pairs, sparse_ids)

LOG = logging.getLogger("batchml.synth")

FAMOUS = [
    "The Lord of the Rings: The Fellowship of the Ring",
    "The Lord of the Rings: The Two Towers",
    "The Lord of the Rings: The Return of the King",
    "Battlestar Galactica: Season 1",
    "Battlestar Galactica: Season 2",
]
WRESTLING = ["WWE: WrestleMania XX", "WWE: Royal Rumble 2004", "WWE: SummerSlam 2003"]
_WORDS = ("Night Day Love Money Trouble Summer River City Ghost Island Road King Queen Winter Dream "
          "House Garden Fire Star Dance Secret Letter Return Shadow Story Heart Game Blue Red").split()
_ACCENTED = ["Café Society", "Amélie", "Señor Ávila", "Zoë's Crème Brûlée", "Über Öl", "Ça Ira"]


@dataclass
class NetflixDump:
    """What was written, for tests and demos."""

    path: Path
    n_ratings: int
    n_users: int
    n_items: int
    files: list[str]
    planted: dict[str, int]
    truth: dict


def movie_titles(n_items: int, rng: np.random.Generator) -> tuple[list[str], list[int | None]]:
    titles, years = [], []
    for m in range(n_items):
        k = rng.random()
        if k < 0.08:
            t = f"{_ACCENTED[m % len(_ACCENTED)]} {m}"
        elif k < 0.2:
            a, b, c = rng.choice(_WORDS, 3)
            t = f"{a}, {b} and Other {c} {m}"
        else:
            a, b = rng.choice(_WORDS, 2)
            t = f"The {a} of {b} {m}"
        titles.append(t)
        years.append(None if rng.random() < 0.03 else int(rng.integers(1920, 2006)))
    return titles, years


def _assign_named_items(model: RatingModel, counts: np.ndarray, titles: list[str],
                        rng: np.random.Generator) -> dict[str, int]:
    """Give well-known titles to popular items; LOTR and BSG share a taste, wrestling the opposite."""
    order = np.argsort(-counts, kind="stable")
    named = {}
    taste = rng.normal(0, 1, model.item_factors.shape[1])
    taste *= np.linalg.norm(model.item_factors, axis=1).mean() * 1.5 / np.linalg.norm(taste)
    picks = list(order[: len(FAMOUS)])
    for title, idx in zip(FAMOUS, picks):
        titles[idx] = title
        model.item_factors[idx] = taste + rng.normal(0, 0.05, len(taste))
        model.item_bias[idx] = abs(model.item_bias[idx]) + 0.3
        named[title] = int(idx)
    mid = order[len(order) // 4: len(order) // 4 + len(WRESTLING)]
    for title, idx in zip(WRESTLING, mid):
        titles[idx] = title
        model.item_factors[idx] = -taste + rng.normal(0, 0.05, len(taste))
        model.item_bias[idx] = -abs(model.item_bias[idx]) - 0.3
        named[title] = int(idx)
    return named


def _block_lines(movie_ids: np.ndarray, starts: np.ndarray, body: pa.Array) -> pa.Array:
    """Interleave ``movie_id:`` header lines before each movie's rows (rows sorted by movie)."""
    headers = pc.binary_join_element_wise(as_strings(movie_ids), pa.scalar(""), ":\n")
    n_rows, n_heads = len(body), len(movie_ids)
    pos_head = starts + np.arange(n_heads)
    seg = np.searchsorted(starts, np.arange(n_rows), side="right")
    pos_row = np.arange(n_rows) + seg
    take = np.empty(n_rows + n_heads, dtype=np.int64)
    take[pos_row] = np.arange(n_rows)
    take[pos_head] = n_rows + np.arange(n_heads)
    return pa.concat_arrays([body, headers]).take(pa.array(take))


class _Sink:
    """A text file (optionally gzip) that can drop the final newline."""

    def __init__(self, path: Path, gz: bool):
        self.path = path
        self.fh = gzip.open(path, "wb", compresslevel=3) if gz else open(path, "wb")

    def write(self, arr: pa.Array) -> None:
        write_lines(self.fh, arr)

    def close(self, trailing_newline: bool = True) -> None:
        self.fh.close()
        if not trailing_newline:
            if str(self.path).endswith(".gz"):
                data = gzip.decompress(self.path.read_bytes())
                self.path.write_bytes(gzip.compress(data.rstrip(b"\n"), compresslevel=3))
            else:
                with open(self.path, "rb+") as fh:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) == b"\n":
                        fh.seek(-1, os.SEEK_END)
                        fh.truncate()


def _planted_lines(rng: np.random.Generator, cust: np.ndarray, n: int) -> dict[str, list[str]]:
    """Broken rating lines of every kind, ``n`` of each (written inside valid movie blocks)."""
    c = lambda: int(rng.choice(cust))  # noqa: E731
    kinds = {
        R.WRONG_FIELD_COUNT: lambda: f"{c()},3",
        R.BAD_USER_ID: lambda: f"x{c()},3,2005-09-06",
        R.BAD_RATING: lambda: f"{c()},{rng.choice(['x', '3.5', ''])},2005-09-06",
        R.RATING_OUT_OF_RANGE: lambda: f"{c()},{rng.choice([0, 6, 9])},2004-01-02",
        R.BAD_DATE: lambda: f"{c()},4,{rng.choice(['2005-02-30', '2005-13-01', 'yesterday'])}",
    }
    return {reason: [make() for _ in range(n)] for reason, make in kinds.items()}


@dataclass
class _Sample:
    """The drawn ratings (sorted by item), with the model and the ids and titles of the dump."""

    model: RatingModel
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    days: np.ndarray         # days after NETFLIX_FIRST_DATE of each rating (int16)
    counts: np.ndarray       # ratings per item
    cust: np.ndarray         # customer id of each user
    movie_ids: np.ndarray    # movie id of each item
    titles: list[str]
    years: list[int | None]
    named: dict[str, int]    # well-known title -> item
    starts: np.ndarray       # first rating row of each item
    day_text: pa.Array       # 'YYYY-MM-DD' of each day offset

    def date_text(self, r0: int, r1: int) -> pa.Array:
        """'YYYY-MM-DD' of ratings ``r0 .. r1 - 1``."""
        return self.day_text.take(pa.array(self.days[r0:r1]))

    @property
    def n_users(self) -> int:
        return len(self.cust)

    @property
    def n_items(self) -> int:
        return len(self.movie_ids)


def _sample(n_ratings: int, n_users: int, n_items: int, rank: int, noise: float, taste: float,
            rng: np.random.Generator) -> _Sample:
    model = make_model(n_users, n_items, rank, noise, rng)
    users, items = sample_pairs(n_ratings, n_users, n_items, rng, model=model, taste=taste)
    starts = np.searchsorted(items, np.arange(n_items))
    counts = np.diff(starts, append=len(items))     # = np.bincount(items), without its int64 copy
    titles, years = movie_titles(n_items, rng)
    named = _assign_named_items(model, counts, titles, rng)
    ratings = draw_ratings(model, users, items, rng)
    days = draw_day_offsets(n_ratings, rng)
    cust = sparse_ids(n_users, rng)
    all_days = NETFLIX_FIRST_DATE + np.arange(int((NETFLIX_LAST_DATE - NETFLIX_FIRST_DATE).astype(int)) + 1)
    return _Sample(model=model, users=users, items=items, ratings=ratings, days=days, counts=counts,
                   cust=cust, movie_ids=np.arange(1, n_items + 1, dtype=np.int64), titles=titles,
                   years=years, named=named, starts=starts, day_text=date_strings(all_days))


def write_netflix_dump(out: str | os.PathLike, n_ratings: int, seed: int = 42, n_users: int = 0,
                       n_items: int = 0, rank: int = 5, noise: float = 0.5,
                       probe_fraction: float = 0.02, qualifying_fraction: float = 0.02,
                       layout: str = "combined", n_files: int = 4, gz: bool = False,
                       plant: int = 0, trailing_newline: bool = False,
                       taste: float = 0.0) -> NetflixDump:
    """Write a Netflix-Prize-format dump of ``n_ratings`` ratings drawn from a known model.

    ``plant`` > 0 writes that many broken lines of each reject kind (plus a bad header block and
    rating lines before the first header of a file).  ``trailing_newline=False`` leaves the last
    file without a final newline, as some real files are.  ``taste`` > 0 makes users rate what
    they like (see :func:`batchml.synth.model.sample_pairs`).
    """
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_users, n_items = default_sizes(n_ratings, n_users, n_items)
    s = _sample(n_ratings, n_users, n_items, rank, noise, taste, rng)
    LOG.info("sampled %d ratings, %d users, %d items in %.1fs", n_ratings, n_users, n_items,
             time.perf_counter() - t0)
    groups = _training_groups(out, layout, n_items, n_files)
    planted = {r: 0 for r in R.NETFLIX_REASONS}
    plant_at = _plant_positions(rng, s.cust, plant, n_items, planted) if plant else {}
    files = [_write_training_file(out, name, m0, m1, s, plant_at, planted, plant,
                                  first=gi == 1, last=gi == len(groups) - 1, gz=gz,
                                  trailing_newline=trailing_newline or gi != len(groups) - 1)
             for gi, (name, m0, m1) in enumerate(groups)]
    _write_titles(out / "movie_titles.csv", s.titles, s.years)
    probe_rows = _write_probe(out / "probe.txt", s, probe_fraction, rng)
    n_qualifying = _write_qualifying(out / "qualifying.txt", s, qualifying_fraction, rng)
    pu, pi, pr = s.users[probe_rows], s.items[probe_rows], s.ratings[probe_rows].astype(float)
    n_probe = len(probe_rows)
    truth = {
        "seed": seed, "n_ratings": n_ratings, "n_users": n_users, "n_items": n_items, "rank": rank,
        "mu": s.model.mu, "noise_sigma": noise, "taste": taste, "layout": layout, "gzip": gz,
        "n_probe": n_probe, "n_qualifying": n_qualifying,
        "probe_rmse_true_model": _rmse(s.model.predict(pu, pi), pr) if n_probe else None,
        "probe_rmse_expected_rating": _rmse(s.model.expected_rating(pu, pi), pr) if n_probe else None,
        "planted_rejects": {k: v for k, v in planted.items() if v},
        "named_items": {t: int(s.movie_ids[i]) for t, i in s.named.items()},
        "files": files,
    }
    _write_ground_truth(out / GROUND_TRUTH, s, truth)
    LOG.info("wrote Netflix dump to %s in %.1fs", out, time.perf_counter() - t0)
    return NetflixDump(out, n_ratings, n_users, n_items, files, truth["planted_rejects"], truth)


def _training_groups(out: Path, layout: str, n_items: int, n_files: int) -> list[tuple[str, int, int]]:
    """``(file name, first item, end item)`` of each training file of ``layout``."""
    if layout == "combined":
        bounds = np.linspace(0, n_items, n_files + 1).astype(int)
        return [(f"combined_data_{k + 1}.txt", bounds[k], bounds[k + 1]) for k in range(n_files)]
    if layout == "training_set":
        (out / "training_set").mkdir(exist_ok=True)
        return [(f"training_set/mv_{m + 1:07d}.txt", m, m + 1) for m in range(n_items)]
    raise ConfigError(f"unknown Netflix layout {layout!r} (known: combined, training_set)")


def _plant_positions(rng: np.random.Generator, cust: np.ndarray, plant: int, n_items: int,
                     planted: dict[str, int]) -> dict[int, list[str]]:
    """Item -> broken lines to write after one of its rating lines (never in file 1's head);
    counts them into ``planted``."""
    plant_at: dict[int, list[str]] = {}
    for reason, lines in _planted_lines(rng, cust, plant).items():
        for line in lines:
            plant_at.setdefault(int(rng.integers(0, n_items)), []).append(line)
            planted[reason] += 1
    return plant_at


def _write_training_file(out: Path, name: str, m0: int, m1: int, s: _Sample, plant_at: dict[int, list[str]],
                         planted: dict[str, int], plant: int, first: bool, last: bool, gz: bool,
                         trailing_newline: bool) -> str:
    """Write the movie blocks of items ``m0 .. m1 - 1`` (with the planted lines; rating lines
    before the first header in the second file, a bad header block at the end of the last file);
    return the file's path relative to ``out``."""
    path = out / (name + (".gz" if gz else ""))
    sink = _Sink(path, gz)
    if plant and first:
        head = [f"{int(s.cust[0])},3,2005-01-01", f"{int(s.cust[-1])},4,2005-01-02"]
        sink.write(pa.array([x + "\n" for x in head]))
        planted[R.BEFORE_HEADER] += len(head)
    chunk_movies = max(1, int(2_000_000 / max(1, len(s.items) / s.n_items)))
    for c0 in range(m0, m1, chunk_movies):
        sink.write(_movie_blocks(s, c0, min(m1, c0 + chunk_movies), plant_at))
    if plant and last:
        bad = ["12a:\n", f"{int(s.cust[1])},5,2005-03-03\n", f"{int(s.cust[2])},1,2005-03-04\n"]
        sink.write(pa.array(bad))
        planted[R.BAD_HEADER] += 1
        planted[R.UNDER_BAD_HEADER] += 2
    sink.close(trailing_newline=trailing_newline)
    return str(path.relative_to(out))


def _movie_blocks(s: _Sample, c0: int, c1: int, plant_at: dict[int, list[str]]) -> pa.Array:
    """The ``movie_id:`` blocks of items ``c0 .. c1 - 1`` with their planted lines."""
    starts_all = s.starts
    r0, r1 = starts_all[c0], (starts_all[c1] if c1 < s.n_items else len(s.items))
    body = join_cols([as_strings(s.cust[s.users[r0:r1]]), as_strings(s.ratings[r0:r1]), s.date_text(r0, r1)],
                     ",")
    block = _block_lines(s.movie_ids[c0:c1], starts_all[c0:c1] - r0, body)
    extra = [m for m in range(c0, c1) if m in plant_at]
    if not extra:
        return block
    lines = block.to_pylist()
    for m in sorted(extra, reverse=True):
        at = (starts_all[m] - r0) + (m - c0) + 1 + int(s.counts[m] > 0)
        lines[at:at] = [x + "\n" for x in plant_at[m]]
    return pa.array(lines)


def _write_titles(path: Path, titles: list[str], years: list[int | None]) -> None:
    """``movie_titles.csv``: ISO-8859-1, no quoting, commas inside titles, ``NULL`` years."""
    with open(path, "w", encoding="iso-8859-1", newline="\n") as fh:
        for m, (t, y) in enumerate(zip(titles, years)):
            fh.write(f"{m + 1},{'NULL' if y is None else y},{t}\n")


def _write_probe(path: Path, s: _Sample, probe_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``probe.txt``: a random subset of the training pairs; returns their rows."""
    n_ratings = len(s.items)
    n_probe = int(round(n_ratings * probe_fraction))
    probe_rows = np.sort(rng.choice(n_ratings, size=n_probe, replace=False)) if n_probe else np.array([], int)
    _write_pair_blocks(path, s.items[probe_rows], s.cust[s.users[probe_rows]], None)
    return probe_rows


def _write_qualifying(path: Path, s: _Sample, qualifying_fraction: float, rng: np.random.Generator) -> int:
    """``qualifying.txt``: distinct unrated (user, movie) pairs with dates; returns their number."""
    n_users, n_items = s.n_users, s.n_items
    n_q = int(round(len(s.items) * qualifying_fraction))
    train_keys = np.empty(len(s.items), dtype=np.int64)
    for r in row_slices(len(s.items)):
        train_keys[r] = s.items[r].astype(np.int64) * n_users + s.users[r]
    train_keys.sort()
    qkeys = np.empty(0, dtype=np.int64)
    while len(qkeys) < n_q:
        cand = rng.integers(0, n_users * n_items, size=2 * (n_q - len(qkeys)) + 16, dtype=np.int64)
        pos = np.minimum(np.searchsorted(train_keys, cand), len(train_keys) - 1)
        cand = cand[train_keys[pos] != cand]
        qkeys = np.concatenate([qkeys, cand[~np.isin(cand, qkeys)]])
        qkeys = qkeys[np.sort(np.unique(qkeys, return_index=True)[1])][:n_q]
    qi, qu = qkeys // n_users, qkeys % n_users
    order = np.lexsort((qu, qi))
    qu, qi = qu[order], qi[order]
    qdates = draw_dates(len(qu), rng, first=np.datetime64("2005-01-01"))
    _write_pair_blocks(path, qi, s.cust[qu], qdates)
    return int(len(qu))


def _write_ground_truth(gt: Path, s: _Sample, truth: dict) -> None:
    """``users.parquet`` and ``items.parquet`` (ids, biases, factors) and ``truth.json``."""
    gt.mkdir(exist_ok=True)
    pd.DataFrame({"customer_id": s.cust, "bias": s.model.user_bias,
                  "factors": list(s.model.user_factors)}).to_parquet(gt / "users.parquet")
    pd.DataFrame({"movie_id": s.movie_ids, "bias": s.model.item_bias,
                  "factors": list(s.model.item_factors)}).to_parquet(gt / "items.parquet")
    (gt / TRUTH_FILE).write_text(json.dumps(truth, indent=2))


def _rmse(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - actual) ** 2)))


def _write_pair_blocks(path: Path, movie_idx: np.ndarray, cust_ids: np.ndarray,
                       dates: np.ndarray | None) -> None:
    """``MovieID:`` blocks of ``CustomerID`` (probe) or ``CustomerID,Date`` (qualifying) lines."""
    n_items = int(movie_idx.max()) + 1 if len(movie_idx) else 0
    starts = np.searchsorted(movie_idx, np.arange(n_items))
    present = np.unique(movie_idx)
    if dates is None:
        body = pc.binary_join_element_wise(as_strings(cust_ids), pa.scalar(""), "\n")
    else:
        ds = date_strings(dates)
        body = join_cols([as_strings(cust_ids), ds], ",")
    with open(path, "wb") as fh:
        if len(present):
            write_lines(fh, _block_lines(present + 1, starts[present], body))
