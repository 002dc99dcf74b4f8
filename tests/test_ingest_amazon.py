"""Amazon review ingest (TSV and McAuley JSON lines) against an independent plain-Python reading."""
from __future__ import annotations


import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from batchml.errors import UserError
from batchml.config import build_config
from batchml.ingest import ingest
from batchml.io import amazon as AZ
from batchml.io import reasons as R
from batchml.io.text import with_lines
from batchml.io.files import source_name
from batchml.synth.amazon import write_amazon_json_dump, write_amazon_tsv_dump
from amazon_reference import decode, json_text, parse_json, parse_tsv, tsv_text
from movielens_reference import latest
from spark_helpers import tiny_splits

TSV_DATA = ("source string, line long, user_id string, item_id string, rating float, d date, "
            "verified boolean, helpful_votes int, title string")
CFG = build_config({"ingest": {"max_reject_fraction": 0.05}})
JSON_DATA = ("source string, line long, user_id string, item_id string, rating float, ms long, "
             "verified boolean, helpful_votes int")


@pytest.fixture(scope="module")
def tsv(tmp_path_factory):
    return write_amazon_tsv_dump(tmp_path_factory.mktemp("amz") / "raw", n_reviews=2400, seed=11, gz=False,
                                 plant=1, duplicates=8, fr_reviews=25)


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
    return write_amazon_json_dump(tmp_path_factory.mktemp("amzj") / "raw", n_reviews=500, seed=12, plant=1,
                                  duplicates=3)


def tsv_reference(root, files):
    data, rejects, kinds = [], [], {}
    for f in files:
        d, r, k = parse_tsv(root / f)
        data += [(f, *row) for row in d]
        rejects += [(f, *row) for row in r]
        kinds[f] = k
    return data, rejects, kinds


def reviews_by_pair(spark, out) -> dict:
    """The reviews table of dataset ``out`` by (user_id, item_id)."""
    reviews = (spark.read.parquet(str(out / "reviews")).join(spark.read.parquet(str(out / "users")), "user_idx")
               .join(spark.read.parquet(str(out / "items")).drop("title"), "item_idx"))
    return {(r["user_id"], r["item_id"]): r.asDict() for r in reviews.collect()}


def check_reviews(spark, out, stats, expected: dict) -> None:
    """The reviews table has one row per rating, each the text of the line its rating was kept from
    (``expected``: (user, item) -> (rating, verified, helpful, review_id, total, category, summary,
    body)), and the counts reconcile."""
    got = reviews_by_pair(spark, out)
    assert set(got) == set(expected)
    for key, (rating, verified, helpful, rid, total, cat, summary, body) in expected.items():
        r = got[key]
        assert (r["rating"], r["verified"], r["helpful_votes"], r["review_id"], r["total_votes"], r["category"],
                r["summary"], r["body"]) == (rating, verified, helpful, rid, total, cat, summary, body), key
        assert r["body_length"] == len(body)
    ratings = spark.read.parquet(str(out / "ratings"))
    assert "body" not in ratings.columns and "summary" not in ratings.columns
    assert stats["reviews"] == stats["ratings"] == ratings.count() == len(got)
    assert stats["reconcile"]["reviews_written"] == stats["ratings"] and stats["reconcile"]["reviews_reconcile"]
    assert len({r["review_id"] for r in got.values()}) == len(got)


DECODED = [  # (as in a dump, as in the reviews table), written by hand
    ('a&#34;b&#x27;c &amp;quot; &lt;br /&gt;', 'a"b\'c &quot; <br />'),
    ("Great<br />value<BR/>ok<br>", "Great\nvalue\nok\n"),
    ("x&#128512;y &#0; &#55357; &#1114112; &#12a; &eacute; &# &#&#34;",
     "x\U0001F600y &#0; &#55357; &#1114112; &#12a; &eacute; &# &#\""),
    ("Très &#233;t&#xE9; &amp; co", "Très été & co"),
    ("", ""), (None, None),
]


def test_review_text_is_decoded_with_builtins(spark):
    df = spark.createDataFrame([(raw,) for raw, _ in DECODED], "t string")
    assert [r[0] for r in df.select(AZ.review_text(F.col("t"))).collect()] == [want for _, want in DECODED]
    assert [decode(raw) for raw, _ in DECODED] == [want for _, want in DECODED]


