"""Synthetic MovieLens dumps in the exact raw layouts of the three release families.

* ``100k``: ``u.data`` (``user<TAB>item<TAB>rating<TAB>timestamp``, no header, unsorted) and
  ``u.item`` (24 ``|`` fields, ISO-8859-1).
* ``dat`` (1M/10M): ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``, sorted by user) and
  ``movies.dat`` (``MovieID::Title::Genres``, ISO-8859-1).
* ``csv`` (20M/25M/latest): ``ratings.csv`` (header, half-star ratings) and ``movies.csv`` (header,
  UTF-8, titles with commas or quotes double-quoted).

Titles end in ``(year)`` except a few; accented titles exercise the encodings.  Planted on request:
broken rating lines of every reject kind, duplicate (user, movie) lines with other timestamps, blank
lines and bad title lines; counts in ``ground_truth/truth.json``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from batchml.errors import ConfigError
from batchml.io import reasons as R
from batchml.synth.lines import (LineDump, as_strings, insert_lines, join_cols, save_truth, spread,
                                 write_file)
from batchml.synth.model import RatingModel, draw_rating_set, draw_ratings

LOG = logging.getLogger("batchml.synth")

_GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
           "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
           "Western"]
_NAMES = ["Toy Story", "Shawshank Redemption, The", "Café Society", "Amélie", "Crouching Tiger, Hidden Dragon",
          'Dr. "Strange" Love', "Señor Ávila", "Star Wars: Episode IV - A New Hope", "City of Lost Children, The",
          "Zoë's Crème Brûlée", "Heat", "Seven (a.k.a. Se7en)"]
FILES = {"100k": ("u.data", "u.item"), "dat": ("ratings.dat", "movies.dat"),
         "csv": ("ratings.csv", "movies.csv")}
_SEPARATORS = {"100k": "\t", "dat": "::", "csv": ","}


def _title_rows(n_items: int, rng: np.random.Generator) -> list[tuple[str, int | None]]:
    out = []
    for m in range(n_items):
        name = f"{_NAMES[m % len(_NAMES)]} {m}" if m >= len(_NAMES) else _NAMES[m]
        year = None if rng.random() < 0.04 else int(rng.integers(1920, 2020))
        out.append((name if year is None else f"{name} ({year})", year))
    return out


def _csv_quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"' if ("," in s or '"' in s) else s


def write_movielens_dump(out: str | os.PathLike, n_ratings: int, variant: str = "100k", seed: int = 42,
                         plant: int = 0, duplicates: int = 0, gz: bool = False,
                         taste: float = 0.0) -> LineDump:
    """Write a MovieLens ``variant`` (``100k``, ``dat``, ``csv``) dump of ``n_ratings`` distinct ratings."""
    if variant not in FILES:
        raise ConfigError(f"unknown MovieLens variant {variant!r} (known: {', '.join(FILES)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng, model, users, items = draw_rating_set(n_ratings, seed, taste=taste)
    n_users, n_items = model.n_users, model.n_items
    sep = _SEPARATORS[variant]
    rtext, ts, body = _rating_lines(variant, model, users, items, rng)
    extra, after, planted = [], [], {}
    if plant:
        extra, planted = _broken_rating_lines(rng, variant, plant, n_users, n_items)
        after = list(spread(rng, n_ratings, len(extra)))
    n_dup = min(duplicates, n_ratings)
    for r in rng.choice(n_ratings, size=n_dup, replace=False):
        new_r = rtext[int(r)].as_py() if variant != "csv" else f"{rng.choice([0.5, 2.5, 4.5]):.1f}"
        extra.append(sep.join([str(users[r] + 1), str(items[r] + 1), new_r,
                               str(int(ts[r]) + int(rng.integers(-10**6, 10**6)))]))
        after.append(int(rng.integers(0, n_ratings)))
    lines = insert_lines(body, extra, np.array(after, dtype=np.int64))
    rname, tname = FILES[variant]
    rname += ".gz" if gz else ""
    head = [pa.array(["userId,movieId,rating,timestamp\n"])] if variant == "csv" else []
    write_file(out / rname, head + [lines], gz)
    tl, enc, bad_titles = _title_lines(variant, _title_rows(n_items, rng), rng, plant)
    (out / tname).write_bytes(("\n".join(tl) + "\n").encode(enc))
    truth = {"seed": seed, "variant": variant, "n_ratings": n_ratings, "n_users": n_users, "n_items": n_items,
             "planted_rejects": planted, "duplicates": n_dup, "blank": plant if plant else 0,
             "bad_title_lines": bad_titles, "titles_encoding": enc, "files": [rname, tname]}
    save_truth(out, truth)
    LOG.info("wrote MovieLens %s dump to %s", variant, out)
    return LineDump(out, [rname], n_ratings, planted, n_dup, truth["blank"], truth)


def _rating_lines(variant: str, model: RatingModel, users: np.ndarray, items: np.ndarray,
                  rng: np.random.Generator) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """``(rating text, timestamps, lines)``: ratings and timestamps in draw order, the lines in the
    variant's order (100k shuffled, the others sorted by user then movie)."""
    n_ratings = len(users)
    if variant == "csv":
        half = model.mean(users, items) + rng.normal(0, model.noise, n_ratings)
        ratings = np.clip(np.round(half * 2) / 2, 0.5, 5.0)
        rtext = pa.array([f"{r:.1f}" for r in ratings.tolist()], pa.string())
    else:
        rtext = as_strings(draw_ratings(model, users, items, rng))
    ts = rng.integers(874_724_710, 1_700_000_000, size=n_ratings)
    order = rng.permutation(n_ratings) if variant == "100k" else np.lexsort((items, users))
    u, i = as_strings(users[order].astype(np.int64) + 1), as_strings(items[order].astype(np.int64) + 1)
    body = join_cols([u, i, rtext.take(pa.array(order)), as_strings(ts[order])], _SEPARATORS[variant])
    return rtext, ts, body


