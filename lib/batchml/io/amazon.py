"""Readers for Amazon review dumps: the Customer Reviews TSV files and McAuley's JSON lines.

TSV (``amazon_reviews_us_<Category>_v1_00.tsv[.gz]``, many category files per run): a header line,
15 tab-separated fields, **no quoting or escaping** -- a ``"`` is literal text -- so lines are read with
``spark.read.text`` and split on tabs, never with the CSV quote machinery.

JSON lines (gzip or plain), one review per line, in one of three schemas detected per file from its
first lines:

=======  ===============  =================  ==========  ====================  =================================
schema   user             item               rating      time                  helpful / verified
=======  ===============  =================  ==========  ====================  =================================
2014     ``reviewerID``   ``asin``           ``overall`` ``unixReviewTime`` s  ``helpful[0]`` / --
2018     ``reviewerID``   ``asin``           ``overall`` ``unixReviewTime`` s  ``vote`` ("1,234"; absent: 0) /
                                                                                ``verified``
2023     ``user_id``      ``parent_asin``    ``rating``  ``timestamp`` ms      ``helpful_vote`` /
                                                                                ``verified_purchase``
=======  ===============  =================  ==========  ====================  =================================

Lines are parsed with ``try_parse_json`` + ``try_variant_get`` (Spark built-ins).  A line that is not
a JSON object is ``not JSON``; one lacking (or with null / empty) user, item, rating or time is
``missing key field``.

Both readers also give each review's text for the ``reviews`` table (:data:`batchml.schema.REVIEW_TEXT_COLS`):
``review_id`` (TSV ``review_id``; JSON has none: the ingest names it ``file:line``), ``total_votes``
(TSV ``total_votes``, 2014 ``helpful[1]``), ``category`` (TSV ``product_category``; JSON: from the
file name, ``reviews_Musical_Instruments_5.json.gz`` -> ``Musical Instruments``), ``summary`` (TSV
``review_headline``, 2014/2018 ``summary``, 2023 ``title``) and ``body`` (TSV ``review_body``,
2014/2018 ``reviewText``, 2023 ``text``).  Text is decoded by :func:`review_text` (``<br />`` to a
newline, HTML entities such as ``&#34;`` and ``&amp;`` to characters) and otherwise kept as is, in
any language.
"""
from __future__ import annotations

import json
import logging
from typing import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml import schema as S
from batchml.errors import InputError
from batchml.io import delimited as D
from batchml.io import reasons as R
from batchml.io.files import resolve_input
from batchml.io.parsed import ParsedDump
from batchml.io.peek import check_head, head_lines, mostly

LOG = logging.getLogger("batchml.ingest")

TSV_COLUMNS = ("marketplace", "customer_id", "review_id", "product_id", "product_parent", "product_title",
               "product_category", "star_rating", "helpful_votes", "total_votes", "vine",
               "verified_purchase", "review_headline", "review_body", "review_date")
TSV_FILE = r".*\.tsv(\.gz)?"
JSON_FILE = r".*\.(json|jsonl)(\.gz)?"

_USER_ID = r"^[0-9]{1,20}$"
_ITEM_ID = r"^[0-9A-Za-z]{1,32}$"
_COUNT = r"^[0-9]{1,9}$"


_BR = r"(?i)<br\s*/?>"
_NUMERIC_ENTITY = r"^(?:([0-9]{1,7})|[xX]([0-9a-fA-F]{1,6}));"
#: the named entities decoded (those HTML escaping writes, and the non-breaking space); ``&amp;`` last
NAMED_ENTITIES = (("&quot;", '"'), ("&apos;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&nbsp;", "\u00a0"),
                  ("&amp;", "&"))


