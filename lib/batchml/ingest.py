"""Ingest: raw dumps -> one canonical dataset dir (ratings, users, items, rejects, [probe,
qualifying], _stats.json).  Every line read is accounted for: header, accepted, blank or rejected.

Each format's reader (:mod:`batchml.io.readers`) turns its files into a
:class:`~batchml.io.parsed.ParsedDump` with common columns; everything after that is shared and runs
as a short sequence of stages: parse (staging, the reject limit, item metadata), de-duplicate and
index (keeping the latest of duplicate (user, item) pairs, dense ids), pair tables (Netflix probe and
qualifying), write tables (in the schemas of :mod:`batchml.schema`; the Amazon formats' review text
goes to its own ``reviews`` table, one row per rating), statistics and the reconcile check.  The
dataset is written atomically: a temporary sibling is filled (parsed lines are staged there as
Parquet first, so the text is parsed once) and moved into place only when complete.
"""
from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Callable

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml import schema as S
from batchml.config import Config
from batchml.errors import JobError
from batchml.indexing import index_ids, keep_latest, keyed_like, latest_and_repeats
from batchml.io import reasons as R
from batchml.io.atomic import atomic_dir, remove_tree, write_json
from batchml.io.files import source_name
from batchml.io.parsed import KIND_DATA, KIND_REJECT, OPTIONAL_RATING_COLS, ParsedDump
from batchml.io.read_failures import input_read_errors
from batchml.io.readers import reader_for
from batchml.io.tables import conform
from batchml.io.text import with_lines_and_groups
from batchml.logs import Stage, stage
from batchml.spark import fault_point, maybe_broadcast
from batchml.stats import category_stats, counts_by_kind, dataset_stats, line_counts, reconcile

#: the order that picks the latest of duplicate lines: timestamp, then file, then line
LATEST_ORDER = [S.TS_COL, "source", "line"]


@dataclass
class IngestResult:
    output: str
    stats: dict
    timings: dict = field(default_factory=dict)


@dataclass
class Workspace:
    """The temporary dataset dir one ingest fills, its staging area, the stage timings and the row
    count of every table written (observed during its write: no extra pass)."""

    spark: SparkSession
    tmp: str
    timings: dict
    rows: dict = field(default_factory=dict)   # table name (staged: "_staging/name") -> rows written

    @property
    def staging(self) -> str:
        return f"{self.tmp}/_staging"

    def stage(self, name: str) -> AbstractContextManager[Stage]:
        return stage(name, self.spark, self.timings)

    def staged(self, df: DataFrame, name: str) -> DataFrame:
        """``df`` written to the staging area and read back (computed once from here on)."""
        out, self.rows[f"_staging/{name}"] = _write_parquet(fault_point(df, "ingest"), f"{self.staging}/{name}")
        return out

    def table(self, df: DataFrame, name: str, schema: T.StructType,
              optional: T.StructType | None = None) -> DataFrame:
        """``df`` conformed to ``schema``, written as the dataset table ``name`` and read back."""
        out, self.rows[name] = _write_parquet(conform(df, schema, optional), f"{self.tmp}/{name}")
        return out


@dataclass
class ParsedLines:
    """The staged parse of a dump: every line with its kind, and the per-file line accounting."""

    ratings: DataFrame
    items: DataFrame | None      # title lines, when the dump has a titles file
    item_rows: DataFrame | None  # item_id, title, year: the latest metadata of each item
    counts: dict


@dataclass
class Indexed:
    """The de-duplicated ratings with dense ids (the users and items tables are written)."""

    latest: DataFrame   # one row per (user_id, item_id), with n_copies
    users: DataFrame
    items: DataFrame
    ratings: DataFrame  # user_idx, item_idx, rating, ts[, verified, helpful_votes]: not written yet
    duplicates_dropped: int = 0  # accepted lines dropped for a later line of the same (user, item)


@dataclass
class PairTables:
    """The pair tables written (probe, qualifying): their rejects and figures."""

    rejects: list[DataFrame]
    stats: dict


