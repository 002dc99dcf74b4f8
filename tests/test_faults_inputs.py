"""Fault suite, bad inputs: a corpus of hostile files per dump format.

Every run either succeeds with every line accounted for (lines read = headers + accepted + blank +
rejected, each reject with its reason and exact line number) or fails with one clear
:class:`~batchml.errors.UserError`; the few subprocess cases show the job's one ``error:`` line on
stderr and no stack trace.

One "messy" file per format packs the line-level faults (a UTF-8 byte order mark, CRLF line ends,
blank lines, a 200,000-character line, non-ASCII digits, an overflowing or impossible date) between
plain good lines; the file-level faults (empty, UTF-16, truncated or corrupt gzip, hidden names, no
matching file) are each their own case.
"""
from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from batchml.config import build_config
from batchml.errors import InputError
from batchml.ingest import ingest
from batchml.io import reasons as R
from test_user_errors import assert_one_error_line, job, run

pytestmark = pytest.mark.fault

CFG = build_config({"ingest": {"max_reject_fraction": 0.5}})
HUGE = "x" * 200_000
HEADER, DATA, BLANK = "header", "data", "blank"
TSV_HEADER = "\t".join(["marketplace", "customer_id", "review_id", "product_id", "product_parent",
                        "product_title", "product_category", "star_rating", "helpful_votes",
                        "total_votes", "vine", "verified_purchase", "review_headline", "review_body",
                        "review_date"])


@dataclass
class Messy:
    """A file of ``(text, kind or reject reason)`` lines and the format reading it."""

    fmt: str
    name: str
    lines: list[tuple[str, str]]
    extra: dict[str, bytes] | None = None   # other files of the dump (titles)
    extra_rejects: tuple = ()               # (file, line, reason) expected from ``extra``

    def write(self, root: Path) -> None:
        root.mkdir(parents=True)
        text = "\r\n".join(t for t, _ in self.lines) + "\r\n"
        (root / self.name).write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
        for name, data in (self.extra or {}).items():
            (root / name).write_bytes(data)

    def count(self, kind: str) -> int:
        return sum(k == kind for _, k in self.lines)

    def rejects(self) -> set:
        own = {(self.name, n, k) for n, (_, k) in enumerate(self.lines, start=1)
               if k not in (HEADER, DATA, BLANK)}
        return own | set(self.extra_rejects)


def _netflix() -> Messy:
    good = [("1:", HEADER)] + [(f"{u},3,2005-01-01", DATA) for u in range(100, 130)]
    mess = [("", BLANK), ("", BLANK), ("12,9,2005-01-03", R.RATING_OUT_OF_RANGE),
            ("\uff11\uff12:", R.BAD_HEADER), ("13,3,2005-01-01", R.UNDER_BAD_HEADER),
            ("2:", HEADER), ("\uff113,3,2005-01-01", R.BAD_USER_ID), (HUGE, R.WRONG_FIELD_COUNT),
            ("14,2,2005-02-30", R.BAD_DATE), ("\u00b2:", R.BAD_HEADER), ("15,1,2005-01-01", R.UNDER_BAD_HEADER),
            ("3:", HEADER), ("10,5,2005-03-01", DATA)]
    titles = "1,2001,One\n\n\nnot a title line\n2,NULL,Two, with a comma\n3,1999,Three\n"
    return Messy("netflix", "combined_data_1.txt", good + mess,
                 extra={"movie_titles.csv": titles.encode("latin-1")},
                 extra_rejects={("movie_titles.csv", 4, R.BAD_TITLE_LINE)})


def _netflix_csv() -> Messy:
    good = [("User_ID,Rating,Movie_ID", HEADER)] + [(f"{u},4,{1 + u % 3}", DATA) for u in range(100, 130)]
    mess = [("", BLANK), ("12,9,1", R.RATING_OUT_OF_RANGE), ("\uff112,3,1", R.BAD_USER_ID),
            ("12,3,\u00b2", R.BAD_ITEM_ID), (HUGE, R.WRONG_FIELD_COUNT), ("", BLANK), ("13,5,2", DATA)]
    return Messy("netflix-csv", "Netflix_Dataset_Rating.csv", good + mess)


def _tsv_row(user: str, item: str = "B1", rating: str = "5", date: str = "2015-01-01") -> str:
    return "\t".join(["US", user, f"R{user}", item, "1", "A title", "Books", rating, "0", "0", "N", "Y",
                      "h", "b", date])


def _amazon_tsv() -> Messy:
    good = [(TSV_HEADER, HEADER)] + [(_tsv_row(str(u), f"B{u % 3}"), DATA) for u in range(100, 130)]
    mess = [("", BLANK), (_tsv_row("\uff11\uff12"), R.BAD_USER_ID), (_tsv_row("12", rating="9"), R.RATING_OUT_OF_RANGE),
            (HUGE, R.WRONG_FIELD_COUNT), (_tsv_row("13", date="2015-02-30"), R.BAD_DATE),
            (_tsv_row("14", date="\uff12015-01-01"), R.BAD_DATE), ("", BLANK), (_tsv_row("15"), DATA)]
    return Messy("amazon-tsv", "reviews.tsv", good + mess)


