"""Building blocks shared by the line-per-record dump readers (Kaggle Netflix CSV, Amazon TSV and
JSON lines, MovieLens): finding the files, the fail-fast format check, classifying lines into
header / data / blank / reject, and the common ingest columns.

Ratings files are read with :func:`batchml.io.text.read_lines` and keep ``block, seq`` instead of a
line number: :func:`batchml.ingest.ingest` numbers the lines after staging (one cheap pass over the
staged Parquet instead of a second pass over the raw text), and :func:`with_lines` does the same for
callers that want line numbers right away.  Small metadata files (titles) are read whole with
:func:`read_small_text`, which also decodes ISO-8859-1.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.errors import InputError
from batchml.io.files import list_files
from batchml.io.text import block_summary, read_lines, truncate_raw, with_line_numbers

LOG = logging.getLogger("batchml.ingest")

KIND_HEADER, KIND_DATA, KIND_BLANK, KIND_REJECT = "header", "data", "blank", "reject"

_GLOB_CHARS = set("*?[")


@dataclass
class InputFiles:
    """Files matched under an input (a directory, a single file or a glob such as ``dir/*.tsv.gz``).

    ``root`` is the directory that output ``source`` names are relative to.
    """

    root: str
    files: list[str]


def resolve_input(path: str, pattern: str) -> InputFiles:
    """Files named by ``path`` whose name fully matches the regex ``pattern``.

    ``path`` may be a directory (its files are searched, not recursively), one file (taken as is),
    or a glob in the last path component (``data/amazon/amazon_reviews_us_*.tsv.gz``).
    """
    base, name = os.path.split(path.rstrip("/"))
    if _GLOB_CHARS & set(name):
        rx = fnmatch.translate(name)
        found = [f for f in list_files(base or ".", pattern=pattern)
                 if re.fullmatch(rx, f.rstrip("/").rsplit("/", 1)[-1])]
        return InputFiles(root=base or ".", files=found)
    if is_file(path):
        return InputFiles(root=path, files=list_files(path, pattern=pattern))
    return InputFiles(root=path, files=list_files(path, pattern=pattern))


def directory_of(root: str) -> str:
    """``root`` itself, or the directory holding it when it is a file (where metadata files sit)."""
    return os.path.dirname(root.rstrip("/")) or "." if is_file(root) else root


def is_file(path: str) -> bool:
    """True when ``path`` names a file (not a directory) on its filesystem."""
    from pyarrow import fs as pafs

    from batchml.io.atomic import _filesystem
    fs, p = _filesystem(path)
    return fs.get_file_info(p).type == pafs.FileType.File


def head(path: str, n: int = 50, nbytes: int = 65536, encoding: str = "utf-8") -> list[str]:
    """The first ``n`` non-blank lines of a plain or gzip file.

    Like :func:`batchml.io.files.head_lines`, but the stream is opened with ``compression=None``:
    pyarrow would otherwise decompress ``.gz`` on its own and the gzip check would see plain text.
    """
    import gzip
    import io

    from batchml.io.atomic import _filesystem
    fs, p = _filesystem(path)
    gz = path.endswith(".gz")
    with fs.open_input_stream(p, compression=None) as raw:
        data = raw.read(1 << 20 if gz else nbytes)
    if gz:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                data = stream.read1(nbytes)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable gzip file ({exc})") from None
    parts = data.decode(encoding, errors="replace").split("\n")
    if len(data) >= nbytes and len(parts) > 1:
        parts = parts[:-1]  # drop a line cut by the read limit
    return [ln.rstrip("\r") for ln in parts if ln.strip()][:n]


def check_head(paths: Sequence[str], *, looks_right: Callable[[list[str]], bool], what: str,
               max_files: int = 32, encoding: str = "utf-8") -> None:
    """Fail fast when a file is not in the declared format at all (not merely a few bad lines).

    ``looks_right`` gets the first non-blank lines of a file; ``what`` describes the expected format
    in the error message, which names the file and quotes its first line.
    """
    step = max(1, len(paths) // max_files)
    for path in list(paths)[::step][:max_files]:
        lines = head(path, encoding=encoding)
        if not lines or not looks_right(lines):
            first = lines[0][:120] if lines else "<empty file>"
            raise InputError(f"{path} is not {what}; its first line is {first!r}")


def mostly(lines: list[str], rx: str, skip_first_if: str | None = None, share: float = 0.8) -> bool:
    """True when at least ``share`` of ``lines`` fully match ``rx`` (the first line may be a header
    matching ``skip_first_if``)."""
    if skip_first_if is not None and lines and re.fullmatch(skip_first_if, lines[0].strip()):
        lines = lines[1:]
    if not lines:
        return True
    return sum(bool(re.fullmatch(rx, x)) for x in lines) >= share * len(lines)


def read_text_lines(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """``value`` (a trailing ``\\r`` removed), ``source``, ``block``, ``seq`` of every line of UTF-8
    text files, plain or gzip (see :func:`batchml.io.text.read_lines`)."""
    return read_lines(spark, paths).withColumn("value", F.regexp_replace("value", "\r$", ""))


def with_lines(df: DataFrame) -> DataFrame:
    """Replace ``block, seq`` by ``line`` (1-based within the file); runs one small job."""
    blocks = block_summary(df.select("source", "block", "seq"))
    return with_line_numbers(df, blocks).drop("block", "seq")


def read_small_text(spark: SparkSession, paths: Sequence[str], encoding: str = "UTF-8") -> DataFrame:
    """Whole small files (titles, a few MB) decoded with ``encoding``, one row per line:
    ``source, line, value`` with exact 1-based line numbers; a final newline ends the last line."""
    raw = spark.read.format("binaryFile").load(list(paths))
    lines = F.split(F.decode(F.col("content"), encoding), "\n", -1)
    return (
        raw.select(F.col("path").alias("source"), lines.alias("lines"))
        .select("source", F.size("lines").alias("n"), F.posexplode("lines").alias("pos", "value"))
        .where((F.col("pos") < F.col("n") - 1) | (F.col("value") != ""))
        .select("source", (F.col("pos") + 1).cast(T.LongType()).alias("line"),
                F.regexp_replace("value", "\r$", "").alias("value"))
    )


def positive_id(token: Column) -> Column:
    """A positive integer id (up to 12 digits) as its canonical string, else null."""
    as_long = F.when(token.rlike(r"^[0-9]{1,12}$"), token.try_cast(T.LongType()))
    return F.when(as_long > 0, as_long.cast(T.StringType()))


def kind_of(reason: Column, is_blank: Column, is_header: Column) -> Column:
    """header / data / blank / reject from a line's reject reason and shape."""
    return (F.when(is_blank, F.lit(KIND_BLANK))
            .when(is_header, F.lit(KIND_HEADER))
            .when(reason.isNotNull(), F.lit(KIND_REJECT))
            .otherwise(F.lit(KIND_DATA)))


def ratings_columns(df: DataFrame, *, user: Column, item: Column, rating: Column, ts: Column,
                    raw_max: int, extra: dict[str, Column] | None = None,
                    position: Sequence[str] = ("block", "seq")) -> DataFrame:
    """The common ingest ratings columns from a frame holding ``value``, ``kind``, ``reason``.

    Returns ``source, <position>, kind, user_id, item_id, rating float, ts, [extra...], reason, raw``;
    data fields are null unless kind is data, ``raw`` is set for rejects only.
    """
    ok = F.col("kind") == KIND_DATA
    extra = extra or {}
    return df.select(
        "source", *position, "kind",
        F.when(ok, user).cast(T.StringType()).alias("user_id"),
        F.when(ok, item).cast(T.StringType()).alias("item_id"),
        F.when(ok, rating).cast(T.FloatType()).alias("rating"),
        F.when(ok, ts).cast(T.TimestampType()).alias("ts"),
        *[F.when(ok, c).alias(name) for name, c in extra.items()],
        "reason",
        F.when(F.col("kind") == KIND_REJECT, truncate_raw(F.col("value"), raw_max)).alias("raw"),
    )


def items_columns(df: DataFrame, *, item: Column, title: Column, year: Column, raw_max: int,
                  reason_name: str) -> DataFrame:
    """The common ingest items columns ``source, line, kind, item_id, title, year, reason, raw``
    from a frame holding ``source, line, value, kind``; rejects get ``reason_name``."""
    ok = F.col("kind") == KIND_DATA
    rej = F.col("kind") == KIND_REJECT
    return df.select(
        "source", "line", "kind",
        F.when(ok, item).cast(T.StringType()).alias("item_id"),
        F.when(ok, title).alias("title"),
        F.when(ok, year).cast(T.IntegerType()).alias("year"),
        F.when(rej, F.lit(reason_name)).alias("reason"),
        F.when(rej, truncate_raw(F.col("value"), raw_max)).alias("raw"),
    )


_TITLE_YEAR = r"\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$"


def year_from_title(title: Column) -> Column:
    """The year of a ``"Title (1995)"`` suffix (also ``(2006-2007)`` series ranges), else null."""
    return F.when(title.rlike(_TITLE_YEAR), F.regexp_extract(title, _TITLE_YEAR, 1).try_cast(T.IntegerType()))


_QUOTED = r'"(?:[^"]|"")*"'


def csv_unquote(token: Column) -> Column:
    """A CSV field as text: surrounding double quotes removed and ``""`` turned into ``"``."""
    quoted = token.rlike(r'^"(?:[^"]|"")*"$')
    return F.when(quoted, F.regexp_replace(F.regexp_extract(token, r'^"(.*)"$', 1), '""', '"')).otherwise(token)


QUOTED_OR_PLAIN = rf"({_QUOTED}|[^\",]*)"


def parse_numeric_ratings(lines_df: DataFrame, *, sep: str, fields: Sequence[str], header: str | None,
                          half_stars: bool = False, raw_max: int = 300) -> DataFrame:
    """Classify and parse ``user, item, rating[, ts]`` lines with numeric ids (Kaggle Netflix CSV,
    MovieLens ``u.data`` / ``ratings.dat`` / ``ratings.csv``).

    Parameters
    ----------
    lines_df : DataFrame
        ``value, source, block, seq`` from :func:`read_text_lines`.
    sep : str
        Field separator as a Java regex (``"\\t"``, ``"::"``, ``","``).
    fields : sequence of str
        Field names in file order, from ``user``, ``item``, ``rating``, ``ts`` (unix seconds).
    header : str or None
        The exact header line, if the format has one.
    half_stars : bool
        Ratings 0.5..5 in steps of 0.5 (MovieLens CSV) instead of integers 1..5.

    Returns
    -------
    DataFrame
        The common ratings columns (see :func:`ratings_columns`); reasons in checking order: wrong
        field count, bad user id, bad item id, bad rating, rating out of range, bad date.
    """
    from batchml.io import reasons as R
    # one projection per step: split once, each token once (see batchml.io.amazon.parse_amazon_tsv)
    base = [c for c in lines_df.columns]
    split = lines_df.select(*base, F.split(F.col("value"), sep, -1).alias("_f"))
    pos = {name: i for i, name in enumerate(fields)}
    tokens = split.select(*base, F.size("_f").alias("_n"),
                          *[F.trim(F.get(F.col("_f"), i)).alias(f"_{name}") for name, i in pos.items()])
    rtok = F.col("_rating")
    if half_stars:
        rating = F.when(rtok.rlike(r"^[0-9]{1,3}(\.[0-9]{1,6})?$"), rtok.try_cast(T.DoubleType()))
    else:
        rating = F.when(rtok.rlike(r"^[0-9]{1,3}$"), rtok.try_cast(T.IntegerType()))
    ts = F.lit(None).cast(T.TimestampType())
    if "ts" in pos:
        ttok = F.col("_ts")
        ts = F.when(ttok.rlike(r"^[0-9]{1,12}$"), F.timestamp_seconds(ttok.try_cast(T.LongType())))
    v = F.col("value")
    values = tokens.select(
        *base, "_n", positive_id(F.col("_user")).alias("_u"), positive_id(F.col("_item")).alias("_i"),
        rating.alias("_r"), ts.alias("_t"), (F.trim(v) == "").alias("_blank"),
        (F.lit(False) if header is None else (F.trim(v) == F.lit(header))).alias("_header"))
    user, item, rating, ts = F.col("_u"), F.col("_i"), F.col("_r"), F.col("_t")
    is_blank, is_header = F.col("_blank"), F.col("_header")
    off_scale = ((rating * 2) != F.floor(rating * 2)) if half_stars else F.lit(False)
    low, high = (0.5, 5.0) if half_stars else (1, 5)
    reason = (
        F.when(is_blank | is_header, F.lit(None))
        .when(F.col("_n") != len(fields), F.lit(R.WRONG_FIELD_COUNT))
        .when(user.isNull(), F.lit(R.BAD_USER_ID))
        .when(item.isNull(), F.lit(R.BAD_ITEM_ID))
        .when(rating.isNull() | off_scale, F.lit(R.BAD_RATING))
        .when((rating < low) | (rating > high), F.lit(R.RATING_OUT_OF_RANGE))
    )
    if "ts" in pos:
        reason = reason.when(ts.isNull(), F.lit(R.BAD_DATE))
    staged = values.withColumn("reason", reason).withColumn("kind", kind_of(F.col("reason"), is_blank, is_header))
    return ratings_columns(staged, user=user, item=item, rating=rating, ts=ts, raw_max=raw_max)


def parse_title_lines(lines_df: DataFrame, *, line_rx: str, groups: dict[str, int], header: str | None,
                      unquote: bool = False, year: str = "title", raw_max: int = 300) -> DataFrame:
    """Classify and parse title lines (``source, line, value``) with the regex ``line_rx``.

    ``groups`` maps ``item``, ``title`` and optionally ``year`` to regex group numbers.  ``year``:
    ``"title"`` parses it from a ``(1995)`` title suffix, ``"field"`` from its own group (``NULL`` or
    empty: null).  A line that does not match, or has a bad id, is a ``bad title line`` reject.
    """
    from batchml.io import reasons as R
    v = F.col("value")
    ok = v.rlike(line_rx)
    item = positive_id(F.regexp_extract(v, line_rx, groups["item"]))
    title = F.regexp_extract(v, line_rx, groups["title"])
    if unquote:
        title = csv_unquote(title)
    if year == "field":
        ytok = F.regexp_extract(v, line_rx, groups["year"])
        year_col = F.when(ytok.rlike(r"^[0-9]{4}$"), ytok.try_cast(T.IntegerType()))
    else:
        year_col = year_from_title(title)
    is_blank = F.trim(v) == ""
    is_header = F.lit(False) if header is None else (F.trim(v) == F.lit(header))
    reason = F.when(is_blank | is_header, F.lit(None)).when(~ok | item.isNull(), F.lit(R.BAD_TITLE_LINE))
    staged = lines_df.withColumn("kind", kind_of(reason, is_blank, is_header))
    return items_columns(staged, item=item, title=title, year=year_col, raw_max=raw_max,
                         reason_name=R.BAD_TITLE_LINE)