def ingest(spark: SparkSession, cfg: Config, fmt: str, input_dir: str, output: str) -> IngestResult:
    """Ingest the dump at ``input_dir`` in format ``fmt`` into the dataset dir ``output``.

    ``cfg.ingest`` holds the reject limit, the raw-line length kept in rejects and whether the
    Netflix probe pairs are removed from the ratings.
    """
    t0 = time.perf_counter()
    settings = cfg.ingest
    timings: dict = {}
    # a reader may scan already (the Netflix split summaries): its time is a stage of its own
    with input_read_errors(), stage("read the dump's layout", spark, timings):
        dump = reader_for(fmt)(spark, input_dir, settings.raw_max_chars)
    name = source_name(dump.root or input_dir)
    with atomic_dir(output) as tmp, input_read_errors(internal=tmp):
        ws = Workspace(spark, tmp, timings)
        parsed = parse_lines(ws, dump, name, settings.max_reject_fraction)
        indexed = dedupe_and_index(ws, parsed, numeric=dump.numeric_ids,
                                   local=accepted_lines(parsed.counts) <= settings.local_max_rows)
        pairs = write_pair_tables(ws, dump, name, indexed, parsed.counts, settings.raw_max_chars)
        remove_probe = settings.remove_probe and S.PROBE in dump.pairs
        ratings, removed = without_probe(ws, indexed.ratings) if remove_probe else (indexed.ratings, 0)
        reviews = write_reviews(ws, parsed.ratings, ratings)
        ratings = write_ratings_and_rejects(ws, ratings, [*parse_rejects(parsed), *pairs.rejects])
        stats = ingest_stats(ws, dump, input_dir, parsed.counts, indexed, ratings, reviews)
        stats.update({"probe_removed_from_ratings": bool(remove_probe), **pairs.stats})
        stats["reconcile"] = check_reconciled(parsed.counts, duplicates=stats["duplicates_dropped"],
                                              removed=removed, ratings_written=stats["ratings"],
                                              reviews_written=stats.get("reviews"))
        remove_tree(ws.staging)
        timings["total"] = round(time.perf_counter() - t0, 3)
        stats["timings_s"] = timings
        write_json(f"{tmp}/{S.STATS_FILE}", stats)
    return IngestResult(output, stats, timings)


def ingest_netflix(spark: SparkSession, cfg: Config, input_dir: str, output: str) -> IngestResult:
    """Ingest a Netflix Prize dump (see :mod:`batchml.io.netflix`)."""
    return ingest(spark, cfg, "netflix", input_dir, output)


# ------------------------------------------------------------------------------------------ stages
def parse_lines(ws: Workspace, dump: ParsedDump, name: Column, max_reject_fraction: float) -> ParsedLines:
    """Stage the parsed ratings lines, enforce the reject limit, then stage the item metadata."""
    with ws.stage("parse ratings files") as st:
        parsed = ws.staged(dump.ratings.withColumn("source", name), S.RATINGS)
        if "line" in parsed.columns:
            counts = line_counts(parsed, S.RATINGS)
        else:   # line numbers and the line accounting from one small job
            parsed, groups = with_lines_and_groups(parsed, by=("kind", "reason"))
            counts = counts_by_kind(groups, S.RATINGS)
        st.set_rows(sum(c["lines"] for c in counts.values()))
    check_reject_fraction(counts, max_reject_fraction, examples=lambda: reject_examples(parsed))
    items_parsed, item_rows = None, None
    with ws.stage("item metadata") as st:
        if dump.items is not None:
            items_parsed = ws.staged(dump.items.withColumn("source", name), S.ITEMS)
            item_counts = line_counts(items_parsed, S.ITEMS)
            counts.update(item_counts)
            item_rows = latest_item_metadata(items_parsed)
            st.set_rows(sum(c["accepted"] for c in item_counts.values()))
        elif S.TITLE_COL in parsed.columns:
            item_rows = latest_review_titles(parsed)
    return ParsedLines(parsed, items_parsed, item_rows, counts)


def reject_examples(parsed: DataFrame, n: int = 3) -> list[dict]:
    """The first ``n`` reject lines of a parse (by file and line), for an error message."""
    return [r.asDict() for r in rejects_of(parsed).orderBy("source", "line").limit(n).collect()]


def accepted_lines(counts: dict) -> int:
    """Accepted rating lines of a parse's line accounting."""
    return sum(c["accepted"] for c in counts.values() if c["role"] == S.RATINGS)


