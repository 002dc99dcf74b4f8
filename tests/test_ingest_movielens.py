"""MovieLens ingest (100K, 1M ``.dat``, 25M CSV layouts) against an independent plain-Python reading."""
from __future__ import annotations

import json

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from batchml.errors import UserError
from batchml.config import build_config
from batchml.ingest import ingest
from batchml.io import movielens as ML
from batchml.io import reasons as R
from batchml.io.text import with_lines
from batchml.synth.movielens import write_movielens_dump
from movielens_reference import VARIANTS, latest, parse_ratings, parse_titles


@pytest.mark.parametrize("variant,gz", [("100k", False), ("dat", True), ("csv", False)])
def test_parse_matches_reference(spark, tmp_path, variant, gz):
    d = write_movielens_dump(tmp_path / variant, n_ratings=1500, variant=variant, seed=3, plant=2,
                             duplicates=4, gz=gz)
    v, found, titles_path = ML.discover_movielens(str(d.path))
    assert v.name == variant and len(found.files) == 1
    sep, header, half, trx, theader, enc, unq = VARIANTS[variant]
    path = d.path / d.files[0]
    data, rejects, kinds = parse_ratings(path, sep, ML.FIELDS, header, half)
    got = with_lines(ML.read_movielens_ratings(spark, v, found.files)).cache()
    # the reader's ids are numbers (long), the reference's their canonical text
    exp = spark.createDataFrame([(n, int(u), int(i), r, t) for n, u, i, r, t in data],
                                "line long, user_id long, item_id long, rating float, t long")
    assert_df_equality(
        got.where("kind = 'data'").select("line", "user_id", "item_id", "rating",
                                          F.unix_seconds("ts").alias("t")),
        exp, ignore_row_order=True, ignore_nullable=True)
    assert sorted((r["line"], r["reason"]) for r in got.where("kind = 'reject'").collect()) == rejects
    found_r = {r["reason"]: r["count"] for r in got.where("kind = 'reject'").groupBy("reason").count().collect()}
    assert found_r == d.planted and set(found_r) == set(R.MOVIELENS_REASONS)
    assert got.count() == sum(kinds.values())

    titles, bad, _ = parse_titles(d.path / titles_path.rsplit("/", 1)[-1], trx, theader, enc, unq)
    assert any(any(ord(c) > 127 for c in t) for t, _ in titles.values())
    assert any(y is None for _, y in titles.values()) and any(y for _, y in titles.values())
    got_t = ML.read_movielens_titles(spark, v, titles_path)
    exp_t = spark.createDataFrame([(int(k), t, y) for k, (t, y) in titles.items()],
                                  "item_id long, title string, year int")
    assert_df_equality(got_t.where("kind = 'data'").select("item_id", "title", "year"), exp_t,
                       ignore_row_order=True, ignore_nullable=True)
    assert sorted(r["line"] for r in got_t.where("kind = 'reject'").collect()) == bad == [bad[0]]


@pytest.mark.parametrize("local_max_rows", [2_000_000, 0], ids=["few-jobs", "distributed"])
def test_ingest_end_to_end_csv_half_stars(spark, tmp_path, local_max_rows):
    """Both ways of de-duplicating and numbering ids (ingest.local_max_rows) give the reference's
    latest ratings, and ids numbered in numeric id order."""
    d = write_movielens_dump(tmp_path / "raw", n_ratings=2000, variant="csv", seed=9, plant=1, duplicates=6)
    out = tmp_path / "ds"
    res = ingest(spark, build_config({"ingest": {"local_max_rows": local_max_rows}}), "movielens",
                 str(d.path), str(out))
    data, rejects, kinds = parse_ratings(d.path / "ratings.csv", ",", ML.FIELDS,
                                         "userId,movieId,rating,timestamp", True)
    exp = latest([("ratings.csv", n, u, i, r, t) for n, u, i, r, t in data])
    ratings = (spark.read.parquet(str(out / "ratings")).join(spark.read.parquet(str(out / "users")), "user_idx")
               .join(spark.read.parquet(str(out / "items")), "item_idx"))
    got = {(r["user_id"], r["item_id"]): (r["rating"], r["t"])
           for r in ratings.select("user_id", "item_id", "rating", F.unix_seconds("ts").alias("t")).collect()}
    assert got == {k: (v[4], v[5]) for k, v in exp.items()}
    s = res.stats
    assert s["duplicates_dropped"] == d.duplicates
    assert any(k.endswith(".5") for k in s["rating_histogram"])
    f = s["files"]["ratings.csv"]
    assert f["lines"] == sum(kinds.values()) and f["headers"] == 1 and f["blank"] == d.blank
    assert f["rejected_by_reason"] == d.planted
    assert s["reconcile"]["ratings_reconcile"] and s["reconcile"]["all_files_reconcile"]
    assert s["variant"] == "csv" and s["date_range"] is not None
    items = spark.read.parquet(str(out / "items"))
    assert items.where(F.col("title").contains(",")).count() > 0
    assert items.where("year is null").count() > 0
    assert json.loads((out / "_stats.json").read_text())["ratings"] == len(exp)
    for table, col in (("users", "user_id"), ("items", "item_id")):
        ids = [r[col] for r in spark.read.parquet(str(out / table)).orderBy(f"{table[:-1]}_idx").collect()]
        assert ids == sorted(ids, key=int) and len(set(ids)) == len(ids)


def test_wrong_format_and_ambiguous_release(spark, tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    (d / "u.data").write_text("US\t1\tR1\tB000\t5\n" * 5)
    with pytest.raises(UserError, match=r"u\.data is not a MovieLens u\.data file"):
        ingest(spark, build_config({}), "movielens", str(d), str(tmp_path / "out"))
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.5,100\n")
    with pytest.raises(UserError, match="more than one MovieLens release"):
        ML.discover_movielens(str(d))