def _review(user: str, t, item: str = "A1") -> str:
    return json.dumps({"reviewerID": user, "asin": item, "overall": 4.0, "unixReviewTime": t})


def _amazon_json() -> Messy:
    good = [(_review(f"u{u}", 1_400_000_000 + u, f"A{u % 3}"), DATA) for u in range(100, 130)]
    mess = [("", BLANK), (_review("u1", 99_999_999_999_999), R.BAD_DATE),
            (_review("u2", 9_999_999_999_999_999), R.BAD_DATE), (_review("u3", "\uff11\uff14"), R.BAD_DATE),
            (HUGE, R.NOT_JSON), ("", BLANK), (_review("u4", 1_400_000_000), DATA)]
    return Messy("amazon-json", "reviews.json", good + mess)


def _movielens() -> Messy:
    good = [("userId,movieId,rating,timestamp", HEADER)] + [
        (f"{u},{1 + u % 3},3.5,{1_000_000_000 + u}", DATA) for u in range(100, 130)]
    mess = [("", BLANK), ("12,1,4.0,99999999999999", R.BAD_DATE), ("13,1,4.0,999999999999", R.BAD_DATE),
            ("\uff11\uff14,1,4.0,1000000000", R.BAD_USER_ID), (HUGE, R.WRONG_FIELD_COUNT),
            ("", BLANK), ("15,2,5.0,1000000000", DATA)]
    movies = "\ufeffmovieId,title,genres\r\n1,One (1995),Drama\r\n\r\n\r\n2,broken\r\n3,Three (2001),Comedy\r\n"
    return Messy("movielens", "ratings.csv", good + mess, extra={"movies.csv": movies.encode("utf-8")},
                 extra_rejects={("movies.csv", 5, R.BAD_TITLE_LINE)})


MESSY = {"netflix": _netflix, "netflix-csv": _netflix_csv, "amazon-tsv": _amazon_tsv,
         "amazon-json": _amazon_json, "movielens": _movielens}


@pytest.mark.parametrize("fmt", list(MESSY))
def test_messy_lines_are_each_accounted_for(spark, tmp_path, fmt):
    messy = MESSY[fmt]()
    messy.write(tmp_path / "raw")
    result = ingest(spark, CFG, fmt, str(tmp_path / "raw"), str(tmp_path / "ds"))
    counts = result.stats["files"][messy.name]
    assert counts["lines"] == len(messy.lines)
    assert (counts["headers"], counts["accepted"], counts["blank"]) == (
        messy.count(HEADER), messy.count(DATA), messy.count(BLANK))
    assert counts["rejected"] == len(messy.lines) - messy.count(HEADER) - messy.count(DATA) - messy.count(BLANK)
    assert all(c["reconciles"] for c in result.stats["files"].values())
    rejects = spark.read.parquet(str(tmp_path / "ds" / "rejects"))
    assert {(r["source"], r["line"], r["reason"]) for r in rejects.collect()} == messy.rejects()
    assert rejects.agg(F.max(F.length("raw"))).first()[0] <= CFG.ingest.raw_max_chars
    assert result.stats["ratings"] == messy.count(DATA)


# ------------------------------------------------------------------------------- file-level faults
def _gz(text: str) -> bytes:
    return gzip.compress(text.encode())


NETFLIX = "1:\n" + "".join(f"{u},3,2005-01-01\n" for u in range(100, 160))
ML = "userId,movieId,rating,timestamp\n" + "".join(f"{u},1,4.0,1000000000\n" for u in range(100, 160))
JSONL = "".join(_review(f"u{u}", 1_400_000_000) + "\n" for u in range(100, 160))


def _corrupt(data: bytes) -> bytes:
    return data[:40] + bytes(range(256)) * 4 + data[40:]