def dedupe_and_index(ws: Workspace, parsed: ParsedLines, *, numeric: bool, local: bool = False) -> Indexed:
    """Keep the latest of duplicate (user, item) lines, give users and items dense ids, write the
    users and items tables; ``local``: few lines (:attr:`IngestSettings.local_max_rows`), by the
    paths with fewer Spark jobs."""
    extras = [c for c in OPTIONAL_RATING_COLS if c in parsed.ratings.columns]
    with ws.stage("de-duplicate and index ids") as st:
        accepted = parsed.ratings.where(F.col("kind") == KIND_DATA)
        latest, n_repeated = latest_and_repeats(
            accepted, keys=[S.USER_ID_COL, S.ITEM_ID_COL], order=LATEST_ORDER,
            value_cols=[S.RATING_COL, *extras], few=local)
        if n_repeated != 0:  # with none, the rows are the staged parse's: no copy to write
            latest = ws.staged(latest, "latest")
        users = index_ids(latest, col_id=S.USER_ID_COL, col_idx=S.USER_COL, numeric=numeric, local=local)
        users = ws.table(users, S.USERS, S.USERS_SCHEMA)
        items = ws.table(items_with_metadata(latest, parsed.item_rows, numeric=numeric, local=local),
                         S.ITEMS, S.ITEMS_SCHEMA)
        if n_repeated == 0:
            n, dropped = accepted_lines(parsed.counts), 0
        else:
            figures = latest.agg(F.count(F.lit(1)).alias("n"),
                                 F.sum(F.col("n_copies") - 1).alias("d")).first()
            n, dropped = figures["n"], int(figures["d"] or 0)
        st.set_rows(n)
    return Indexed(latest, users, items, with_indices(latest, users, items), duplicates_dropped=dropped)


def write_pair_tables(ws: Workspace, dump: ParsedDump, name: Column, indexed: Indexed, counts: dict,
                      raw_max: int) -> PairTables:
    """Write the extra pair tables (Netflix probe and qualifying) by dense ids; pairs naming a user
    or item not in the ratings become rejects.  Adds the tables' line accounting to ``counts``."""
    rejects, stats = [], {}
    for table, pdf in dump.pairs.items():
        with ws.stage(f"parse {table}") as st:
            pdf = ws.staged(pdf.withColumn("source", name), table)
            pairs, unknown = map_pairs(pdf, indexed.users, indexed.items, raw_max)
            schema = S.PAIRS_SCHEMA
            if table == S.PROBE:
                # the probe's ratings are in the training files: keep them with the pairs, so
                # the probe stays a scorable test set when it is removed from the ratings
                pairs = with_pair_ratings(pairs, pdf, indexed, max_pairs=ws.rows[f"_staging/{table}"])
                schema = S.PROBE_SCHEMA
            pairs = ws.table(pairs, table, schema)
            rejects += [rejects_of(pdf), unknown]
            stats[table] = {"pairs": st.set_rows(ws.rows[table]), "unknown": unknown.count()}
            counts.update(line_counts(pdf, table, extra_rejects=unknown))
    return PairTables(rejects, stats)


def with_pair_ratings(pairs: DataFrame, parsed: DataFrame, indexed: Indexed, *, max_pairs: int) -> DataFrame:
    """``pairs`` (``user_idx, item_idx, ...``) plus the ``rating`` of each pair in the ratings (null
    when not rated).  The rated pairs are found on the source ids, by a semi join of the
    de-duplicated ratings against the ``parsed`` pair lines' ids (broadcast when at most
    ``max_pairs`` fit), so the big ratings table is streamed, not shuffled, and only the rated
    pairs are mapped to dense ids (100M Prize-shaped: the probe stage took 64 s mapping every
    rating first)."""
    keys = [S.USER_ID_COL, S.ITEM_ID_COL]
    wanted = parsed.where(F.col("kind") == KIND_DATA).select(*keys)
    small = maybe_broadcast(wanted, values_per_row=len(keys), n_rows=max_pairs)
    rated = indexed.latest.select(*keys, S.RATING_COL).join(small, on=keys, how="left_semi")
    rated = with_indices(rated, indexed.users, indexed.items).select(S.USER_COL, S.ITEM_COL, S.RATING_COL)
    return pairs.join(rated, on=[S.USER_COL, S.ITEM_COL], how="left")


def without_probe(ws: Workspace, ratings: DataFrame) -> tuple[DataFrame, int]:
    """The ratings less the probe pairs (written before, with their ratings: see
    :func:`with_pair_ratings`), and how many ratings that removes: the distinct probe pairs that
    have a rating, counted on the small probe table (the reconcile then checks the anti join)."""
    written = ws.spark.read.parquet(f"{ws.tmp}/{S.PROBE}")
    removed = (written.where(F.col(S.RATING_COL).isNotNull())
               .select(S.USER_COL, S.ITEM_COL).distinct().count())
    probe = maybe_broadcast(written.select(S.USER_COL, S.ITEM_COL))
    return ratings.join(probe, on=[S.USER_COL, S.ITEM_COL], how="left_anti"), removed


