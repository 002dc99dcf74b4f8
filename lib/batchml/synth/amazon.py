"""Synthetic Amazon review dumps: the Customer Reviews TSV files and McAuley's JSON lines.

TSV: one ``amazon_reviews_us_<Category>_v1_00.tsv[.gz]`` per category, a header line, 15 tab
separated fields, no quoting: titles, headlines and bodies hold stray ``"`` (an unbalanced quote
would swallow lines in a CSV reader), ``<br />``, ``&#34;`` and ``&amp;``.  String ids
(``customer_id`` digits, ``product_id`` ASIN-like); the same customer reviews in several
categories.  On request (``fr_reviews``) a ``sample_fr.tsv`` of the ``FR`` marketplace, in French,
by other customers of the same products.

Review text (headline and body; JSON: summary / title and text) comes from
:mod:`batchml.synth.review_text`: its words depend on the rating and on the verified flag, which
itself depends on the rating.

JSON lines: one file per schema (2014 ``reviews_<Cat>_5.json.gz``, 2018 ``<Cat>_5.json``, 2023
``<Cat>.jsonl.gz``), 2018 with optional ``vote`` ("1,234"), ``style`` and ``image``.

Planted on request: broken lines of every reject kind, duplicate (user, item) reviews with other
dates (the latest by time wins), blank lines (TSV: also at the end of a file); counts in
``ground_truth/truth.json``.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchml.io import reasons as R
from batchml.io.amazon import TSV_COLUMNS
from batchml.synth.lines import (LineDump, as_strings, concat, date_strings, fixed_codes, insert_lines,
                                 join_cols, pick, save_truth, spread, write_file)
from batchml.synth.model import draw_ratings, make_model, sample_pairs
from batchml.synth.review_text import draw_texts, draw_verified

LOG = logging.getLogger("batchml.synth")

CATEGORIES = ("Books", "Musical_Instruments", "Electronics", "Video_Games")
_TITLES = ['Guitar "Pro" Strings', "USB-C Cable, 2 m", 'The 12" Vinyl Edition', "Kids&#34; Tablet",
           "Café Grinder", "Noise Cancelling Headphones", 'Set of 3 "Glow" Dice', "Über Charger"]
_FIRST, _LAST = np.datetime64("1999-06-01"), np.datetime64("2015-08-31")


def _pairs(n: int, seed: int, n_users: int, n_items: int):
    rng = np.random.default_rng(seed)
    model = make_model(n_users, n_items, 5, 0.6, rng)
    users, items = sample_pairs(n, n_users, n_items, rng)
    return rng, users, items, draw_ratings(model, users, items, rng)


def _sizes(n: int) -> tuple[int, int]:
    return max(50, n // 6), max(20, min(n // 12, 2_000_000))


def _dates(rng: np.random.Generator, n: int) -> np.ndarray:
    span = int((_LAST - _FIRST).astype(int))
    return _FIRST + (span * np.sqrt(rng.random(n))).astype(np.int64).astype("timedelta64[D]")


@dataclass
class _TsvReviews:
    """Drawn reviews (in file order) and the attributes of their customers and products."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    cust: np.ndarray        # customer_id of each user
    asin: pa.Array          # product_id of each item
    parent: np.ndarray      # product_parent of each item
    item_cat: np.ndarray    # category index of each item
    title_of: np.ndarray    # index into _TITLES of each item
    dates: np.ndarray
    helpful: np.ndarray
    total: np.ndarray
    verified: np.ndarray


@dataclass
class _Tally:
    """What a generator planted so far, and the duplicates it still has to write."""

    planted: dict[str, int]
    dup_budget: int = 0
    n_dup: int = 0
    blank: int = 0