# ------------------------------------------------------------------------------------- review text
def _numeric_entities(text: Column) -> Column:
    """``&#NNN;`` and ``&#xHH;`` of a valid code point (not 0, not a surrogate) decoded, with Spark
    built-ins only: split on ``&#``, decode the code point that starts each piece (as UTF-32), join."""
    parts = F.split(text, "&#", -1)

    def piece(p: Column) -> Column:
        dec, hexa = F.regexp_extract(p, _NUMERIC_ENTITY, 1), F.regexp_extract(p, _NUMERIC_ENTITY, 2)
        cp = F.when(dec != "", dec.cast(T.LongType())).when(hexa != "", F.conv(hexa, 16, 10).cast(T.LongType()))
        valid = cp.between(1, 0x10FFFF) & ~cp.between(0xD800, 0xDFFF)
        char = F.decode(F.unhex(F.lpad(F.hex(cp), 8, "0")), "UTF-32")
        return F.when(valid, F.concat(char, F.regexp_replace(p, _NUMERIC_ENTITY, ""))).otherwise(
            F.concat(F.lit("&#"), p))

    return F.concat(F.get(parts, 0), F.array_join(F.transform(F.slice(parts, 2, F.size(parts)), piece), ""))


def review_text(text: Column) -> Column:
    """A review's text decoded with Spark built-ins: ``<br />`` (any case, with or without the
    slash) becomes a newline, numeric entities (``&#34;``, ``&#x27;``) their characters, then the
    :data:`NAMED_ENTITIES` (``&amp;`` last, so ``&amp;quot;`` stays ``&quot;``); other named
    entities and everything else, non-ASCII letters included, are kept as they are."""
    out = _numeric_entities(F.regexp_replace(text, _BR, "\n"))
    for entity, char in NAMED_ENTITIES:
        out = F.replace(out, F.lit(entity), F.lit(char))
    return out


def _blank_to_null(token: Column) -> Column:
    return F.when(F.trim(token) != "", F.trim(token))


# ---------------------------------------------------------------------------------------------- TSV
def check_amazon_tsv_format(paths: Sequence[str]) -> None:
    """Fail fast unless each file has the 15-column tab-separated review layout."""
    def looks_right(lines: list[str]) -> bool:
        return mostly(lines, r"[^\t]*(\t[^\t]*){14}", skip_first_if=r"marketplace\tcustomer_id\t.*")

    check_head(paths, looks_right=looks_right,
               what="an Amazon reviews TSV file (expected the header 'marketplace<TAB>customer_id<TAB>"
                    "review_id<TAB>...' and 15 tab-separated fields per line)")


def parse_amazon_tsv(lines_df: DataFrame, raw_max: int = 300) -> DataFrame:
    """Classify and parse Amazon review TSV lines (``value, source, block, seq``).

    Returns
    -------
    DataFrame
        ``source, block, seq, kind, user_id, item_id, rating, ts, verified, helpful_votes, title,
        review_id, total_votes, category, summary, body, reason, raw``.  Reasons in checking order:
        wrong field count, bad user id (``customer_id`` not digits), bad item id (``product_id`` not
        alphanumeric), bad rating, rating out of range (1..5),
        bad vote count (``helpful_votes`` / ``total_votes``), bad verified flag (not Y/N), bad date
        (``review_date`` not a valid yyyy-MM-dd).
    """
    # Each step is its own projection so the split and every token are computed once per line
    # (inside a CASE WHEN chain Spark would re-evaluate a repeated expression for each branch).
    base = list(lines_df.columns)
    fields = lines_df.select(*base, F.split(F.col("value"), "\t", -1).alias("_f"))

    def field(name: str) -> Column:
        return F.get(F.col("_f"), TSV_COLUMNS.index(name))

    tokens = fields.select(
        *base, F.size("_f").alias("_n"), F.trim(field("customer_id")).alias("_user"),
        F.trim(field("product_id")).alias("_item"), F.trim(field("star_rating")).alias("_rtok"),
        F.trim(field("helpful_votes")).alias("_helpful"), F.trim(field("total_votes")).alias("_total"),
        F.trim(field("verified_purchase")).alias("_vflag"), F.trim(field("review_date")).alias("_dtok"),
        field("product_title").alias("_title"), field("review_id").alias("_rid"),
        field("product_category").alias("_cat"), field("review_headline").alias("_summary"),
        field("review_body").alias("_body"))
    rtok, dtok = F.col("_rtok"), F.col("_dtok")
    values = tokens.select(
        *base, "_n", "_user", "_item", "_helpful", "_total", "_vflag", "_title", "_rid", "_cat", "_summary",
        "_body",
        F.when(rtok.rlike(r"^[0-9]{1,3}$"), rtok.try_cast(T.IntegerType())).alias("_rating"),
        D.iso_date(dtok).alias("_date"),
        (F.trim(F.col("value")) == "").alias("_blank"),
        F.col("value").startswith("marketplace\tcustomer_id\t").alias("_header"))
    user, item, rating, date = F.col("_user"), F.col("_item"), F.col("_rating"), F.col("_date")
    helpful, total, vflag = F.col("_helpful"), F.col("_total"), F.col("_vflag")
    is_blank, is_header = F.col("_blank"), F.col("_header")
    reason = (
        F.when(is_blank | is_header, F.lit(None))
        .when(F.col("_n") != len(TSV_COLUMNS), F.lit(R.WRONG_FIELD_COUNT))
        .when(~user.rlike(_USER_ID), F.lit(R.BAD_USER_ID))
        .when(~item.rlike(_ITEM_ID), F.lit(R.BAD_ITEM_ID))
        .when(rating.isNull(), F.lit(R.BAD_RATING))
        .when((rating < 1) | (rating > 5), F.lit(R.RATING_OUT_OF_RANGE))
        .when(~helpful.rlike(_COUNT) | ~total.rlike(_COUNT), F.lit(R.BAD_VOTES))
        .when(~vflag.isin("Y", "N"), F.lit(R.BAD_VERIFIED))
        .when(date.isNull(), F.lit(R.BAD_DATE))
    )
    staged = values.withColumn("reason", reason).withColumn("kind", D.kind_of(F.col("reason"), is_blank, is_header))
    return D.ratings_columns(
        staged, user=user, item=item, rating=rating, ts=date.cast(T.TimestampType()), raw_max=raw_max,
        extra={S.VERIFIED_COL: vflag == "Y", S.HELPFUL_COL: helpful.cast(T.IntegerType()),
               "title": F.col("_title"), **_tsv_review_columns()})


