"""Netflix raw-format ingest against an independent plain-Python parse of generated files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from batchml.errors import UserError
from batchml.config import build_config
from batchml.ingest import ingest_netflix
from batchml.io.netflix_dump import check_netflix_format, discover_netflix
from batchml.io import netflix as NF
from batchml.io import reasons as R
from batchml.io.text import block_summary, read_lines
from batchml.synth.netflix import write_netflix_dump
from netflix_reference import parse_file, parse_titles, read_text
from spark_helpers import tiny_splits

DATA_SCHEMA = "source string, line long, movie_id int, user_id int, rating int, date date"
REJECT_SCHEMA = "source string, line long, reason string"


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    return write_netflix_dump(tmp_path_factory.mktemp("nf") / "raw", n_ratings=3000, seed=7, plant=2)


def reference(spark, root: Path, files, fields=NF.RATING_FIELDS):
    data, rejects, kinds = [], [], {}
    for rel in files:
        d, r, k = parse_file(root / rel, fields)
        data += [(rel, *row) for row in d]
        rejects += [(rel, *row) for row in r]
        kinds[rel] = k
    return (spark.createDataFrame(data, DATA_SCHEMA), spark.createDataFrame(rejects, REJECT_SCHEMA), kinds)


def spark_parse(spark, root: Path, files, fields=NF.RATING_FIELDS):
    from batchml.io.files import source_name
    parsed = NF.read_netflix_blocks(spark, [str(root / f) for f in files], fields)
    return parsed.withColumn("source", source_name(str(root))).cache()


def test_parse_matches_reference_across_split_boundaries(spark, dump):
    with tiny_splits(spark):
        paths = [str(dump.path / f) for f in dump.files]
        blocks = block_summary(read_lines(spark, paths), mark=NF.header_token(F.col("value")))
        assert len(blocks) > 4 * len(paths), "the test must cut files into many splits"
        # some split starts inside a movie block (its first line is not a header)
        assert any(b.marks and b.marks[0][0] > b.min_seq for b in blocks)
        parsed = spark_parse(spark, dump.path, dump.files)
        exp_data, exp_rej, kinds = reference(spark, dump.path, dump.files)
        got_data = parsed.where("kind = 'data'").select(*exp_data.columns)
        assert_df_equality(got_data, exp_data, ignore_row_order=True, ignore_nullable=True)
        got_rej = parsed.where("kind = 'reject'").select("source", "line", "reason")
        assert_df_equality(got_rej, exp_rej, ignore_row_order=True, ignore_nullable=True)
        counts = {r["source"]: r["n"] for r in parsed.groupBy("source").agg(F.count("*").alias("n")).collect()}
        assert counts == {f: sum(k.values()) for f, k in kinds.items()}


def test_every_reject_reason_is_planted_and_found(spark, dump):
    parsed = spark_parse(spark, dump.path, dump.files)
    found = {r["reason"]: r["count"] for r in parsed.where("kind = 'reject'").groupBy("reason").count().collect()}
    assert set(found) == set(R.NETFLIX_REASONS)
    assert found == dump.planted
    raw = parsed.where(F.col("reason") == R.BAD_HEADER).select("raw").first()["raw"]
    assert raw == "12a:"


def test_missing_trailing_newline_keeps_last_line(spark, dump):
    last = dump.path / dump.files[-1]
    assert not last.read_bytes().endswith(b"\n")
    parsed = spark_parse(spark, dump.path, dump.files[-1:])
    n_lines = last.read_bytes().count(b"\n") + 1
    assert parsed.count() == n_lines
    assert parsed.agg(F.max("line")).first()[0] == n_lines


def test_gzip_and_training_set_layout(spark, tmp_path):
    d = write_netflix_dump(tmp_path / "raw", n_ratings=800, seed=3, layout="training_set", gz=True, plant=1)
    files = discover_netflix(str(d.path))
    assert files.layout == "training_set" and all(f.endswith(".gz") for f in files.ratings)
    assert len(files.ratings) == d.n_items
    check_netflix_format(files.ratings)  # reads the gzip heads without error
    parsed = spark_parse(spark, d.path, d.files)
    exp_data, exp_rej, _ = reference(spark, d.path, d.files)
    assert_df_equality(parsed.where("kind = 'data'").select(*exp_data.columns), exp_data,
                       ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(parsed.where("kind = 'reject'").select("source", "line", "reason"), exp_rej,
                       ignore_row_order=True, ignore_nullable=True)


def test_titles_latin1_commas_and_null_years(spark, dump):
    got = NF.read_movie_titles(spark, str(dump.path / "movie_titles.csv")).where("kind = 'data'")
    exp = parse_titles(dump.path / "movie_titles.csv")
    assert any("," in t for _, t in exp.values()) and any(y is None for y, _ in exp.values())
    assert any(any(ord(ch) > 127 for ch in t) for _, t in exp.values())
    expected = spark.createDataFrame([(m, y, t) for m, (y, t) in exp.items()], "movie_id int, year int, title string")
    assert_df_equality(got.select("movie_id", "year", "title"), expected, ignore_row_order=True,
                       ignore_nullable=True)


def test_probe_and_qualifying_parse(spark, dump):
    probe = spark_parse(spark, dump.path, ["probe.txt"], NF.PROBE_FIELDS)
    exp, rej, _ = reference(spark, dump.path, ["probe.txt"], NF.PROBE_FIELDS)
    assert probe.where("kind = 'data'").count() == exp.count() == dump.truth["n_probe"]
    assert rej.count() == 0
    qual = spark_parse(spark, dump.path, ["qualifying.txt"], NF.QUALIFYING_FIELDS)
    exp_q, _, _ = reference(spark, dump.path, ["qualifying.txt"], NF.QUALIFYING_FIELDS)
    assert_df_equality(qual.where("kind = 'data'").select("source", "line", "movie_id", "user_id", "date"),
                       exp_q.select("source", "line", "movie_id", "user_id", "date"),
                       ignore_row_order=True, ignore_nullable=True)



def _fuzzed_lines(fields, n: int, seed: int) -> list[str]:
    """``n`` data lines of ``fields``, most of them one or two characters away from well-formed
    (spaces, signs, extra digits, separators), under one header."""
    import random
    rng = random.Random(seed)
    good = {"user": lambda: str(rng.randint(1, 10 ** rng.randint(1, 9))),
            "rating": lambda: str(rng.randint(0, 7)),
            "date": lambda: f"{rng.randint(1998, 2006)}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}"}
    noise = list("0123456789 ,-+:.x") + ["  ", "0000000000"]
    lines = ["1:"]
    for _ in range(n):
        line = list(" , ".join(good[f]() for f in fields) if rng.random() < 0.2
                    else ",".join(good[f]() for f in fields))
        for _ in range(rng.choice((0, 0, 1, 2))):
            pos = rng.randrange(len(line) + 1)
            op = rng.random()
            if op < 0.4 and line:
                line[min(pos, len(line) - 1)] = rng.choice(noise)
            elif op < 0.8:
                line.insert(pos, rng.choice(noise))
            elif line:
                del line[min(pos, len(line) - 1)]
        lines.append("".join(line))
    return lines


@pytest.mark.parametrize("fields", [NF.RATING_FIELDS, NF.PROBE_FIELDS, NF.QUALIFYING_FIELDS])
def test_lines_near_the_well_formed_shape_match_reference(spark, tmp_path, fields):
    # the parse checks a whole data line with one regex and each field's own regex only when that
    # fails: both paths must give the reference's verdict, line by line
    path = tmp_path / "combined_data_1.txt"
    path.write_text("\n".join(_fuzzed_lines(fields, 3000, seed=len(fields))) + "\n")
    parsed = spark_parse(spark, tmp_path, [path.name], fields)
    exp_data, exp_rej, kinds = reference(spark, tmp_path, [path.name], fields)
    assert 300 < kinds[path.name]["reject"] < 2700, kinds   # both paths are exercised
    cols = ["source", "line", "movie_id", "user_id"] + [c for c in ("rating", "date") if c in fields]
    assert_df_equality(parsed.where("kind = 'data'").select(*cols), exp_data.select(*cols),
                       ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(parsed.where("kind = 'reject'").select("source", "line", "reason"), exp_rej,
                       ignore_row_order=True, ignore_nullable=True)

def _cfg(**ingest):
    return build_config({"ingest": ingest})


def test_ingest_end_to_end_reconciles(spark, dump, tmp_path):
    out = tmp_path / "ds"
    res = ingest_netflix(spark, _cfg(remove_probe=True), str(dump.path), str(out))
    s = json.loads((out / "_stats.json").read_text())
    exp = {}
    for f in dump.files:
        for (_, movie, user, rating, date) in parse_file(dump.path / f)[0]:
            exp[(str(user), str(movie))] = (float(rating), str(date))
    probe_pairs = set()
    for (_, movie, user, _, _) in parse_file(dump.path / "probe.txt", NF.PROBE_FIELDS)[0]:
        probe_pairs.add((str(user), str(movie)))
    ratings = spark.read.parquet(str(out / "ratings"))
    users = spark.read.parquet(str(out / "users"))
    items = spark.read.parquet(str(out / "items"))
    got = {(r["user_id"], r["item_id"]): (r["rating"], str(r["ts"].date()))
           for r in ratings.join(users, "user_idx").join(items, "item_idx").collect()}
    assert got == {k: v for k, v in exp.items() if k not in probe_pairs}
    assert s["ratings"] == len(exp) - len(probe_pairs)
    assert s["reconcile"]["ratings_reconcile"] and s["reconcile"]["all_files_reconcile"]
    assert s["reconcile"]["probe_pairs_removed"] == len(probe_pairs)
    # dense indices
    assert sorted(r[0] for r in users.select("user_idx").collect()) == list(range(users.count()))
    assert sorted(int(r[0]) for r in items.select("item_id").collect()) == list(range(1, dump.n_items + 1))
    rejects = spark.read.parquet(str(out / "rejects"))
    assert rejects.count() == sum(dump.planted.values())
    probe = spark.read.parquet(str(out / "probe")).join(users, "user_idx").join(items, "item_idx")
    assert {(r["user_id"], r["item_id"]): r["rating"] for r in probe.collect()} == {
        k: exp[k][0] for k in probe_pairs}, "probe pairs keep their ratings from the training files"
    assert s["qualifying"]["pairs"] == dump.truth["n_qualifying"]
    assert not list(tmp_path.glob(".ds.*")), "no temporary siblings left behind"
    assert res.stats["timings_s"]["total"] > 0


def test_too_many_rejects_fails_and_keeps_previous_output(spark, dump, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "marker").write_text("previous good output")
    with pytest.raises(UserError, match=r"max_reject_fraction.*bad date"):
        ingest_netflix(spark, _cfg(max_reject_fraction=0.0), str(dump.path), str(out))
    assert (out / "marker").read_text() == "previous good output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_wrong_format_fails_fast(tmp_path):
    d = tmp_path / "notnetflix"
    d.mkdir()
    (d / "combined_data_1.txt").write_text(
        "marketplace\tcustomer_id\treview_id\nUS\t1\tR1\nUS\t2\tR2\n")
    with pytest.raises(UserError, match=r"combined_data_1\.txt is not a Netflix Prize ratings file"):
        check_netflix_format(discover_netflix(str(d)).ratings)
    with pytest.raises(UserError, match="no Netflix ratings files"):
        discover_netflix(str(tmp_path))


def test_duplicates_keep_latest_and_blank_lines(spark, tmp_path):
    d = tmp_path / "dup"
    d.mkdir()
    (d / "combined_data_1.txt").write_text("1:\n10,3,2005-01-01\n10,5,2005-06-01\n\n11,2,2004-01-01\n")
    (d / "combined_data_2.txt").write_text("1:\n10,1,2005-03-01\n2:\n11,4,2003-03-03")
    out = tmp_path / "ds"
    res = ingest_netflix(spark, _cfg(), str(d), str(out))
    rows = {(r["user_idx"], r["item_idx"]): r["rating"] for r in spark.read.parquet(str(out / "ratings")).collect()}
    assert rows == {(0, 0): 5.0, (1, 0): 2.0, (1, 1): 4.0}
    assert res.stats["duplicates_dropped"] == 2
    assert res.stats["files"]["combined_data_1.txt"]["blank"] == 1
    assert res.stats["reconcile"]["ratings_reconcile"]


def _off_movie_dump(d: Path, n: int = 180) -> Path:
    """Two files: one opening with ``n`` data lines (one blank, one bad) before its first header,
    then a short movie, a bad header over a long block and good movies; one clean file."""
    d.mkdir()
    before = [f"{u},3,2005-01-0{u % 9 + 1}" for u in range(1, n - 1)] + ["", "7,9,2005-01-01"]
    before += ["5:", "1,2,2001-01-01", "2,2,2001-01-02"]
    under_bad = ["12a:"] + [f"{u},4,2004-02-02" for u in range(200, 200 + n)] + ["8,4,2004-13-01", "  "]
    good = ["1:"] + [f"{u},5,2003-03-03" for u in range(400, 400 + n)] + ["2:", "9,x,2003-03-03", "10,2,2003-03-04"]
    (d / "combined_data_1.txt").write_text("\n".join(before + under_bad + good) + "\n")
    (d / "combined_data_2.txt").write_text("3:\n" + "\n".join(f"{u},1,2002-02-02" for u in range(1, 2 * n)) + "\n")
    return d


def test_lines_before_any_header_and_under_a_bad_header_across_splits(spark, tmp_path):
    """Lines before a file's first header and under a bad header (rejects with their text), with
    those blocks cut into several splits."""
    d = _off_movie_dump(tmp_path / "raw")
    files = ["combined_data_1.txt", "combined_data_2.txt"]
    with tiny_splits(spark):
        blocks = block_summary(read_lines(spark, [str(d / files[0])]))
        assert len(blocks) > 4
        done = spark_parse(spark, d, files)
        done.count()   # computed (and cached) under the small splits
    exp_data, exp_rej, kinds = reference(spark, d, files)
    assert_df_equality(done.where("kind = 'data'").select(*exp_data.columns), exp_data,
                       ignore_row_order=True, ignore_nullable=True)
    text = {f: read_text(d / f) for f in files}
    exp_raw = spark.createDataFrame([(r["source"], r["line"], r["reason"], text[r["source"]][r["line"] - 1])
                                     for r in exp_rej.collect()], REJECT_SCHEMA + ", raw string")
    assert_df_equality(done.where("kind = 'reject'").select("source", "line", "reason", "raw"), exp_raw,
                       ignore_row_order=True, ignore_nullable=True)
    assert done.where("kind <> 'reject' and raw is not null").count() == 0
    assert {R.BEFORE_HEADER, R.UNDER_BAD_HEADER, R.BAD_HEADER, R.BAD_RATING} <= {r["reason"] for r in exp_rej.collect()}
    counted = {(r["source"], r["kind"]): r["n"] for r in done.groupBy("source", "kind").agg(F.count("*").alias("n")).collect()}
    assert counted == {(f, k): n for f, ks in kinds.items() for k, n in ks.items() if n}


def test_ingest_with_lines_before_any_header_reconciles(spark, tmp_path):
    d = _off_movie_dump(tmp_path / "raw", n=12)   # a header among the first 20 lines (check_head)
    with tiny_splits(spark, 128):
        res = ingest_netflix(spark, _cfg(max_reject_fraction=0.9), str(d), str(tmp_path / "ds"))
    files = res.stats["files"]
    for f in ("combined_data_1.txt", "combined_data_2.txt"):
        _, rejects, kinds = parse_file(d / f)
        by_reason = {}
        for _, reason in rejects:
            by_reason[reason] = by_reason.get(reason, 0) + 1
        assert (files[f]["headers"], files[f]["accepted"], files[f]["blank"], files[f]["rejected"]) == (
            kinds["header"], kinds["data"], kinds["blank"], kinds["reject"])
        assert files[f]["rejected_by_reason"] == by_reason and files[f]["reconciles"]
    rejects = spark.read.parquet(str(tmp_path / "ds" / "rejects"))
    text = read_text(d / "combined_data_1.txt")
    got = {(r["line"], r["reason"], r["raw"]) for r in rejects.collect()}
    assert got == {(n, reason, text[n - 1]) for n, reason in parse_file(d / "combined_data_1.txt")[1]}
    assert res.stats["reconcile"]["all_files_reconcile"] and res.stats["reconcile"]["ratings_reconcile"]
