"""Ingest: raw dumps -> one canonical dataset dir (ratings, users, items, rejects, [probe,
qualifying], _stats.json).  Every line read is accounted for: header, accepted, blank or rejected.

Each format's reader (``batchml.io.*``) turns its files into a :class:`ParsedDump` with common
columns; everything after that is shared: staging, the reject limit, keeping the latest of duplicate
(user, item) pairs, dense ids, pair tables, statistics.  The dataset is written atomically: a
temporary sibling is filled (parsed lines are staged there as Parquet first, so the text is parsed
once) and moved into place only when complete.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml import schema as S
from batchml.errors import JobError
from batchml.config import Config
from batchml.indexing import index_ids, keep_latest
from batchml.io import reasons as R
from batchml.io.atomic import atomic_dir, remove_tree, write_json
from batchml.io.delimited import with_lines
from batchml.io.files import source_name
from batchml.logs import stage
from batchml.spark import maybe_broadcast
from batchml.stats import dataset_stats, line_counts, reconcile

LOG = logging.getLogger("batchml.ingest")

KIND_DATA, KIND_REJECT = "data", "reject"
#: optional per-rating columns a format may provide (Amazon), kept in the ratings table
OPTIONAL_RATING_COLS = (S.VERIFIED_COL, S.HELPFUL_COL)


@dataclass
class ParsedDump:
    """A dump parsed into common columns, before staging.

    ``ratings``: ``source, line, kind, user_id string, item_id string, rating float, ts timestamp,
    [verified boolean, helpful_votes int,] reason, raw`` (kind: header / data / blank / reject).
    ``items``: ``source, line, kind, item_id, title, year, reason, raw`` or None.
    ``pairs``: extra (user, item[, ts]) tables such as Netflix ``probe`` and ``qualifying``, in the
    ratings columns.

    A reader may give ``block, seq`` (from :func:`batchml.io.text.read_lines`) instead of ``line`` in
    ``ratings``: the lines are then numbered after staging, from the staged Parquet.  An optional
    ``title`` column in ``ratings`` (Amazon TSV product titles) names the items when ``items`` is None.
    ``root`` is the directory that ``source`` names are relative to (default: the input).
    """

    format: str
    ratings: DataFrame
    items: DataFrame | None = None
    pairs: dict[str, DataFrame] = field(default_factory=dict)
    numeric_ids: bool = False
    info: dict = field(default_factory=dict)
    root: str | None = None


def _readers() -> dict[str, Callable[[SparkSession, str, int], ParsedDump]]:
    from batchml.io.amazon import parse_amazon_json_dump, parse_amazon_tsv_dump
    from batchml.io.movielens import parse_movielens_dump
    from batchml.io.netflix_csv import parse_netflix_csv_dump
    from batchml.io.netflix_dump import parse_netflix_dump
    return {"netflix": parse_netflix_dump, "netflix-csv": parse_netflix_csv_dump,
            "amazon-tsv": parse_amazon_tsv_dump, "amazon-json": parse_amazon_json_dump,
            "movielens": parse_movielens_dump}


FORMATS = ("netflix", "netflix-csv", "amazon-tsv", "amazon-json", "movielens")


def _stage_parquet(df: DataFrame, path: str) -> DataFrame:
    df.write.mode("overwrite").parquet(path)
    return df.sparkSession.read.parquet(path)


def _rejects(df: DataFrame) -> DataFrame:
    return df.where(F.col("kind") == KIND_REJECT).select(
        "source", F.col("line").cast(T.LongType()).alias("line"), "raw", "reason")


def check_reject_fraction(counts: dict, limit: float, examples: list) -> None:
    """Raise :class:`JobError` when rejected / (accepted + rejected) exceeds ``limit``."""
    accepted = sum(c["accepted"] for c in counts.values())
    rejected = sum(c["rejected"] for c in counts.values())
    total = accepted + rejected
    if total == 0:
        raise JobError("no rating lines found in the input")
    frac = rejected / total
    if frac > limit:
        by_reason: dict[str, int] = {}
        for c in counts.values():
            for r, n in c["rejected_by_reason"].items():
                by_reason[r] = by_reason.get(r, 0) + n
        top = ", ".join(f"{r}: {n:,}" for r, n in sorted(by_reason.items(), key=lambda x: -x[1]))
        ex = "; ".join(f"{e['source']}:{e['line']}: {e['raw']!r} ({e['reason']})" for e in examples)
        raise JobError(f"{frac:.2%} of rating lines were rejected, above the limit of {limit:.2%} "
                       f"(ingest.max_reject_fraction). Reasons: {top}. Examples: {ex}")


@dataclass
class IngestResult:
    output: str
    stats: dict
    timings: dict = field(default_factory=dict)


def ingest(spark: SparkSession, cfg: Config, fmt: str, input_dir: str, output: str,
           remove_probe: bool | None = None) -> IngestResult:
    """Ingest the dump at ``input_dir`` in format ``fmt`` into the dataset dir ``output``."""
    readers = _readers()
    if fmt not in readers:
        raise JobError(f"unknown format {fmt!r} (known: {', '.join(sorted(readers))})")
    t0 = time.perf_counter()
    timings: dict = {}
    remove_probe = cfg.ingest.remove_probe if remove_probe is None else remove_probe
    dump = readers[fmt](spark, input_dir, cfg.ingest.raw_max_chars)
    name = source_name(dump.root or input_dir)
    extras = [c for c in OPTIONAL_RATING_COLS if c in dump.ratings.columns]

    with atomic_dir(output) as tmp:
        staging = f"{tmp}/_staging"
        with stage("parse ratings files", spark, timings) as st:
            parsed = _stage_parquet(dump.ratings.withColumn("source", name), f"{staging}/ratings")
            if "line" not in parsed.columns:
                parsed = with_lines(parsed)
            counts = line_counts(parsed, "ratings")
            st.set_rows(sum(c["lines"] for c in counts.values()))
        examples = [r.asDict() for r in _rejects(parsed).orderBy("source", "line").limit(3).collect()]
        check_reject_fraction(counts, cfg.ingest.max_reject_fraction, examples)

        with stage("item metadata", spark, timings) as st:
            item_rows = None
            if dump.items is not None:
                items_parsed = _stage_parquet(dump.items.withColumn("source", name), f"{staging}/items")
                counts.update(line_counts(items_parsed, "items"))
                item_rows = keep_latest(items_parsed.where(F.col("kind") == KIND_DATA),
                                        keys=["item_id"], order=["source", "line"],
                                        value_cols=["title", "year"]).select("item_id", "title", "year")
                st.set_rows(item_rows.count())
            elif "title" in parsed.columns:
                item_rows = keep_latest(parsed.where(F.col("kind") == KIND_DATA), keys=["item_id"],
                                        order=["ts", "source", "line"], value_cols=["title"]).select(
                    "item_id", "title", F.lit(None).cast(T.IntegerType()).alias("year"))
                st.set_rows(item_rows.count())

        with stage("de-duplicate and index ids", spark, timings) as st:
            accepted = parsed.where(F.col("kind") == KIND_DATA)
            latest = keep_latest(accepted, keys=["user_id", "item_id"], order=["ts", "source", "line"],
                                 value_cols=["rating", *extras])
            latest = _stage_parquet(latest, f"{staging}/latest")
            users = index_ids(latest, col_id="user_id", col_idx=S.USER_COL, numeric=dump.numeric_ids)
            users = _stage_parquet(users, f"{tmp}/{S.USERS}")
            item_ids = latest.select("item_id")
            if item_rows is not None:
                item_ids = item_ids.unionByName(item_rows.select("item_id"))
            items = index_ids(item_ids, col_id="item_id", col_idx=S.ITEM_COL, numeric=dump.numeric_ids)
            if item_rows is not None:
                items = items.join(item_rows, on="item_id", how="left")
            else:
                items = (items.withColumn(S.TITLE_COL, F.lit(None).cast("string"))
                         .withColumn(S.YEAR_COL, F.lit(None).cast("int")))
            items = _stage_parquet(items.select(*S.ITEMS_SCHEMA.fieldNames()), f"{tmp}/{S.ITEMS}")
            st.set_rows(latest.count())

        ratings = with_indices(latest, users, items).select(
            S.USER_COL, S.ITEM_COL, F.col("rating").cast(T.FloatType()).alias(S.RATING_COL),
            F.col("ts").alias(S.TS_COL), *extras)

        rejects = [_rejects(parsed)]
        if dump.items is not None:
            rejects.append(_rejects(items_parsed))
        extra_stats = {}
        for table, pdf in dump.pairs.items():
            with stage(f"parse {table}", spark, timings) as st:
                pdf = _stage_parquet(pdf.withColumn("source", name), f"{staging}/{table}")
                pairs, unknown = map_pairs(pdf, users, items, cfg.ingest.raw_max_chars)
                if table == S.PROBE:
                    # the probe's ratings are in the training files: keep them with the pairs, so
                    # the probe stays a scorable test set when it is removed from the ratings
                    pairs = pairs.join(ratings.select(S.USER_COL, S.ITEM_COL, S.RATING_COL),
                                       on=[S.USER_COL, S.ITEM_COL], how="left")
                pairs = _stage_parquet(pairs, f"{tmp}/{table}")
                rejects += [_rejects(pdf), unknown]
                extra_stats[table] = {"pairs": st.set_rows(pairs.count()), "unknown": unknown.count()}
                counts.update(line_counts(pdf, table, extra_rejects=unknown))
        removed = 0
        if remove_probe and S.PROBE in dump.pairs:
            probe = maybe_broadcast(spark.read.parquet(f"{tmp}/{S.PROBE}").select(S.USER_COL, S.ITEM_COL))
            removed = ratings.join(probe, on=[S.USER_COL, S.ITEM_COL], how="left_semi").count()
            ratings = ratings.join(probe, on=[S.USER_COL, S.ITEM_COL], how="left_anti")

        with stage("write ratings", spark, timings) as st:
            ratings = _stage_parquet(ratings, f"{tmp}/{S.RATINGS}")
            st.set_rows(ratings.count())
        with stage("write rejects", spark, timings) as st:
            union = rejects[0]
            for r in rejects[1:]:
                union = union.unionByName(r)
            st.set_rows(_stage_parquet(union, f"{tmp}/{S.REJECTS}").count())

        with stage("statistics", spark, timings):
            dup = latest.agg(F.sum(F.col("n_copies") - 1).alias("d")).first()["d"] or 0
            stats = dataset_stats(ratings, users, items)
            stats.update({"format": dump.format, **dump.info, "input": input_dir, "files": counts,
                          "duplicates_dropped": int(dup),
                          "probe_removed_from_ratings": bool(remove_probe and S.PROBE in dump.pairs),
                          **extra_stats})
            stats["reconcile"] = reconcile(counts, duplicates=int(dup), removed=removed,
                                           ratings_written=stats["ratings"])
        if not (stats["reconcile"]["all_files_reconcile"] and stats["reconcile"]["ratings_reconcile"]):
            raise JobError(f"internal error: counts do not reconcile: {stats['reconcile']}")
        remove_tree(staging)
        timings["total"] = round(time.perf_counter() - t0, 3)
        stats["timings_s"] = timings
        write_json(f"{tmp}/{S.STATS_FILE}", stats)
    return IngestResult(output, stats, timings)


def ingest_netflix(spark: SparkSession, cfg: Config, input_dir: str, output: str,
                   remove_probe: bool | None = None) -> IngestResult:
    """Ingest a Netflix Prize dump (see :mod:`batchml.io.netflix`)."""
    return ingest(spark, cfg, "netflix", input_dir, output, remove_probe)


def with_indices(df: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Replace ``user_id``/``item_id`` by dense ``user_idx``/``item_idx`` (inner joins: every id is in
    the maps by construction)."""
    return (
        df.join(maybe_broadcast(users), on=S.USER_ID_COL, how="inner")
        .join(maybe_broadcast(items.select(S.ITEM_ID_COL, S.ITEM_COL)), on=S.ITEM_ID_COL, how="inner")
    )