def test_tsv_parse_matches_reference_across_splits(spark, tsv):
    with tiny_splits(spark, 32768):
        paths = [str(tsv.path / f) for f in tsv.files]
        got = (with_lines(AZ.read_amazon_tsv(spark, paths).withColumn("source", source_name(str(tsv.path))))
               .cache())
        assert got.select("source").distinct().count() == len(tsv.files)
        data, rejects, kinds = tsv_reference(tsv.path, tsv.files)
        cols = ["source", "line", "user_id", "item_id", "rating", F.to_date("ts").alias("d"), "verified",
                "helpful_votes", "title"]
        assert_df_equality(got.where("kind = 'data'").select(*cols), spark.createDataFrame(data, TSV_DATA),
                           ignore_row_order=True, ignore_nullable=True)
        assert sorted(tuple(r) for r in got.where("kind = 'reject'").select("source", "line", "reason")
                      .collect()) == sorted(rejects)
        found = {r["reason"]: r["count"] for r in got.where("kind = 'reject'").groupBy("reason").count().collect()}
        assert found == tsv.planted and set(found) == set(R.AMAZON_TSV_REASONS)
        by_kind = {r["kind"]: r["count"] for r in got.groupBy("kind").count().collect()}
        assert by_kind["blank"] == tsv.blank and by_kind["header"] == len(tsv.files)
        assert got.count() == sum(sum(k.values()) for k in kinds.values())
        # stray quotes are literal text, never the start of a quoted field
        assert got.where(F.col("title").contains('"')).count() > 0


def test_tsv_ingest_end_to_end(spark, tsv, tmp_path):
    out = tmp_path / "ds"
    # a glob input: every category file and the FR marketplace sample in one run
    res = ingest(spark, CFG, "amazon-tsv", str(tsv.path / "*.tsv"), str(out))
    data, rejects, kinds = tsv_reference(tsv.path, tsv.files)
    exp = latest([(f, n, u, i, r, d, v, h, t) for f, n, u, i, r, d, v, h, t in data])
    ratings = (spark.read.parquet(str(out / "ratings")).join(spark.read.parquet(str(out / "users")), "user_idx")
               .join(spark.read.parquet(str(out / "items")), "item_idx"))
    got = {(r["user_id"], r["item_id"]): (r["rating"], r["d"], r["verified"], r["helpful_votes"])
           for r in ratings.select("user_id", "item_id", "rating", F.to_date("ts").alias("d"), "verified",
                                   "helpful_votes").collect()}
    assert got == {k: (v[4], v[5], v[6], v[7]) for k, v in exp.items()}
    s = res.stats
    assert s["duplicates_dropped"] == tsv.duplicates == len(data) - len(exp)
    assert s["ratings"] == len(exp) and s["users"] == len({k[0] for k in exp})
    # the same customer across category files is one user
    cats = {}
    for f, _, u, *_ in data:
        cats.setdefault(u, set()).add(f)
    assert any(len(c) > 1 for c in cats.values())
    assert abs(s["verified_fraction"] - sum(v[6] for v in exp.values()) / len(exp)) < 1e-9
    assert s["helpful_votes"]["total"] == sum(v[7] for v in exp.values())
    for f, k in kinds.items():
        c = s["files"][f]
        assert (c["lines"], c["headers"], c["accepted"], c["blank"], c["rejected"]) == \
            (sum(k.values()), k["header"], k["data"], k["blank"], k["reject"])
    assert s["reconcile"]["rejected_by_reason"] == tsv.planted
    assert s["reconcile"]["ratings_reconcile"] and s["reconcile"]["all_files_reconcile"]
    items = spark.read.parquet(str(out / "items"))
    assert items.where("title is null").count() == 0
    assert spark.read.parquet(str(out / "rejects")).count() == len(rejects)
    # the reviews table: text decoded (<br />, &#34;, &amp;), literal quotes and French kept as they are
    text = {f: tsv_text(tsv.path / f) for f in tsv.files}
    check_reviews(spark, out, s, {k: (v[4], v[6], v[7], *text[v[0]][v[1]]) for k, v in exp.items()})
    bodies = [r["body"] for r in reviews_by_pair(spark, out).values()]
    assert not any("&#34;" in b or "<br" in b or "&amp;" in b for b in bodies)
    assert all(any(c in b for b in bodies) for c in ('"', "&", "\n", "é"))
    by_cat = s["by_category"]
    assert set(by_cat) == {"Books", "Musical Instruments", "Electronics", "Video Games"}
    for cat, figures in by_cat.items():
        rows = [v for k, v in exp.items() if text[v[0]][v[1]][2] == cat]
        assert figures["reviews"] == len(rows) and figures["users"] == len({v[2] for v in rows})
        assert abs(figures["verified_fraction"] - sum(v[6] for v in rows) / len(rows)) < 1e-9
        assert abs(figures["mean_rating"] - sum(v[4] for v in rows) / len(rows)) < 1e-9


