"""Fold-in: a new user's ratings file, and their b_u and p_u without re-training.

The user's bias and factors come from a ridge regression against the fixed item biases and
factors, minimizing

    Σ_i (r_ui − μ − b_i − b_u − γ·p_u·q_i)² + λ_b·b_u² + λ·n_u·|p_u|²

(the λ·n_u scaling is the one MLlib ALS uses), solved in closed form on the driver.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from batchml.errors import InputError
from batchml.recommend.item_lookup import ItemLookup
from batchml.recommend.scoring import ItemArrays, position_lookup
from batchml.schema import ITEM_ID_COL, RATING_COL, TITLE_COL

ITEM_KEY = "item"                                    # a source id or a title
KEY_COLUMNS = (ITEM_ID_COL, TITLE_COL, ITEM_KEY)     # the first present names the items
KEY_NAMES = {ITEM_ID_COL: "item id", TITLE_COL: "title", ITEM_KEY: "item id or title"}


@dataclass(frozen=True)
class FoldIn:
    """A folded-in user: ``bias`` (b_u), ``factors`` (p_u, float64), and the rated items."""

    bias: float
    factors: np.ndarray
    item_idx: np.ndarray
    ratings: np.ndarray


# ------------------------------------------------------------------------------ ratings file
def _read_rows(path: str) -> list[list[str]]:
    """The CSV rows that are neither blank nor ``#`` comments; InputError when there are none."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise InputError(f"cannot read fold-in file {path!r}: {exc.strerror or exc}") from None
    rows = [r for r in rows if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise InputError(f"fold-in file {path!r} is empty")
    return rows


def _header(path: str, first: list[str]) -> tuple[str, int, int]:
    """(key column, its position, position of ``rating``) from the header line."""
    header = [c.strip().casefold() for c in first]
    key_col = next((c for c in KEY_COLUMNS if c in header), None)
    if key_col is None or RATING_COL not in header:
        raise InputError(f"fold-in file {path!r}: the first line must name the columns, e.g. "
                         f"'item,rating' (item: a source id or a title); got {first!r}")
    return key_col, header.index(key_col), header.index(RATING_COL)


def _find(lookup: ItemLookup, key_col: str, key: str) -> list[int]:
    if key_col == ITEM_ID_COL:
        return lookup.by_id(key)
    if key_col == TITLE_COL:
        return lookup.by_title(key)
    return lookup.by_id_or_title(key)


def _parse_rating(raw: str) -> float | None:
    try:
        rating = float(raw)
    except ValueError:
        return None
    return rating if math.isfinite(rating) else None


def _match(lookup: ItemLookup, key_col: str, key: str, raw: str,
           rating_range: tuple[float, float] | None) -> tuple[list[int], float, str | None]:
    """(items of ``key``, rating, None) or ([], nan, what is wrong)."""
    rating = _parse_rating(raw)
    if rating is None:
        return [], math.nan, f"rating {raw!r} is not a number"
    if rating_range is not None and not rating_range[0] <= rating <= rating_range[1]:
        return [], math.nan, f"rating {raw} is outside {rating_range[0]:g}..{rating_range[1]:g}"
    hits = _find(lookup, key_col, key)
    return hits, rating, None if hits else lookup.not_found_message(key, KEY_NAMES[key_col])


def _as_arrays(found: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.array(sorted(found), dtype=np.int64)
    return idx, np.array([found[i] for i in idx], dtype=np.float64)


def match_ratings(entries: Iterable[tuple[str, str, str]], lookup: ItemLookup, *,
                  key_col: str = ITEM_KEY,
                  rating_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Items and ratings of ``(where, key, raw rating)`` entries: ``key`` a source id or title (as
    ``key_col`` says), ``raw`` a number (within ``rating_range`` when given).

    Returns
    -------
    (item_idx int array, rating float array, problems): an item listed twice keeps its last
    rating; ``problems`` has one ``"where: what"`` line per unusable entry (unknown items come with
    "did you mean" suggestions).
    """
    found: dict[int, float] = {}
    problems = []
    for where, key, raw in entries:
        hits, rating, problem = _match(lookup, key_col, key, raw, rating_range)
        if problem:
            problems.append(f"{where}: {problem}")
        found.update((h, rating) for h in hits)
    return (*_as_arrays(found), problems)


def read_fold_in_csv(path: str, lookup: ItemLookup) -> tuple[np.ndarray, np.ndarray]:
    """Read a new user's ratings: a CSV with a header naming ``rating`` and one of ``item_id``,
    ``title`` or ``item`` (a source id or a title).  Titles with commas must be quoted.

    Returns
    -------
    (item_idx int array, rating float array); an item listed twice keeps its last rating.

    Raises
    ------
    InputError naming every line that cannot be used (unknown item with suggestions, bad rating).
    """
    rows = _read_rows(path)
    key_col, ki, ri = _header(path, rows[0])
    found: dict[int, float] = {}
    problems = []
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) <= max(ki, ri):
            problems.append(f"line {line_no}: expected {len(rows[0])} fields, got {row!r} "
                            "(quote titles that contain commas)")
            continue
        hits, rating, problem = _match(lookup, key_col, row[ki].strip(), row[ri].strip(), None)
        if problem:
            problems.append(f"line {line_no}: {problem}")
        found.update((h, rating) for h in hits)
    if problems:
        raise InputError(f"fold-in file {path!r}:\n  " + "\n  ".join(problems))
    return _as_arrays(found)


# ---------------------------------------------------------------------------------- the solve
def fold_in(item_idx: np.ndarray, ratings: np.ndarray, items: ItemArrays, *, mu: float, reg: float,
            bias_reg: float) -> FoldIn:
    """Solve a new user's b_u and p_u by ridge regression against fixed item biases and factors.

    Minimizes Σ_i (r_i − offset_i − b_u − p_u·(γq_i))² + bias_reg·b_u² + reg·n·|p_u|², where
    offset_i = μ + b_i (``items.offset``) and γq_i = ``items.factors`` (see the module docstring).
    Rated items that are not in ``items`` (untrained) count with offset μ and no factors.

    Returns
    -------
    :class:`FoldIn`.
    """
    item_idx = np.asarray(item_idx, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float64)
    if len(item_idx) == 0:
        raise InputError("fold-in needs at least one rating")
    lookup = position_lookup(items)
    inside = (item_idx >= 0) & (item_idx < len(lookup))
    pos = np.full(len(item_idx), -1, dtype=np.int64)
    pos[inside] = lookup[item_idx[inside]]
    known = pos >= 0
    rank = items.rank
    safe = np.maximum(pos, 0)
    y = ratings - np.where(known, items.offset[safe] if len(items) else 0.0, float(mu))
    q = np.zeros((len(pos), rank))
    if rank:
        q[known] = items.factors[safe[known]].astype(np.float64)
    x = np.hstack([np.ones((len(pos), 1)), q])
    penalty = np.diag([bias_reg] + [reg * len(pos)] * rank)
    sol = np.linalg.solve(x.T @ x + penalty + 1e-12 * np.eye(rank + 1), x.T @ y)
    return FoldIn(bias=float(sol[0]), factors=sol[1:], item_idx=item_idx, ratings=ratings)
