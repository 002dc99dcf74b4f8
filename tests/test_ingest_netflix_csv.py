"""Kaggle Netflix CSV ingest against an independent plain-Python reading of generated files."""
from __future__ import annotations

import json

import pytest
from chispa import assert_df_equality

from batchml.errors import UserError
from batchml.config import build_config
from batchml.ingest import ingest
from batchml.io import netflix_csv as NC
from batchml.io import reasons as R
from batchml.io.text import with_lines
from batchml.synth.netflix_csv import write_netflix_csv_dump
from movielens_reference import latest
from netflix_csv_reference import parse_movies, parse_ratings


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    return write_netflix_csv_dump(tmp_path_factory.mktemp("nfcsv") / "raw", n_ratings=2500, seed=5,
                                  plant=2, duplicates=7)


def test_ratings_and_movies_parse_match_reference(spark, dump):
    path = dump.path / "Netflix_Dataset_Rating.csv"
    got = with_lines(NC.read_netflix_csv_ratings(spark, [str(path)])).cache()
    data, rejects, kinds = parse_ratings(path)
    # the reader's ids are numbers (long), the reference's their canonical text
    exp = spark.createDataFrame([(n, int(u), int(i), r) for n, u, i, r, _ in data],
                                "line long, user_id long, item_id long, rating float")
    assert_df_equality(got.where("kind = 'data'").select("line", "user_id", "item_id", "rating"), exp,
                       ignore_row_order=True, ignore_nullable=True)
    assert sorted((r["line"], r["reason"]) for r in got.where("kind = 'reject'").collect()) == rejects
    found = {r["reason"]: r["count"] for r in got.where("kind = 'reject'").groupBy("reason").count().collect()}
    assert found == dump.planted and set(found) == set(R.NETFLIX_CSV_REASONS)
    assert {r["kind"]: r["count"] for r in got.groupBy("kind").count().collect()} == \
        {k: v for k, v in kinds.items() if v}
    assert kinds["header"] == 1 and kinds["blank"] == dump.blank

    mpath = dump.path / "Netflix_Dataset_Movie.csv"
    movies = NC.read_netflix_csv_movies(spark, [str(mpath)])
    titles, bad, _ = parse_movies(mpath)
    assert any("," in t for t, _ in titles.values()) and any(y is None for _, y in titles.values())
    exp_m = spark.createDataFrame([(int(k), t, y) for k, (t, y) in titles.items()],
                                  "item_id long, title string, year int")
    assert_df_equality(movies.where("kind = 'data'").select("item_id", "title", "year"), exp_m,
                       ignore_row_order=True, ignore_nullable=True)
    assert sorted(r["line"] for r in movies.where("kind = 'reject'").collect()) == bad


def test_ingest_end_to_end_keeps_latest_duplicate(spark, dump, tmp_path):
    out = tmp_path / "ds"
    res = ingest(spark, build_config({}), "netflix-csv", str(dump.path), str(out))
    data, rejects, kinds = parse_ratings(dump.path / "Netflix_Dataset_Rating.csv")
    exp = latest([("f", n, u, i, r, None) for n, u, i, r, _ in data])
    ratings = (spark.read.parquet(str(out / "ratings")).join(spark.read.parquet(str(out / "users")), "user_idx")
               .join(spark.read.parquet(str(out / "items")), "item_idx"))
    got = {(r["user_id"], r["item_id"]): r["rating"] for r in ratings.collect()}
    assert got == {k: v[4] for k, v in exp.items()}
    s = json.loads((out / "_stats.json").read_text())
    assert s["duplicates_dropped"] == dump.duplicates == len(data) - len(exp)
    f = s["files"]["Netflix_Dataset_Rating.csv"]
    assert f["lines"] == f["headers"] + f["accepted"] + f["blank"] + f["rejected"] == sum(kinds.values())
    assert f["rejected_by_reason"] == dump.planted
    assert s["files"]["Netflix_Dataset_Movie.csv"]["rejected"] == dump.truth["bad_title_lines"]
    assert s["reconcile"]["ratings_reconcile"] and s["reconcile"]["all_files_reconcile"]
    assert s["date_range"] is None and s["items"] == dump.truth["n_items"]
    assert spark.read.parquet(str(out / "rejects")).count() == len(rejects) + dump.truth["bad_title_lines"]
    assert res.stats["ratings"] == len(exp)


def test_wrong_format_fails_fast(spark, tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    (d / "Netflix_Dataset_Rating.csv").write_text("1:\n10,3,2005-01-01\n11,4,2005-01-02\n")
    with pytest.raises(UserError, match=r"Netflix_Dataset_Rating\.csv is not a Kaggle Netflix ratings CSV"):
        ingest(spark, build_config({}), "netflix-csv", str(d), str(tmp_path / "out"))
    with pytest.raises(UserError, match="no Kaggle Netflix ratings file"):
        ingest(spark, build_config({}), "netflix-csv", str(tmp_path / "out"), str(tmp_path / "o2"))