def _tsv_review_columns() -> dict[str, Column]:
    """The review-text columns (:data:`batchml.schema.REVIEW_TEXT_COLS`) of a parsed TSV line."""
    return {S.REVIEW_ID_COL: _blank_to_null(F.col("_rid")), S.TOTAL_VOTES_COL: F.col("_total").cast(T.IntegerType()),
            S.CATEGORY_COL: _blank_to_null(F.col("_cat")), S.SUMMARY_COL: review_text(F.col("_summary")),
            S.BODY_COL: review_text(F.col("_body"))}


def read_amazon_tsv(spark: SparkSession, paths: Sequence[str], raw_max: int = 300) -> DataFrame:
    """Read and parse Amazon review TSV files (plain or gzip); see :func:`parse_amazon_tsv`."""
    return parse_amazon_tsv(D.read_text_lines(spark, paths), raw_max)


def parse_amazon_tsv_dump(spark: SparkSession, root: str, raw_max: int) -> ParsedDump:
    """Find (directory, file or glob) and parse Amazon review TSV files into a
    :class:`batchml.io.parsed.ParsedDump`; product titles come from the latest review of each item."""
    found = resolve_input(root, TSV_FILE)
    if not found.files:
        raise InputError(f"{root} has no Amazon review TSV files (expected *.tsv or *.tsv.gz, e.g. "
                         "amazon_reviews_us_Books_v1_00.tsv.gz)")
    check_amazon_tsv_format(found.files)
    LOG.info("Amazon TSV: %d files", len(found.files))
    return ParsedDump(format="amazon-tsv", ratings=read_amazon_tsv(spark, found.files, raw_max),
                      root=found.root, info={"n_files": len(found.files)})


# --------------------------------------------------------------------------------------- JSON lines
SCHEMA_KEYS = {
    "2023": ("user_id", "parent_asin", "rating", "timestamp"),
    "2018": ("reviewerID", "asin", "overall", "unixReviewTime"),
    "2014": ("reviewerID", "asin", "overall", "unixReviewTime"),
}
_2018_ONLY = ("verified", "vote", "style", "image")
#: (summary, body) keys of each schema
TEXT_KEYS = {"2023": ("title", "text"), "2018": ("summary", "reviewText"), "2014": ("summary", "reviewText")}
#: the category in a McAuley file name: reviews_<Cat>_5.json.gz (2014), <Cat>_5.json (2018), <Cat>.jsonl.gz
_JSON_CATEGORY = r"^(?:reviews_)?(.+?)(?:_5)?\.(?:json|jsonl)(?:\.gz)?$"