def test_json_parse_matches_reference_per_schema(spark, jsonl):
    schemas = {str(jsonl.path / f): AZ.detect_json_schema(str(jsonl.path / f)) for f in jsonl.files}
    assert sorted(schemas.values()) == ["2014", "2018", "2023"]
    got = with_lines(AZ.read_amazon_json(spark, list(schemas), schemas=schemas)
                     .withColumn("source", source_name(str(jsonl.path)))).cache()
    data, rejects, n_lines = [], [], 0
    for path, schema in schemas.items():
        f = path.rsplit("/", 1)[-1]
        d, r, k = parse_json(jsonl.path / f, schema)
        data += [(f, *row) for row in d]
        rejects += [(f, *row) for row in r]
        n_lines += sum(k.values())
    cols = ["source", "line", "user_id", "item_id", "rating", F.unix_millis("ts").alias("ms"), "verified",
            "helpful_votes"]
    assert_df_equality(got.where("kind = 'data'").select(*cols), spark.createDataFrame(data, JSON_DATA),
                       ignore_row_order=True, ignore_nullable=True)
    assert sorted(tuple(r) for r in got.where("kind = 'reject'").select("source", "line", "reason")
                  .collect()) == sorted(rejects)
    found = {r["reason"]: r["count"] for r in got.where("kind = 'reject'").groupBy("reason").count().collect()}
    assert found == jsonl.planted and set(found) == set(R.AMAZON_JSON_REASONS)
    assert got.count() == n_lines
    assert any(h and h >= 1000 for *_, h in data), "2018 votes with thousands separators are parsed"


def test_json_ingest_keeps_latest_duplicate(spark, jsonl, tmp_path):
    out = tmp_path / "ds"
    res = ingest(spark, CFG, "amazon-json", str(jsonl.path), str(out))
    rows, text = [], {}
    for f in jsonl.files:
        schema = AZ.detect_json_schema(str(jsonl.path / f))
        rows += [(f, n, u, i, r, ms, v, h) for n, u, i, r, ms, v, h in parse_json(jsonl.path / f, schema)[0]]
        text[f] = json_text(jsonl.path / f, schema)
    exp = latest(rows)
    ratings = (spark.read.parquet(str(out / "ratings")).join(spark.read.parquet(str(out / "users")), "user_idx")
               .join(spark.read.parquet(str(out / "items")), "item_idx"))
    got = {(r["user_id"], r["item_id"]): (r["rating"], r["ms"])
           for r in ratings.select("user_id", "item_id", "rating", F.unix_millis("ts").alias("ms")).collect()}
    assert got == {k: (v[4], v[5]) for k, v in exp.items()}
    s = res.stats
    assert s["duplicates_dropped"] == jsonl.duplicates == len(rows) - len(exp)
    assert s["json_schemas"] == {"2014": 1, "2018": 1, "2023": 1}
    assert s["reconcile"]["ratings_reconcile"] and s["reconcile"]["all_files_reconcile"]
    assert s["reconcile"]["lines_rejected"] == sum(jsonl.planted.values())
    # reviews: JSON has no review id (file:line instead); one category, so no per-category figures
    check_reviews(spark, out, s, {k: (v[4], v[6], v[7], f"{v[0]}:{v[1]}", *text[v[0]][v[1]][1:])
                                  for k, v in exp.items()})
    assert "by_category" not in s


def test_wrong_format_fails_fast(spark, tsv, tmp_path):
    from batchml.synth.netflix import write_netflix_dump
    nf = write_netflix_dump(tmp_path / "nf", n_ratings=300, seed=1, n_files=1)
    nf_file = nf.path / nf.files[0]
    d = tmp_path / "tsv"
    d.mkdir()
    (d / "amazon_reviews_us_Books_v1_00.tsv").write_bytes(nf_file.read_bytes())
    with pytest.raises(UserError, match=r"amazon_reviews_us_Books_v1_00\.tsv is not an Amazon reviews TSV file"):
        ingest(spark, build_config({}), "amazon-tsv", str(d), str(tmp_path / "o1"))
    with pytest.raises(UserError, match=r"is not an Amazon review JSON-lines file"):
        AZ.detect_json_schema(str(tsv.path / tsv.files[0]))
    # an Amazon TSV named like a Netflix file, passed as netflix
    n = tmp_path / "asnf"
    n.mkdir()
    (n / "combined_data_1.txt").write_bytes((tsv.path / tsv.files[0]).read_bytes())
    with pytest.raises(UserError, match=r"combined_data_1\.txt is not a Netflix Prize ratings file"):
        ingest(spark, build_config({}), "netflix", str(n), str(tmp_path / "o2"))
    with pytest.raises(UserError, match="no Amazon review TSV files"):
        ingest(spark, build_config({}), "amazon-tsv", str(tmp_path / "nf" / "ground_truth"), str(tmp_path / "o3"))