def write_ratings_and_rejects(ws: Workspace, ratings: DataFrame, rejects: list[DataFrame]) -> DataFrame:
    """Write the ratings and rejects tables; returns the ratings as written."""
    with ws.stage("write ratings") as st:
        ratings = ws.table(ratings, S.RATINGS, S.RATINGS_SCHEMA, S.RATINGS_OPTIONAL)
        st.set_rows(ws.rows[S.RATINGS])
    with ws.stage("write rejects") as st:
        union = rejects[0]
        for r in rejects[1:]:
            union = union.unionByName(r)
        ws.table(union, S.REJECTS, S.REJECTS_SCHEMA)
        st.set_rows(ws.rows[S.REJECTS])
    return ratings


def write_reviews(ws: Workspace, parsed: DataFrame, ratings: DataFrame) -> DataFrame | None:
    """The ``reviews`` table when the dump has review text (Amazon formats), else None: the text of
    the line each rating was kept from (joined on ``source, line``), so it has the ratings' rows."""
    if S.BODY_COL not in parsed.columns:
        return None
    with ws.stage("write reviews") as st:
        text = parsed.where(F.col("kind") == KIND_DATA).select("source", "line", *S.REVIEW_TEXT_COLS)
        reviews = ws.table(review_rows(ratings, text), S.REVIEWS, S.REVIEWS_SCHEMA)
        st.set_rows(ws.rows[S.REVIEWS])
    return reviews


def review_rows(ratings: DataFrame, text: DataFrame) -> DataFrame:
    """``ratings`` (with ``source, line``) joined to the review ``text`` of their line; a review
    without an id in the dump gets ``file:line``; ``body_length`` counts the decoded body's
    characters."""
    return (ratings.join(text, on=["source", "line"], how="inner")
            .withColumn(S.REVIEW_ID_COL, F.coalesce(F.col(S.REVIEW_ID_COL),
                                                    F.concat_ws(":", F.col("source"), F.col("line"))))
            .withColumn(S.BODY_LENGTH_COL, F.length(S.BODY_COL)))


def ingest_stats(ws: Workspace, dump: ParsedDump, input_dir: str, counts: dict, indexed: Indexed,
                 ratings: DataFrame, reviews: DataFrame | None = None) -> dict:
    """The dataset figures of ``_stats.json``, with the per-file line accounting (and, with review
    text, the reviews count and per-category figures)."""
    with ws.stage("statistics"):
        stats = dataset_stats(ratings, ws.rows[S.USERS], ws.rows[S.ITEMS])
        stats.update({"format": dump.format, **dump.info, "input": input_dir, "files": counts,
                      "duplicates_dropped": indexed.duplicates_dropped})
        if reviews is not None:
            stats.update(category_stats(reviews))
    return stats


def check_reconciled(counts: dict, *, duplicates: int, removed: int, ratings_written: int,
                     reviews_written: int | None = None) -> dict:
    """The reconcile figures; :class:`JobError` when the counts do not add up (a bug, not bad data)."""
    figures = reconcile(counts, duplicates=duplicates, removed=removed, ratings_written=ratings_written,
                        reviews_written=reviews_written)
    if not (figures["all_files_reconcile"] and figures["ratings_reconcile"]
            and figures.get("reviews_reconcile", True)):
        raise JobError(f"internal error: counts do not reconcile: {figures}")
    return figures


# ------------------------------------------------------------------------------------------ checks
def check_reject_fraction(counts: dict, limit: float, examples: Callable[[], list]) -> None:
    """Raise :class:`JobError` when rejected / (accepted + rejected) exceeds ``limit``; ``examples``
    gives a few reject lines for the message (called only then)."""
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
        ex = "; ".join(f"{e['source']}:{e['line']}: {e['raw']!r} ({e['reason']})" for e in examples())
        raise JobError(f"{frac:.2%} of rating lines were rejected, above the limit of {limit:.2%} "
                       f"(ingest.max_reject_fraction). Reasons: {top}. Examples: {ex}")


# -------------------------------------------------------------------------------------- transforms
def _write_parquet(df: DataFrame, path: str) -> tuple[DataFrame, int]:
    """``df`` written as Parquet at ``path`` and read back, and its row count (a metric of the write)."""
    seen = Observation()
    df.observe(seen, F.count(F.lit(1)).alias("rows")).write.mode("overwrite").parquet(path)
    return df.sparkSession.read.parquet(path), int(seen.get["rows"])


def rejects_of(parsed: DataFrame) -> DataFrame:
    """The reject lines of a parse: ``source, line long, raw, reason``."""
    return parsed.where(F.col("kind") == KIND_REJECT).select(
        "source", F.col("line").cast(T.LongType()).alias("line"), "raw", "reason")


def parse_rejects(parsed: ParsedLines) -> list[DataFrame]:
    """The reject lines of the ratings and title files."""
    return [rejects_of(p) for p in (parsed.ratings, parsed.items) if p is not None]