FILE_FAULTS = [
    # (id, format, files, the error message contains)
    ("empty-netflix", "netflix", {"combined_data_1.txt": b""}, "is empty"),
    ("empty-json", "amazon-json", {"r.json": b""}, "is empty"),
    ("empty-movielens", "movielens", {"ratings.csv": b"\n\n"}, "is empty"),
    ("utf16-netflix", "netflix", {"combined_data_1.txt": NETFLIX.encode("utf-16")}, "is not a Netflix"),
    ("utf16-tsv", "amazon-tsv", {"r.tsv": (TSV_HEADER + "\n" + _tsv_row("1") + "\n").encode("utf-16")},
     "is not an Amazon reviews TSV"),
    ("truncated-gzip-netflix", "netflix", {"combined_data_1.txt.gz": _gz(NETFLIX)[: len(_gz(NETFLIX)) // 2]}, "not a readable gzip"),
    ("truncated-gzip-movielens", "movielens", {"ratings.csv.gz": _gz(ML)[:-30]}, "not a readable gzip"),
    ("corrupt-gzip-json", "amazon-json", {"r.json.gz": _corrupt(_gz(JSONL))}, "not a readable gzip"),
    ("not-gzip", "netflix-csv", {"Netflix_Dataset_Rating.csv.gz": b"User_ID,Rating,Movie_ID\n1,2,3\n"},
     "not a readable gzip"),
    ("hidden-underscore-tsv", "amazon-tsv", {"a.tsv": (TSV_HEADER + "\n" + _tsv_row("1") + "\n").encode(),
                                             "_b.tsv": (TSV_HEADER + "\n" + _tsv_row("2") + "\n").encode()},
     "_b.tsv: Spark does not read"),
    ("hidden-dot-json", "amazon-json", {"a.json": JSONL.encode(), ".b.json": JSONL.encode()}, ".b.json"),
    ("hidden-netflix", "netflix", {"combined_data_1.txt": NETFLIX.encode(), "_combined_data_2.txt": NETFLIX.encode()},
     "_combined_data_2.txt: Spark does not read"),
    ("hidden-movielens", "movielens", {".ratings.csv": ML.encode()}, ".ratings.csv: Spark does not read"),
    ("hidden-titles", "netflix", {"combined_data_1.txt": NETFLIX.encode(), "_movie_titles.csv": b"1,2000,A\n"},
     "_movie_titles.csv"),
    ("no-match-netflix", "netflix", {"readme.txt": b"hello"}, "has no Netflix ratings files"),
    ("no-match-netflix-csv", "netflix-csv", {"ratings.csv": b"1,2,3\n"}, "has no Kaggle Netflix ratings file"),
    ("no-match-tsv", "amazon-tsv", {"r.csv": b"a,b\n"}, "has no Amazon review TSV files"),
    ("no-match-json", "amazon-json", {"r.txt": b"{}\n"}, "has no Amazon review JSON-lines files"),
    ("no-match-movielens", "movielens", {"ratings.txt": ML.encode()}, "has no MovieLens ratings file"),
]


@pytest.mark.parametrize("fmt, files, needle", [c[1:] for c in FILE_FAULTS], ids=[c[0] for c in FILE_FAULTS])
def test_file_level_faults_are_one_input_error(spark, tmp_path, fmt, files, needle):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, data in files.items():
        (raw / name).write_bytes(data)
    with pytest.raises(InputError, match=None) as err:
        ingest(spark, CFG, fmt, str(raw), str(tmp_path / "ds"))
    assert needle in str(err.value)
    assert not (tmp_path / "ds").exists()


def _long_netflix_gzip(path: Path) -> bytes:
    """A Netflix file whose gzip is well over the 1 MiB the format check reads (random ids barely
    compress), cut at two thirds: only Spark's scan reaches the cut."""
    rng = random.Random(3)
    text = "".join(f"{m}:\n" + "".join(f"{rng.randrange(1, 2_000_000)},{rng.randrange(1, 6)},"
                                       f"2005-0{rng.randrange(1, 10)}-1{rng.randrange(10)}\n" for _ in range(1000))
                   for m in range(1, 301))
    data = gzip.compress(text.encode())
    assert len(data) > 1.5 * (1 << 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) * 2 // 3])
    return data


def test_gzip_truncated_past_the_checked_head_is_one_input_error(spark, tmp_path):
    _long_netflix_gzip(tmp_path / "raw" / "combined_data_1.txt.gz")
    with pytest.raises(InputError) as err:
        ingest(spark, CFG, "netflix", str(tmp_path / "raw"), str(tmp_path / "ds"))
    assert "cannot read input file" in str(err.value) and "combined_data_1.txt.gz" in str(err.value)
    assert "EOFException" in str(err.value)


# ------------------------------------------------------------------------ as the user sees them
@pytest.mark.slow
@pytest.mark.parametrize("case", ["truncated-gzip", "hidden", "bom-check"])
def test_bad_input_is_one_error_line_on_stderr(tmp_path, case):
    raw = tmp_path / "raw"
    if case == "truncated-gzip":
        _long_netflix_gzip(raw / "combined_data_1.txt.gz")
        fmt, needle, code = "netflix", "cannot read input file", 1
    elif case == "hidden":
        raw.mkdir()
        (raw / "_ratings.csv").write_text(ML)
        fmt, needle, code = "movielens", "Spark does not read", 1
    else:  # a BOM alone is fine; a UTF-16 file (BOM FF FE) is not a Netflix file
        raw.mkdir()
        (raw / "combined_data_1.txt").write_bytes(NETFLIX.encode("utf-16"))
        fmt, needle, code = "netflix", "is not a Netflix Prize ratings file", 1
    proc = run(job("ingest", "--format", fmt, "--input", str(raw), "--output", str(tmp_path / "ds")))
    assert_one_error_line(proc, code, needle)
    assert not (tmp_path / "ds").exists()
