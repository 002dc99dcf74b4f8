"""Synthetic Kaggle "Netflix Movie Rating Dataset" dumps: ``Netflix_Dataset_Rating.csv`` (header
``User_ID,Rating,Movie_ID``, sorted by movie) and ``Netflix_Dataset_Movie.csv`` (header
``Movie_ID,Year,Name``, UTF-8, names with commas double-quoted, some ``NULL`` years).

Planted on request: broken rating lines of every reject kind, duplicate (user, movie) lines (the
later line wins, there are no dates), blank lines and bad title lines; counts in
``ground_truth/truth.json``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from batchml.io import reasons as R
from batchml.synth.lines import (LineDump, as_strings, insert_lines, join_cols, save_truth, spread,
                                 write_file)
from batchml.synth.model import draw_rating_set, draw_ratings, sparse_ids
from batchml.synth.netflix import movie_titles

LOG = logging.getLogger("batchml.synth")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"' if ("," in name or '"' in name) else name


def write_netflix_csv_dump(out: str | os.PathLike, n_ratings: int, seed: int = 42, plant: int = 0,
                           duplicates: int = 0, gz: bool = False, taste: float = 0.0) -> LineDump:
    """Write a Kaggle-Netflix-CSV dump of ``n_ratings`` distinct ratings (plus ``duplicates`` repeated
    pairs and ``plant`` broken lines of each kind when asked)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng, model, users, items = draw_rating_set(n_ratings, seed, taste=taste)
    n_users, n_items = model.n_users, model.n_items
    ratings = draw_ratings(model, users, items, rng)
    cust = sparse_ids(n_users, rng)
    body = join_cols([as_strings(cust[users]), as_strings(ratings), as_strings(items.astype(np.int64) + 1)], ",")

    extra, after = [], []
    planted = {}
    if plant:
        c = lambda: int(rng.choice(cust))  # noqa: E731
        m = lambda: int(rng.integers(1, n_items + 1))  # noqa: E731
        kinds = {
            R.WRONG_FIELD_COUNT: lambda: f"{c()},3",
            R.BAD_USER_ID: lambda: f"u{c()},3,{m()}",
            R.BAD_ITEM_ID: lambda: f"{c()},4,{rng.choice(['x1', '-3', '0'])}",
            R.BAD_RATING: lambda: f"{c()},{rng.choice(['x', '3.5', ''])},{m()}",
            R.RATING_OUT_OF_RANGE: lambda: f"{c()},{rng.choice([0, 6, 9])},{m()}",
        }
        for reason, make in kinds.items():
            extra += [make() for _ in range(plant)]
            planted[reason] = plant
        extra += [""] * plant
        after = list(spread(rng, n_ratings, len(extra)))
    dup_rows = rng.choice(n_ratings, size=min(duplicates, n_ratings), replace=False)
    for r in dup_rows:
        extra.append(f"{cust[users[r]]},{(int(ratings[r]) % 5) + 1},{items[r] + 1}")
        after.append(int(rng.integers(r, n_ratings)))
    lines = insert_lines(body, extra, np.array(after, dtype=np.int64))
    header = pa.array(["User_ID,Rating,Movie_ID\n"])
    name = "Netflix_Dataset_Rating.csv" + (".gz" if gz else "")
    write_file(out / name, [header, lines], gz)

    titles, years = movie_titles(n_items, rng)
    years[min(1, n_items - 1)] = None            # at least one NULL year, as the real file has
    movie_lines = ["Movie_ID,Year,Name"] + [
        f"{i + 1},{'NULL' if y is None else y},{_quote(t)}" for i, (t, y) in enumerate(zip(titles, years))]
    bad_titles = 0
    if plant:
        movie_lines.insert(len(movie_lines) // 2, "abc,1999,Not A Movie")
        movie_lines.insert(len(movie_lines) // 3, "77")
        bad_titles = 2
    (out / "Netflix_Dataset_Movie.csv").write_text("\n".join(movie_lines) + "\n", encoding="utf-8")
    truth = {"seed": seed, "n_ratings": n_ratings, "n_users": n_users, "n_items": n_items,
             "planted_rejects": planted, "duplicates": len(dup_rows), "blank": plant,
             "bad_title_lines": bad_titles, "files": [name, "Netflix_Dataset_Movie.csv"]}
    save_truth(out, truth)
    LOG.info("wrote Kaggle Netflix CSV dump to %s", out)
    return LineDump(out, [name], n_ratings, planted, len(dup_rows), plant, truth)