def latest_item_metadata(items_parsed: DataFrame) -> DataFrame:
    """``item_id, title, year`` from the last line naming each item in the titles files (read on the
    driver, so few: one aggregate)."""
    return keep_latest(items_parsed.where(F.col("kind") == KIND_DATA), keys=[S.ITEM_ID_COL],
                       order=["source", "line"], value_cols=[S.TITLE_COL, S.YEAR_COL], few=True).select(
        S.ITEM_ID_COL, S.TITLE_COL, S.YEAR_COL)


def latest_review_titles(parsed: DataFrame) -> DataFrame:
    """``item_id, title, year`` (null) from the latest review of each item (Amazon TSV)."""
    return keep_latest(parsed.where(F.col("kind") == KIND_DATA), keys=[S.ITEM_ID_COL], order=LATEST_ORDER,
                       value_cols=[S.TITLE_COL]).select(
        S.ITEM_ID_COL, S.TITLE_COL, F.lit(None).cast(T.IntegerType()).alias(S.YEAR_COL))


def items_with_metadata(latest: DataFrame, item_rows: DataFrame | None, *, numeric: bool,
                        local: bool = False) -> DataFrame:
    """Dense ids of every item rated or described, with its title and year (null when unknown).

    Returns ``item_idx, item_id`` and, from ``item_rows``, ``title, year``."""
    item_ids = latest.select(S.ITEM_ID_COL)
    if item_rows is not None:
        item_ids = item_ids.unionByName(item_rows.select(S.ITEM_ID_COL))
    items = index_ids(item_ids, col_id=S.ITEM_ID_COL, col_idx=S.ITEM_COL, numeric=numeric, local=local)
    if item_rows is not None:
        return items.join(keyed_like(item_rows, items, S.ITEM_ID_COL), on=S.ITEM_ID_COL, how="left")
    return (items.withColumn(S.TITLE_COL, F.lit(None).cast(T.StringType()))
            .withColumn(S.YEAR_COL, F.lit(None).cast(T.IntegerType())))


def id_maps(users: DataFrame, items: DataFrame, *, like: DataFrame) -> tuple[DataFrame, DataFrame]:
    """The ``user_id, user_idx`` and ``item_id, item_idx`` maps of the users and items tables, their
    ids cast to ``like``'s id types (see :func:`batchml.indexing.keyed_like`)."""
    return (keyed_like(users.select(S.USER_ID_COL, S.USER_COL), like, S.USER_ID_COL),
            keyed_like(items.select(S.ITEM_ID_COL, S.ITEM_COL), like, S.ITEM_ID_COL))


def with_indices(df: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Replace ``user_id``/``item_id`` by dense ``user_idx``/``item_idx`` (inner joins: every id is in
    the maps by construction)."""
    users, items = id_maps(users, items, like=df)
    return (
        df.join(maybe_broadcast(users), on=S.USER_ID_COL, how="inner")
        .join(maybe_broadcast(items), on=S.ITEM_ID_COL, how="inner")
    )


def map_pairs(parsed: DataFrame, users: DataFrame, items: DataFrame, raw_max: int):
    """Extra pair tables (probe/qualifying) to indices; pairs whose user or item is not in the
    ratings are rejects.

    Returns ``(pairs, unknown_rejects)``: pairs with ``user_idx, item_idx, ts``; rejects with
    ``source, line, raw, reason``."""
    data = parsed.where(F.col("kind") == KIND_DATA)
    users, items = id_maps(users, items, like=data)
    joined = (data.join(users, on=S.USER_ID_COL, how="left")
              .join(items, on=S.ITEM_ID_COL, how="left"))
    pairs = joined.where(F.col(S.USER_COL).isNotNull() & F.col(S.ITEM_COL).isNotNull()).select(
        S.USER_COL, S.ITEM_COL, S.TS_COL)
    raw = F.concat_ws(",", F.concat(F.col(S.ITEM_ID_COL).cast(T.StringType()), F.lit(":")),
                      F.col(S.USER_ID_COL).cast(T.StringType()),
                      F.date_format(S.TS_COL, "yyyy-MM-dd"))
    unknown = joined.where(F.col(S.USER_COL).isNull() | F.col(S.ITEM_COL).isNull()).select(
        "source", F.col("line").cast(T.LongType()).alias("line"), F.substring(raw, 1, raw_max).alias("raw"),
        F.when(F.col(S.USER_COL).isNull(), F.lit(R.UNKNOWN_USER)).otherwise(F.lit(R.UNKNOWN_ITEM)).alias("reason"))
    return pairs, unknown