def detect_json_schema(path: str) -> str:
    """``"2014"``, ``"2018"`` or ``"2023"`` from the first lines of a JSON-lines file.

    Raises :class:`InputError` naming the file when its first lines are not JSON review objects.
    """
    lines = head_lines(path)
    if not lines:
        raise InputError(f"{path} is empty (no non-blank line); expected an Amazon review JSON-lines file")
    objs = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            objs.append(obj)
    keys = set().union(*[o.keys() for o in objs]) if objs else set()
    if len(objs) >= 0.5 * max(1, len(lines)):
        if {"user_id", "parent_asin"} <= keys or {"user_id", "rating", "timestamp"} <= keys:
            return "2023"
        if {"reviewerID", "asin"} <= keys:
            return "2018" if keys & set(_2018_ONLY) else "2014"
    first = lines[0][:120]
    raise InputError(f"{path} is not an Amazon review JSON-lines file (expected one JSON object per line "
                     "with reviewerID, asin, overall, unixReviewTime (2014/2018 schema) or user_id, "
                     f"parent_asin, rating, timestamp (2023 schema)); its first line is {first!r}")


def parse_amazon_json(lines_df: DataFrame, schema: str, raw_max: int = 300) -> DataFrame:
    """Classify and parse JSON-lines reviews (``value, source, block, seq``) of one ``schema``.

    Returns
    -------
    DataFrame
        ``source, block, seq, kind, user_id, item_id, rating, ts, verified, helpful_votes, review_id
        (null), total_votes, category, summary, body, reason, raw``.  Reasons: not JSON, missing key
        field, bad rating (not a number), rating out of range (1..5), bad date (time not a
        non-negative integer, or past the year 9999).
    """
    values = _json_values(lines_df, schema)
    staged = (values.withColumn("reason", _json_reason())
              .withColumn("kind", D.kind_of(F.col("reason"), F.col("_blank"), F.lit(False))))
    return D.ratings_columns(staged, user=F.col("_user"), item=F.col("_item"), rating=F.col("_rating"),
                             ts=F.col("_ts"), raw_max=raw_max,
                             extra={S.VERIFIED_COL: F.col("_verified"), S.HELPFUL_COL: F.col("_helpful"),
                                    **_json_review_columns(schema)})


def json_category(source: Column) -> Column:
    """The category named by a McAuley file's name (``_`` as spaces), else the name itself."""
    name = F.regexp_extract(source, r"([^/]+)$", 1)
    cat = F.when(name.rlike(_JSON_CATEGORY), F.regexp_extract(name, _JSON_CATEGORY, 1)).otherwise(name)
    return F.regexp_replace(cat, "_", " ")


def _json_review_columns(schema: str) -> dict[str, Column]:
    """The review-text columns (:data:`batchml.schema.REVIEW_TEXT_COLS`) of :func:`_json_values`."""
    return {S.REVIEW_ID_COL: F.lit(None).cast(T.StringType()), S.TOTAL_VOTES_COL: F.col("_total"),
            S.CATEGORY_COL: json_category(F.col("source")),
            S.SUMMARY_COL: review_text(F.col("_summary")), S.BODY_COL: review_text(F.col("_body"))}


def _json_total_votes(v: Column, schema: str) -> Column:
    """Total votes (helpful or not): ``helpful[1]`` in the 2014 schema; the others do not record it."""
    return F.try_variant_get(v, "$.helpful[1]", "int") if schema == "2014" else F.lit(None).cast(T.IntegerType())


def _json_text(v: Column, key: str) -> Column:
    return F.try_variant_get(v, f"$.{key}", "string")


def _json_votes(v: Column, schema: str) -> tuple[Column, Column]:
    """``(helpful votes int, verified boolean)`` of a parsed review in ``schema``."""
    if schema == "2023":
        return (F.try_variant_get(v, "$.helpful_vote", "int"),
                F.try_variant_get(v, "$.verified_purchase", "boolean"))
    if schema == "2018":
        vote = _json_text(v, "vote")
        helpful = F.coalesce(F.regexp_replace(vote, ",", "").try_cast(T.IntegerType()),
                             F.try_variant_get(v, "$.helpful[0]", "int"), F.when(vote.isNull(), F.lit(0)))
        return helpful, F.try_variant_get(v, "$.verified", "boolean")
    return F.try_variant_get(v, "$.helpful[0]", "int"), F.lit(None).cast(T.BooleanType())