def _draw_tsv_reviews(n_reviews: int, seed: int, n_categories: int) -> tuple[np.random.Generator, _TsvReviews]:
    n_users, n_items = _sizes(n_reviews)
    rng, users, items, ratings = _pairs(n_reviews, seed, n_users, n_items)
    perm = rng.permutation(n_reviews)            # files are not sorted by product
    users, items, ratings = users[perm], items[perm], ratings[perm]
    cust = np.sort(rng.choice(np.arange(10_000, 53_000_000), size=n_users, replace=False))
    asin = fixed_codes(rng.choice(36 ** 8, size=n_items, replace=False), 8, prefix="B0")
    parent = rng.integers(1_000_000, 999_999_999, size=n_items)
    item_cat = rng.integers(0, n_categories, size=n_items)
    title_of = rng.integers(0, len(_TITLES), size=n_items)
    dates = _dates(rng, n_reviews)
    helpful = np.minimum(rng.geometric(0.5, n_reviews) - 1, 5000)
    total = helpful + rng.integers(0, 3, n_reviews)
    verified = draw_verified(rng, ratings)
    return rng, _TsvReviews(users=users, items=items, ratings=ratings, cust=cust, asin=asin, parent=parent,
                            item_cat=item_cat, title_of=title_of, dates=dates, helpful=helpful, total=total,
                            verified=verified)


