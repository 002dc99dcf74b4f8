"""Parsing line-per-record dumps (Kaggle Netflix CSV, Amazon TSV and JSON lines, MovieLens) into the
common ingest columns: classifying lines into header / data / blank / reject, numeric ratings lines,
title lines.

Ratings files are read with :func:`batchml.io.text.read_lines` and keep ``block, seq`` instead of a
line number: :func:`batchml.ingest.ingest` numbers the lines after staging (one cheap pass over the
staged Parquet instead of a second pass over the raw text), and :func:`batchml.io.text.with_lines`
does the same for callers that want line numbers right away.  Small metadata files (titles) are read whole with
:func:`batchml.io.text.read_small_text`, which also decodes ISO-8859-1.
"""
from __future__ import annotations

from typing import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.io import reasons as R
from batchml.io.parsed import KIND_BLANK, KIND_DATA, KIND_HEADER, KIND_REJECT
from batchml.io.text import read_lines, truncate_raw


def read_text_lines(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """``value`` (a trailing ``\\r`` removed), ``source``, ``block``, ``seq`` of every line of UTF-8
    text files, plain or gzip (see :func:`batchml.io.text.read_lines`)."""
    return read_lines(spark, paths).withColumn("value", F.regexp_replace("value", "\r$", ""))


def positive_id(token: Column) -> Column:
    """A positive integer id (up to 12 digits) as a long, else null (the ids of the numeric formats
    stay numbers through the ingest: see :class:`batchml.io.parsed.ParsedDump`)."""
    as_long = F.when(token.rlike(r"^[0-9]{1,12}$"), token.try_cast(T.LongType()))
    return F.when(as_long > 0, as_long)


#: the shape of a ``YYYY-MM-DD`` token (unanchored: a reader may match it inside a whole-line regex)
ISO_DATE_SHAPE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_ISO_DATE = f"^{ISO_DATE_SHAPE}$"


def iso_date(token: Column, shaped: Column | None = None) -> Column:
    """A ``YYYY-MM-DD`` token as a date, null unless it has exactly that shape and is a real date.
    The shape is checked by a regex, the calendar by a cast: the same results as ``try_to_date``
    with a ``yyyy-MM-dd`` pattern on every shape-checked token, at about a quarter of its cost per
    line (measured on 1M Netflix lines: +0.24 s against +0.93 s over splitting the line).
    ``shaped``: a condition known to imply the shape (e.g. a whole-line regex), which spares the
    token's own regex where true."""
    return F.when(or_matches(shaped, token, _ISO_DATE), token.try_cast(T.DateType()))


def or_matches(shaped: Column | None, token: Column, regex: str) -> Column:
    """``shaped OR token RLIKE regex``: the regex runs only where ``shaped`` is not true."""
    return token.rlike(regex) if shaped is None else shaped | token.rlike(regex)


#: the last second a timestamp column holds a 4-digit year (9999-12-31T23:59:59Z)
MAX_UNIX_SECONDS = 253_402_300_799


def unix_time(token: Column, *, millis: bool = False) -> Column:
    """A timestamp from a token of unix seconds (or milliseconds), else null: up to 16 ASCII
    digits, at most :data:`MAX_UNIX_SECONDS`.  Bounding the value first keeps Spark from failing
    the whole job with ``DATETIME_OVERFLOW`` on one absurd line: it becomes a ``bad date`` reject."""
    limit = MAX_UNIX_SECONDS * 1000 + 999 if millis else MAX_UNIX_SECONDS
    value = F.when(token.rlike(r"^[0-9]{1,16}$"), token.try_cast(T.LongType()))
    value = F.when(value <= F.lit(limit), value)
    return F.timestamp_millis(value) if millis else F.timestamp_seconds(value)


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

    Returns ``source, <position>, kind, user_id, item_id (as ``user``, ``item`` give them), rating
    float, ts, [extra...], reason, raw``;
    data fields are null unless kind is data, ``raw`` is set for rejects only.
    """
    ok = F.col("kind") == KIND_DATA
    extra = extra or {}
    return df.select(
        "source", *position, "kind",
        F.when(ok, user).alias("user_id"),
        F.when(ok, item).alias("item_id"),
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
        F.when(ok, item).alias("item_id"),
        F.when(ok, title).alias("title"),
        F.when(ok, year).cast(T.IntegerType()).alias("year"),
        F.when(rej, F.lit(reason_name)).alias("reason"),
        F.when(rej, truncate_raw(F.col("value"), raw_max)).alias("raw"),
    )


_TITLE_YEAR = r"\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$"


def year_from_title(title: Column) -> Column:
    """The year of a ``"Title (1995)"`` suffix (also ``(2006-2007)`` series ranges), else null."""
    return F.when(title.rlike(_TITLE_YEAR), F.regexp_extract(title, _TITLE_YEAR, 1).try_cast(T.IntegerType()))


def csv_unquote(token: Column) -> Column:
    """A CSV field as text: surrounding double quotes removed and ``""`` turned into ``"``."""
    quoted = token.rlike(r'^"(?:[^"]|"")*"$')
    return F.when(quoted, F.regexp_replace(F.regexp_extract(token, r'^"(.*)"$', 1), '""', '"')).otherwise(token)


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
    values = _numeric_values(lines_df, sep=sep, fields=fields, header=header, half_stars=half_stars)
    reason = _numeric_reason(n_fields=len(fields), has_ts="ts" in fields, half_stars=half_stars)
    is_blank, is_header = F.col("_blank"), F.col("_header")
    staged = values.withColumn("reason", reason).withColumn("kind", kind_of(F.col("reason"), is_blank, is_header))
    return ratings_columns(staged, user=F.col("_u"), item=F.col("_i"), rating=F.col("_r"), ts=F.col("_t"),
                           raw_max=raw_max)


def _numeric_values(lines_df: DataFrame, *, sep: str, fields: Sequence[str], header: str | None,
                    half_stars: bool) -> DataFrame:
    """``lines_df`` plus the typed fields of :func:`parse_numeric_ratings`: ``_n`` (field count),
    ``_u``, ``_i`` (ids or null), ``_r`` (rating or null), ``_t`` (timestamp or null), ``_blank``,
    ``_header``."""
    # one projection per step: split once, each token once (see batchml.io.amazon.parse_amazon_tsv)
    base = list(lines_df.columns)
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
        ts = unix_time(F.col("_ts"))
    v = F.col("value")
    return tokens.select(
        *base, "_n", positive_id(F.col("_user")).alias("_u"), positive_id(F.col("_item")).alias("_i"),
        rating.alias("_r"), ts.alias("_t"), (F.trim(v) == "").alias("_blank"),
        (F.lit(False) if header is None else (F.trim(v) == F.lit(header))).alias("_header"))


def _numeric_reason(*, n_fields: int, has_ts: bool, half_stars: bool) -> Column:
    """The reject reason of a line of :func:`_numeric_values` (null: not a reject), in checking order."""
    user, item, rating, ts = F.col("_u"), F.col("_i"), F.col("_r"), F.col("_t")
    off_scale = ((rating * 2) != F.floor(rating * 2)) if half_stars else F.lit(False)
    low, high = (0.5, 5.0) if half_stars else (1, 5)
    reason = (
        F.when(F.col("_blank") | F.col("_header"), F.lit(None))
        .when(F.col("_n") != n_fields, F.lit(R.WRONG_FIELD_COUNT))
        .when(user.isNull(), F.lit(R.BAD_USER_ID))
        .when(item.isNull(), F.lit(R.BAD_ITEM_ID))
        .when(rating.isNull() | off_scale, F.lit(R.BAD_RATING))
        .when((rating < low) | (rating > high), F.lit(R.RATING_OUT_OF_RANGE))
    )
    if has_ts:
        reason = reason.when(ts.isNull(), F.lit(R.BAD_DATE))
    return reason


def parse_title_lines(lines_df: DataFrame, *, line_rx: str, groups: dict[str, int], header: str | None,
                      unquote: bool = False, year: str = "title", raw_max: int = 300) -> DataFrame:
    """Classify and parse title lines (``source, line, value``) with the regex ``line_rx``.

    ``groups`` maps ``item``, ``title`` and optionally ``year`` to regex group numbers.  ``year``:
    ``"title"`` parses it from a ``(1995)`` title suffix, ``"field"`` from its own group (``NULL`` or
    empty: null).  A line that does not match, or has a bad id, is a ``bad title line`` reject.
    """
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