def _broken_rating_lines(rng: np.random.Generator, variant: str, plant: int, n_users: int,
                         n_items: int) -> tuple[list[str], dict[str, int]]:
    """``plant`` broken rating lines of every reject kind, then ``plant`` blank ones; and the
    counts by reason."""
    uu = lambda: int(rng.integers(1, n_users + 1))  # noqa: E731
    ii = lambda: int(rng.integers(1, n_items + 1))  # noqa: E731
    t = 978_300_760
    j = _SEPARATORS[variant].join
    kinds = {
        R.WRONG_FIELD_COUNT: lambda: j([str(uu()), str(ii()), "3"]),
        R.BAD_USER_ID: lambda: j(["x" + str(uu()), str(ii()), "3", str(t)]),
        R.BAD_ITEM_ID: lambda: j([str(uu()), rng.choice(["", "m7", "-2"]), "3", str(t)]),
        R.BAD_RATING: lambda: j([str(uu()), str(ii()), rng.choice(["x", "", "3.25" if variant == "csv" else "3.5"]), str(t)]),
        R.RATING_OUT_OF_RANGE: lambda: j([str(uu()), str(ii()), rng.choice(["0", "6", "7"]), str(t)]),
        R.BAD_DATE: lambda: j([str(uu()), str(ii()), "4", rng.choice(["yesterday", "-5", "12.5"])]),
    }
    extra, planted = [], {}
    for reason, make in kinds.items():
        extra += [make() for _ in range(plant)]
        planted[reason] = plant
    return extra + [""] * plant, planted


def _title_lines(variant: str, titles: list[tuple[str, int | None]], rng: np.random.Generator,
                 plant: int) -> tuple[list[str], str, int]:
    """``(lines, encoding, bad lines)`` of the variant's titles file (one bad line when planting)."""
    genres = lambda: "|".join(sorted(set(rng.choice(_GENRES, 2))))  # noqa: E731
    if variant == "100k":
        tl = [f"{m + 1}|{t}|01-Jan-{y or 1995}||http://us.imdb.com/M/title-exact?{m + 1}|"
              + "|".join(str(int(b)) for b in rng.integers(0, 2, 19)) for m, (t, y) in enumerate(titles)]
        enc = "iso-8859-1"
    elif variant == "dat":
        tl = [f"{m + 1}::{t}::{genres()}" for m, (t, _) in enumerate(titles)]
        enc = "iso-8859-1"
    else:
        tl = ["movieId,title,genres"] + [f"{m + 1},{_csv_quote(t)},{genres()}" for m, (t, _) in enumerate(titles)]
        enc = "utf-8"
    if not plant:
        return tl, enc, 0
    bad = {"100k": "9999|Broken Title (1999)|01-Jan-1999", "dat": "9999::Broken Title (1999)",
           "csv": 'x9,"Broken (1999)",Drama'}[variant]
    tl.insert(len(tl) // 2, bad)
    return tl, enc, 1