def write_amazon_tsv_dump(out: str | os.PathLike, n_reviews: int, seed: int = 42,
                          categories=CATEGORIES, gz: bool = True, plant: int = 0, duplicates: int = 0,
                          chunk: int = 400_000, fr_reviews: int = 0) -> LineDump:
    """Write ``n_reviews`` distinct (customer, product) reviews as per-category TSV files, and
    ``fr_reviews`` more in ``sample_fr.tsv`` (marketplace ``FR``, French text, customers of their own)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_users, n_items = _sizes(n_reviews)
    rng, rv = _draw_tsv_reviews(n_reviews, seed, len(categories))
    tally = _Tally(planted={r: 0 for r in R.AMAZON_TSV_REASONS}, dup_budget=duplicates)
    header = pa.array(["\t".join(TSV_COLUMNS) + "\n"])
    files = []
    for ci, cat in enumerate(categories):
        rows = np.flatnonzero(rv.item_cat[rv.items] == ci)
        chunks = [header]
        for c0 in range(0, max(1, len(rows)), chunk):
            r = rows[c0:c0 + chunk]
            if len(r):
                chunks.append(_tsv_chunk(rv, r, cat, rng, tally, plant=plant if c0 == 0 else 0,
                                         duplicates=c0 == 0, last_category=ci == len(categories) - 1))
        if plant and ci == 0:
            chunks.append(pa.array(["\n", "\n"]))
            tally.blank += 2
        name = f"amazon_reviews_us_{cat}_v1_00.tsv" + (".gz" if gz else "")
        write_file(out / name, chunks, gz)
        files.append(name)
    if fr_reviews:
        write_file(out / "sample_fr.tsv", [header, _fr_sample(rv, rng, fr_reviews, categories)], False)
        files.append("sample_fr.tsv")
    truth = {"seed": seed, "n_reviews": n_reviews + fr_reviews, "n_users": n_users, "n_items": n_items,
             "categories": list(categories), "planted_rejects": {k: v for k, v in tally.planted.items() if v},
             "duplicates": tally.n_dup, "blank": tally.blank, "files": files, "gzip": gz}
    save_truth(out, truth)
    LOG.info("wrote Amazon TSV dump to %s", out)
    return LineDump(out, files, n_reviews + fr_reviews, truth["planted_rejects"], tally.n_dup, tally.blank, truth)


def _tsv_chunk(rv: _TsvReviews, r: np.ndarray, cat: str, rng: np.random.Generator, tally: _Tally,
               plant: int, duplicates: bool, last_category: bool) -> pa.Array:
    """The lines of reviews ``r`` of category ``cat``, with ``plant`` broken lines of each kind and
    (``duplicates``) this category's share of the duplicate reviews."""
    body = _tsv_lines(rv, r, rng, "US", as_strings(rv.cust[rv.users[r]]), cat.replace("_", " "))
    extra, after = [], []
    if plant:
        extra = _tsv_broken_lines(rng, rv, cat, plant, tally)
        after = list(spread(rng, len(r), len(extra)))
    if tally.dup_budget and duplicates:
        k = min(tally.dup_budget, len(r) // 4 if not last_category else tally.dup_budget, len(r))
        for j in rng.choice(len(r), size=k, replace=False):
            f = body[int(j)].as_py().rstrip("\n").split("\t")
            f[7] = str((int(f[7]) % 5) + 1)
            f[14] = str(np.datetime64(f[14]) + int(rng.integers(-400, 400)))
            extra.append("\t".join(f))
            after.append(int(rng.integers(j, len(r))))
        tally.dup_budget -= k
        tally.n_dup += k
    return insert_lines(body, extra, np.array(after, dtype=np.int64))


def _tsv_lines(rv: _TsvReviews, r: np.ndarray, rng: np.random.Generator, marketplace: str, cust: pa.Array,
               category: str | pa.Array, lang: str = "en", rid_base: int = 36 ** 11) -> pa.Array:
    """The TSV lines of reviews ``r`` (by customers ``cust``): their text drawn in ``lang``."""
    it = rv.items[r]
    summary, text = draw_texts(rng, rv.ratings[r], rv.verified[r], html=True, lang=lang)
    return join_cols([
        marketplace, cust, fixed_codes(r.astype(np.int64) + rid_base, 13, prefix="R"),
        rv.asin.take(pa.array(it)), as_strings(rv.parent[it]), pick(_TITLES, rv.title_of[it]).cast(pa.string()),
        category, as_strings(rv.ratings[r]), as_strings(rv.helpful[r]), as_strings(rv.total[r]), "N",
        pick(["N", "Y"], rv.verified[r].astype(int)), summary, text, date_strings(rv.dates[r])], "\t")


def _fr_sample(rv: _TsvReviews, rng: np.random.Generator, n: int, categories) -> pa.Array:
    """``n`` reviews of the ``FR`` marketplace: ratings, products and dates of ``n`` drawn US reviews,
    French text, customers (ids 60,000,000 and up) that review nowhere else."""
    r = np.sort(rng.choice(len(rv.users), size=min(n, len(rv.users)), replace=False))
    cust = as_strings(60_000_000 + np.arange(len(r)))
    cats = pick([c.replace("_", " ") for c in categories], rv.item_cat[rv.items[r]])
    return _tsv_lines(rv, r, rng, "FR", cust, cats, lang="fr", rid_base=36 ** 12)


def _tsv_broken_lines(rng: np.random.Generator, rv: _TsvReviews, cat: str, plant: int, tally: _Tally) -> list[str]:
    """``plant`` broken lines of every TSV reject kind, then ``plant`` blank ones (counted in ``tally``)."""
    base = ["US", str(rv.cust[0]), "R0PLANTED", rv.asin[0].as_py(), "1", "Thing", cat, "4", "0", "0",
            "N", "Y", "ok", "fine", "2014-01-01"]

    def bad(idx: int, value: str) -> str:
        f = list(base)
        f[idx] = value
        return "\t".join(f)

    kinds = {
        R.WRONG_FIELD_COUNT: lambda: "\t".join(base[:rng.integers(3, 14)]) if rng.random() < 0.5
        else "\t".join(base[:13] + ["a body\twith a tab", base[14]]),
        R.BAD_USER_ID: lambda: bad(1, rng.choice(["", "A1B2C3", "12 34"])),
        R.BAD_ITEM_ID: lambda: bad(3, rng.choice(["", "B00-BAD!", "B0 12"])),
        R.BAD_RATING: lambda: bad(7, rng.choice(["", "five", "4.5"])),
        R.RATING_OUT_OF_RANGE: lambda: bad(7, rng.choice(["0", "6"])),
        R.BAD_VOTES: lambda: bad(8 + int(rng.integers(0, 2)), rng.choice(["-1", "x", ""])),
        R.BAD_VERIFIED: lambda: bad(11, rng.choice(["y", "maybe", ""])),
        R.BAD_DATE: lambda: bad(14, rng.choice(["2015-02-30", "", "31/08/2015", "2015-13-01"])),
    }
    extra = []
    for reason, make in kinds.items():
        extra += [make() for _ in range(plant)]
        tally.planted[reason] += plant
    tally.blank += plant
    return extra + [""] * plant


def _json_lines(schema: str, uid: pa.Array, iid: pa.Array, rating: np.ndarray, secs: np.ndarray,
                helpful: np.ndarray, verified: np.ndarray, rng: np.random.Generator) -> pa.Array:
    n = len(uid)
    summary, text = (pc.replace_substring(t, '"', '\\"')    # JSON-escaped: the words hold no \\ or control
                     for t in draw_texts(rng, rating, verified, html=False))
    rtext = as_strings(rating).cast(pa.string())
    rtext = concat(rtext, ".0")
    vtext = pick(["false", "true"], verified.astype(int))
    if schema == "2023":
        obj = concat('{"rating": ', rtext, ', "title": "', summary, '", "text": "', text, '", "images": [], "asin": "',
                     iid, '", "parent_asin": "', iid, '", "user_id": "', uid, '", "timestamp": ',
                     as_strings(secs * 1000 + rng.integers(0, 1000, n)), ', "helpful_vote": ', as_strings(helpful),
                     ', "verified_purchase": ', vtext, "}")
    elif schema == "2018":
        votes = pa.array([("" if h == 0 else f', "vote": "{h:,}"') for h in helpful.tolist()], pa.string())
        style = pick(["", ', "style": {"Size:": " Large"}', ', "style": {"Format:": " Kindle Edition"}'],
                     rng.integers(0, 3, n))
        image = pick(["", ', "image": ["https://images.example.com/x.jpg"]'], (rng.random(n) < 0.1).astype(int))
        obj = concat('{"overall": ', rtext, ', "verified": ', vtext, ', "reviewTime": "09 1, 2016", "reviewerID": "',
                     uid, '", "asin": "', iid, '"', style, ', "reviewerName": "J. Doe", "reviewText": "', text,
                     '", "summary": "', summary, '", "unixReviewTime": ', as_strings(secs), votes, image, "}")
    else:
        obj = concat('{"reviewerID": "', uid, '", "asin": "', iid, '", "reviewerName": "J. Doe", "helpful": [',
                     as_strings(helpful), ", ", as_strings(helpful + 1), '], "reviewText": "', text,
                     '", "overall": ', rtext, ', "summary": "', summary, '", "unixReviewTime": ', as_strings(secs),
                     ', "reviewTime": "02 28, 2014"}')
    return pc.binary_join_element_wise(obj, pa.scalar(""), "\n")


_JSON_NAMES = {"2014": "reviews_Musical_Instruments_5.json.gz", "2018": "Musical_Instruments_5.json",
               "2023": "Musical_Instruments.jsonl.gz"}


def write_amazon_json_dump(out: str | os.PathLike, n_reviews: int, seed: int = 42,
                           schemas=("2014", "2018", "2023"), plant: int = 0, duplicates: int = 0) -> LineDump:
    """Write ``n_reviews`` reviews per schema, one JSON-lines file each (2014 and 2023 gzipped)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, tally = [], _Tally(planted={r: 0 for r in R.AMAZON_JSON_REASONS})
    for k, schema in enumerate(schemas):
        name = _JSON_NAMES[schema]
        write_file(out / name, [_json_file(schema, k, n_reviews, seed, plant, duplicates, tally)],
                   name.endswith(".gz"))
        files.append(name)
    truth = {"seed": seed, "n_reviews_per_file": n_reviews, "schemas": list(schemas),
             "planted_rejects": {k: v for k, v in tally.planted.items() if v}, "duplicates": tally.n_dup,
             "blank": tally.blank, "files": files}
    save_truth(out, truth)
    LOG.info("wrote Amazon JSON-lines dump to %s", out)
    return LineDump(out, files, n_reviews * len(schemas), truth["planted_rejects"], tally.n_dup, tally.blank,
                    truth)


def _json_file(schema: str, k: int, n_reviews: int, seed: int, plant: int, duplicates: int,
               tally: _Tally) -> pa.Array:
    """The lines of the ``k``-th file (``schema``), drawn from ``seed + k``, with the planted and
    duplicate lines (counted in ``tally``)."""
    n_users, n_items = _sizes(n_reviews)
    rng, users, items, ratings = _pairs(n_reviews, seed + k, n_users, n_items)
    if schema == "2023":
        uid = fixed_codes(users.astype(np.int64) * 7919 + 36 ** 9 + k, 26, prefix="AE")
    else:
        uid = fixed_codes(users.astype(np.int64) * 7919 + 36 ** 12 + k, 13, prefix="A")
    iid = fixed_codes(items.astype(np.int64) * 104729 + 36 ** 7 + k, 8, prefix="B0")
    secs = ((_dates(rng, n_reviews) - np.datetime64("1970-01-01")).astype(np.int64) * 86400)
    helpful = np.where(rng.random(n_reviews) < 0.05, rng.integers(1000, 3000, n_reviews),
                       rng.geometric(0.6, n_reviews) - 1)
    verified = draw_verified(rng, ratings)
    body = _json_lines(schema, uid, iid, ratings, secs, helpful, verified, rng)
    extra, after = [], []
    if plant:
        extra = _json_broken_lines(rng, body, schema, plant, tally)
        after = list(spread(rng, n_reviews, len(extra)))
    if duplicates:
        tkey = "timestamp" if schema == "2023" else "unixReviewTime"
        rkey = "rating" if schema == "2023" else "overall"
        for j in rng.choice(n_reviews, size=min(duplicates, n_reviews), replace=False):
            obj = json.loads(body[int(j)].as_py())
            obj[tkey] = int(obj[tkey]) + int(rng.integers(-10**7, 10**7))
            obj[rkey] = float(rng.integers(1, 6))
            extra.append(json.dumps(obj))
            after.append(int(rng.integers(0, n_reviews)))
            tally.n_dup += 1
    return insert_lines(body, extra, np.array(after, dtype=np.int64))


def _json_broken_lines(rng: np.random.Generator, body: pa.Array, schema: str, plant: int,
                       tally: _Tally) -> list[str]:
    """``plant`` broken lines of every JSON reject kind (variants of the first review), then
    ``plant`` blank ones (counted in ``tally``)."""
    ukey, ikey, rkey, tkey = {"2023": ("user_id", "parent_asin", "rating", "timestamp")}.get(
        schema, ("reviewerID", "asin", "overall", "unixReviewTime"))
    good = json.loads(body[0].as_py())

    def variant(**changes) -> str:
        obj = dict(good)
        for key, val in changes.items():
            if val is _DROP:
                obj.pop(key, None)
            else:
                obj[key] = val
        return json.dumps(obj)

    kinds = {
        R.NOT_JSON: lambda: rng.choice([body[1].as_py().rstrip("\n")[:40], "<html>oops</html>",
                                        "[1, 2, 3]", "NaN"]),
        R.MISSING_FIELD: lambda: variant(**{str(rng.choice([ukey, ikey, rkey, tkey])): _DROP}),
        R.BAD_RATING: lambda: variant(**{rkey: str(rng.choice(["five", "n/a", "4 stars"]))}),
        R.RATING_OUT_OF_RANGE: lambda: variant(**{rkey: float(rng.choice([0.0, 6.0, -1.0]))}),
        R.BAD_DATE: lambda: variant(**{tkey: rng.choice(["yesterday", -5, 12.5])}),
    }
    extra = []
    for reason, make in kinds.items():
        extra += [str(make()) for _ in range(plant)]
        tally.planted[reason] += plant
    tally.blank += plant
    return extra + [""] * plant


class _Drop:
    """Marks a field :func:`_json_broken_lines` removes."""


_DROP = _Drop()
