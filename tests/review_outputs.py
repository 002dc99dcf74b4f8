"""A reviews table written straight from a generated Amazon TSV dump by the plain-Python reading of
``amazon_reference`` (pyarrow, in the declared schema: no Spark ingest, which has its own tests in
test_ingest_amazon.py), and the review models job's outputs on it for the notebooks test."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from batchml import schema as S
from batchml.config import as_dict, build_config
from batchml.reviews.job import run_reviews
from batchml.synth.amazon import write_amazon_tsv_dump
from amazon_reference import parse_tsv, tsv_text

_ARROW = {"StringType": pa.string(), "IntegerType": pa.int32(), "FloatType": pa.float32(),
          "BooleanType": pa.bool_(), "TimestampType": pa.timestamp("us", tz="UTC")}


def write_reviews_dataset(n_reviews: int, seed: int, base: Path) -> Path:
    """Generate a TSV dump (two categories, no duplicates) under ``base/raw`` and write its
    ``reviews`` table, users and items numbered in sorted id order, to ``base/dataset``."""
    dump = write_amazon_tsv_dump(base / "raw", n_reviews=n_reviews, seed=seed, gz=False, categories=("Books", "Music"))
    rows = []
    for f in dump.files:
        text = tsv_text(dump.path / f)
        rows += [(u, i, r, d, v, h, *text[n]) for n, u, i, r, d, v, h, _ in parse_tsv(dump.path / f)[0]]
    users = {u: k for k, u in enumerate(sorted({r[0] for r in rows}))}
    items = {i: k for k, i in enumerate(sorted({r[1] for r in rows}))}
    columns = {S.REVIEW_ID_COL: [r[6] for r in rows], S.USER_COL: [users[r[0]] for r in rows],
               S.ITEM_COL: [items[r[1]] for r in rows], S.RATING_COL: [r[2] for r in rows],
               S.TS_COL: [dt.datetime.combine(r[3], dt.time(), dt.timezone.utc) for r in rows],
               S.VERIFIED_COL: [r[4] for r in rows], S.HELPFUL_COL: [r[5] for r in rows],
               S.TOTAL_VOTES_COL: [r[7] for r in rows], S.CATEGORY_COL: [r[8] for r in rows],
               S.SUMMARY_COL: [r[9] for r in rows], S.BODY_COL: [r[10] for r in rows],
               S.BODY_LENGTH_COL: [len(r[10]) for r in rows]}
    schema = pa.schema([(f.name, _ARROW[type(f.dataType).__name__], f.nullable) for f in S.REVIEWS_SCHEMA.fields])
    (base / "dataset" / S.REVIEWS).mkdir(parents=True)
    pq.write_table(pa.table(columns, schema=schema), base / "dataset" / S.REVIEWS / "part-0.parquet")
    return base / "dataset"


def build_review_outputs(spark, test_config, base: Path, n_reviews: int = 1000) -> dict[str, str]:
    """``REVIEWS_VERIFIED`` and ``REVIEWS_RATING`` output dirs under ``base`` (one-point grids, no
    item-bias row: the notebook shows it when there is one)."""
    dataset = str(write_reviews_dataset(n_reviews, 8, base / "amazon"))
    out = {}
    for task in ("verified", "rating"):
        cfg = build_config({**as_dict(test_config), "reviews": {
            "task": task, "ngrams": [1], "regs": [1e-4], "max_iter": 15, "item_bias": False,
            "validation_fraction": 0.2, "test_fraction": 0.3}})
        out[f"REVIEWS_{task.upper()}"] = str(base / f"reviews_{task}")
        run_reviews(spark, cfg, dataset=dataset, output=out[f"REVIEWS_{task.upper()}"])
    return out