def _json_values(lines_df: DataFrame, schema: str) -> DataFrame:
    """``lines_df`` plus the fields of a review in ``schema``: ``_bad_json``, ``_user``, ``_item``,
    ``_rtext``, ``_rating`` (double or null), ``_ttok``, ``_helpful``, ``_verified``, ``_total``,
    ``_summary``, ``_body``, ``_ts``, ``_blank``."""
    user_k, item_k, rating_k, time_k = SCHEMA_KEYS[schema]
    summary_k, body_k = TEXT_KEYS[schema]
    # one projection per step: the JSON is parsed once per line, each field extracted once
    base = list(lines_df.columns)
    parsed = lines_df.select(*base, F.try_parse_json(F.col("value")).alias("_v"))
    v = F.col("_v")
    helpful, verified = _json_votes(v, schema)
    tokens = parsed.select(
        *base, v.isNull().alias("_bad_json"), _json_text(v, user_k).alias("_user"),
        _json_text(v, item_k).alias("_item"), _json_text(v, rating_k).alias("_rtext"),
        F.try_variant_get(v, f"$.{rating_k}", "double").alias("_rating"),
        F.trim(_json_text(v, time_k)).alias("_ttok"), helpful.alias("_helpful"), verified.alias("_verified"),
        _json_total_votes(v, schema).alias("_total"), _json_text(v, summary_k).alias("_summary"),
        _json_text(v, body_k).alias("_body"))
    return tokens.select(
        *base, "_bad_json", "_user", "_item", "_rtext", "_rating", "_ttok", "_helpful", "_verified", "_total",
        "_summary", "_body",
        D.unix_time(F.col("_ttok"), millis=schema == "2023").alias("_ts"),
        (F.trim(F.col("value")) == "").alias("_blank"))


def _json_reason() -> Column:
    """The reject reason of a line of :func:`_json_values` (null: not a reject), in checking order."""
    rating = F.col("_rating")

    def missing(c: Column) -> Column:
        return c.isNull() | (F.trim(c) == "")

    return (
        F.when(F.col("_blank"), F.lit(None))
        .when(F.col("_bad_json") | ~F.ltrim(F.col("value")).startswith("{"), F.lit(R.NOT_JSON))
        .when(missing(F.col("_user")) | missing(F.col("_item")) | missing(F.col("_rtext"))
              | missing(F.col("_ttok")), F.lit(R.MISSING_FIELD))
        .when(rating.isNull(), F.lit(R.BAD_RATING))
        .when((rating < 1) | (rating > 5), F.lit(R.RATING_OUT_OF_RANGE))
        .when(F.col("_ts").isNull(), F.lit(R.BAD_DATE))
    )


def read_amazon_json(spark: SparkSession, paths: Sequence[str], raw_max: int = 300,
                     schemas: dict[str, str] | None = None) -> DataFrame:
    """Read and parse JSON-lines review files (plain or gzip), each in its detected schema; files of
    one schema are read together and the groups unioned."""
    schemas = schemas or {p: detect_json_schema(p) for p in paths}
    parts = []
    for name in ("2014", "2018", "2023"):
        group = [p for p in paths if schemas[p] == name]
        if group:
            parts.append(parse_amazon_json(D.read_text_lines(spark, group), name, raw_max))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def parse_amazon_json_dump(spark: SparkSession, root: str, raw_max: int) -> ParsedDump:
    """Find (directory, file or glob) and parse McAuley JSON-lines review files into a
    :class:`batchml.io.parsed.ParsedDump`."""
    found = resolve_input(root, JSON_FILE)
    if not found.files:
        raise InputError(f"{root} has no Amazon review JSON-lines files (expected *.json, *.jsonl, "
                         "optionally .gz)")
    schemas = {p: detect_json_schema(p) for p in found.files}
    by_schema: dict[str, int] = {}
    for s in schemas.values():
        by_schema[s] = by_schema.get(s, 0) + 1
    LOG.info("Amazon JSON lines: %d files, schemas %s", len(found.files), by_schema)
    return ParsedDump(format="amazon-json", ratings=read_amazon_json(spark, found.files, raw_max, schemas),
                      root=found.root, info={"json_schemas": by_schema})