def map_pairs(parsed: DataFrame, users: DataFrame, items: DataFrame, raw_max: int):
    """Extra pair tables (probe/qualifying) to indices; pairs whose user or item is not in the
    ratings are rejects.

    Returns ``(pairs, unknown_rejects)``: pairs with ``user_idx, item_idx, ts``; rejects with
    ``source, line, raw, reason``."""
    data = parsed.where(F.col("kind") == KIND_DATA)
    joined = (data.join(users, on=S.USER_ID_COL, how="left")
              .join(items.select(S.ITEM_ID_COL, S.ITEM_COL), on=S.ITEM_ID_COL, how="left"))
    pairs = joined.where(F.col(S.USER_COL).isNotNull() & F.col(S.ITEM_COL).isNotNull()).select(
        S.USER_COL, S.ITEM_COL, F.col("ts").alias(S.TS_COL))
    raw = F.concat_ws(",", F.concat(F.col("item_id"), F.lit(":")), F.col("user_id"),
                      F.date_format("ts", "yyyy-MM-dd"))
    unknown = joined.where(F.col(S.USER_COL).isNull() | F.col(S.ITEM_COL).isNull()).select(
        "source", F.col("line").cast(T.LongType()).alias("line"), F.substring(raw, 1, raw_max).alias("raw"),
        F.when(F.col(S.USER_COL).isNull(), F.lit(R.UNKNOWN_USER)).otherwise(F.lit(R.UNKNOWN_ITEM)).alias("reason"))
    return pairs, unknown
