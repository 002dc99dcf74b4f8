"""Ingest: raw dumps -> one canonical dataset dir (ratings, users, items, rejects, [probe,
qualifying], _stats.json).  Every line read is accounted for: header, accepted, blank or rejected.

The dataset is written atomically: a temporary sibling is filled (parsed lines are staged there as
Parquet first, so the text is parsed once) and moved into place only when complete.
"""
from __future__ import annotations

import gzip
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Sequence

from pyarrow import fs as pafs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml import schema as S
from batchml.cli import JobError
from batchml.config import Config
from batchml.indexing import index_ids, keep_latest
from batchml.io import netflix as NF
from batchml.io import reasons as R
from batchml.io.atomic import _filesystem, atomic_dir, write_json
from batchml.logs import stage
from batchml.stats import dataset_stats, line_counts, reconcile

LOG = logging.getLogger("batchml.ingest")


@dataclass
class NetflixFiles:
    """The files of a Netflix Prize dump found under an input directory."""

    root: str
    ratings: list[str]
    titles: str | None = None
    probe: str | None = None
    qualifying: str | None = None
    layout: str = "combined"


def _list(root: str, pattern_dir: str = "") -> list[pafs.FileInfo]:
    fs, base = _filesystem(root)
    sel = pafs.FileSelector(base.rstrip("/") + ("/" + pattern_dir if pattern_dir else ""),
                            allow_not_found=True)
    return [f for f in fs.get_file_info(sel) if f.type == pafs.FileType.File]


def _uri_of(root: str, info: pafs.FileInfo) -> str:
    if "://" in root:
        return root.split("://", 1)[0] + "://" + info.path
    return info.path


def discover_netflix(root: str) -> NetflixFiles:
    """Find ``combined_data_*.txt`` (or ``training_set/mv_*.txt``), ``movie_titles.{csv,txt}``,
    ``probe.txt`` and ``qualifying.txt`` (each optionally ``.gz``) under ``root``."""
    import re
    top = _list(root)
    names = {PurePosixPath(f.path).name: f for f in top}
    combined = sorted((f for n, f in names.items() if re.fullmatch(r"combined_data_\d+\.txt(\.gz)?", n)),
                      key=lambda f: f.path)
    training = sorted((f for f in _list(root, "training_set")
                       if re.fullmatch(r"mv_\d+\.txt(\.gz)?", PurePosixPath(f.path).name)),
                      key=lambda f: f.path)
    if combined and training:
        raise JobError(f"{root} has both combined_data_*.txt and training_set/mv_*.txt: pass one layout")
    if not combined and not training:
        raise JobError(f"{root} has no Netflix ratings files (expected combined_data_*.txt or "
                       "training_set/mv_*.txt, optionally .gz)")

    def pick(*candidates: str) -> str | None:
        for c in candidates:
            for suffix in ("", ".gz"):
                if c + suffix in names:
                    return _uri_of(root, names[c + suffix])
        return None

    return NetflixFiles(
        root=root,
        ratings=[_uri_of(root, f) for f in (combined or training)],
        titles=pick("movie_titles.csv", "movie_titles.txt"),
        probe=pick("probe.txt"),
        qualifying=pick("qualifying.txt"),
        layout="combined" if combined else "training_set",
    )


def _head_lines(path: str, n: int = 50, nbytes: int = 16384) -> list[str]:
    fs, p = _filesystem(path)
    with fs.open_input_stream(p) as raw:
        data = raw.read(nbytes if not path.endswith(".gz") else 1 << 20)
    if path.endswith(".gz"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read1(nbytes) if hasattr(gz, "read1") else gz.read(nbytes)
        except (OSError, EOFError) as exc:
            raise JobError(f"{path}: not a readable gzip file ({exc})") from None
    text = data.decode("utf-8", errors="replace")
    lines = [ln.strip() for ln in text.split("\n")[:-1] if ln.strip()] or [text.strip()]
    return lines[:n]


def check_netflix_format(paths: Sequence[str], max_files: int = 32) -> None:
    """Fail fast when a file is not in the Netflix raw format at all (not merely a few bad lines)."""
    import re
    header, data = re.compile(r"^\d+:$"), re.compile(r"^\d+,\d,\d{4}-\d\d-\d\d$")
    step = max(1, len(paths) // max_files)
    for path in list(paths)[::step][:max_files]:
        lines = _head_lines(path)
        good = sum(bool(header.match(x) or data.match(x)) for x in lines)
        if not lines or not any(header.match(x) for x in lines[:20]) or good < 0.8 * len(lines):
            first = lines[0][:120] if lines else "<empty file>"
            raise JobError(
                f"{path} is not a Netflix Prize ratings file: expected 'MovieID:' header lines followed "
                f"by 'CustomerID,Rating,YYYY-MM-DD' lines; its first line is {first!r}")


def source_name(root: str):
    """A column expression turning a scan's file URI into the path relative to ``root``."""
    import os
    base = root if "://" in root else os.path.abspath(root)
    base = base.rstrip("/") + "/"
    plain = F.regexp_replace(F.col("source"), r"^file:(//)?", "")
    return F.when(F.startswith(plain, F.lit(base)), F.substring(plain, len(base) + 1, 100000)).otherwise(plain)


def _stage_parquet(df: DataFrame, path: str) -> DataFrame:
    df.write.mode("overwrite").parquet(path)
    return df.sparkSession.read.parquet(path)


def _rejects(df: DataFrame) -> DataFrame:
    return df.where(F.col("kind") == NF.KIND_REJECT).select(
        "source", F.col("line").cast(T.LongType()).alias("line"), "raw", "reason")


def check_reject_fraction(counts: dict, limit: float, examples: list) -> None:
    """Raise :class:`JobError` when rejected / (accepted + rejected) exceeds ``limit``."""
    accepted = sum(c["accepted"] for c in counts.values())
    rejected = sum(c["rejected"] for c in counts.values())
    total = accepted + rejected
    frac = rejected / total if total else 0.0
    if total == 0:
        raise JobError("no rating lines found in the input")
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


def ingest_netflix(spark: SparkSession, cfg: Config, input_dir: str, output: str,
                   remove_probe: bool | None = None) -> IngestResult:
    """Ingest a Netflix Prize dump (see :mod:`batchml.io.netflix`) into a dataset dir."""
    t0 = time.perf_counter()
    timings: dict = {}
    remove_probe = cfg.ingest.remove_probe if remove_probe is None else remove_probe
    raw_max = cfg.ingest.raw_max_chars
    files = discover_netflix(input_dir)
    LOG.info("Netflix dump (%s layout): %d ratings files, titles=%s, probe=%s, qualifying=%s",
             files.layout, len(files.ratings), bool(files.titles), bool(files.probe), bool(files.qualifying))
    check_netflix_format(files.ratings)
    name = source_name(input_dir)

    with atomic_dir(output) as tmp:
        staging = f"{tmp}/_staging"
        with stage("parse ratings files", spark, timings) as st:
            parsed = NF.read_netflix_blocks(spark, files.ratings, NF.RATING_FIELDS, raw_max)
            parsed = _stage_parquet(parsed.withColumn("source", name), f"{staging}/ratings")
            counts = line_counts(parsed, "ratings")
            st.set_rows(sum(c["lines"] for c in counts.values()))
        examples = [r.asDict() for r in _rejects(parsed).orderBy("source", "line").limit(3).collect()]
        check_reject_fraction(counts, cfg.ingest.max_reject_fraction, examples)

        with stage("titles", spark, timings) as st:
            if files.titles:
                titles = _stage_parquet(NF.read_movie_titles(spark, files.titles, raw_max_chars=raw_max)
                                        .withColumn("source", name), f"{staging}/titles")
                counts.update(line_counts(titles, "titles"))
                title_rows = (titles.where(F.col("kind") == NF.KIND_DATA)
                              .select("movie_id", "title", "year").dropDuplicates(["movie_id"]))
            else:
                titles, title_rows = None, None
            st.set_rows(title_rows.count() if title_rows is not None else 0)

        with stage("de-duplicate and index ids", spark, timings) as st:
            accepted = parsed.where(F.col("kind") == NF.KIND_DATA)
            latest = keep_latest(accepted, keys=["user_id", "movie_id"], order=["date", "source", "line"],
                                 value_cols=["rating"])
            latest = _stage_parquet(latest, f"{staging}/latest")
            users = index_ids(latest, col_id="user_id", col_idx=S.USER_COL, numeric=True)
            users.write.parquet(f"{tmp}/{S.USERS}")
            users = spark.read.parquet(f"{tmp}/{S.USERS}")
            movie_ids = latest.select("movie_id")
            if title_rows is not None:
                movie_ids = movie_ids.unionByName(title_rows.select("movie_id"))
            items = index_ids(movie_ids, col_id="movie_id", col_idx=S.ITEM_COL, numeric=True)
            items = items.withColumnRenamed("movie_id", S.ITEM_ID_COL)
            if title_rows is not None:
                items = items.join(
                    title_rows.select(F.col("movie_id").cast("string").alias(S.ITEM_ID_COL),
                                      F.col("title").alias(S.TITLE_COL), F.col("year").alias(S.YEAR_COL)),
                    on=S.ITEM_ID_COL, how="left")
            else:
                items = items.withColumn(S.TITLE_COL, F.lit(None).cast("string")).withColumn(
                    S.YEAR_COL, F.lit(None).cast("int"))
            items.select(*[f.name for f in S.ITEMS_SCHEMA]).write.parquet(f"{tmp}/{S.ITEMS}")
            items = spark.read.parquet(f"{tmp}/{S.ITEMS}")
            st.set_rows(latest.count())

        ratings = with_indices(latest, users, items).select(
            S.USER_COL, S.ITEM_COL, F.col("rating").cast(T.FloatType()).alias(S.RATING_COL),
            F.col("date").cast(T.TimestampType()).alias(S.TS_COL))

        rejects = [_rejects(parsed)] + ([_rejects(titles)] if titles is not None else [])
        extra = {}
        for table, path, fields in ((S.PROBE, files.probe, NF.PROBE_FIELDS),
                                    (S.QUALIFYING, files.qualifying, NF.QUALIFYING_FIELDS)):
            if not path:
                continue
            with stage(f"parse {table}", spark, timings) as st:
                pdf = _stage_parquet(NF.read_netflix_blocks(spark, [path], fields, raw_max)
                                     .withColumn("source", name), f"{staging}/{table}")
                pairs, unknown = map_pairs(pdf, users, items, raw_max)
                pairs.write.parquet(f"{tmp}/{table}")
                pairs = spark.read.parquet(f"{tmp}/{table}")
                rejects += [_rejects(pdf), unknown]
                extra[table] = {"pairs": st.set_rows(pairs.count()), "unknown": unknown.count()}
                counts.update(line_counts(pdf, table, extra_rejects=unknown))
        removed = 0
        if remove_probe and files.probe:
            probe = spark.read.parquet(f"{tmp}/{S.PROBE}").select(S.USER_COL, S.ITEM_COL)
            removed = ratings.join(probe, on=[S.USER_COL, S.ITEM_COL], how="left_semi").count()
            ratings = ratings.join(probe, on=[S.USER_COL, S.ITEM_COL], how="left_anti")

        with stage("write ratings", spark, timings) as st:
            ratings.write.parquet(f"{tmp}/{S.RATINGS}")
            ratings = spark.read.parquet(f"{tmp}/{S.RATINGS}")
            st.set_rows(ratings.count())
        with stage("write rejects", spark, timings) as st:
            union = rejects[0]
            for r in rejects[1:]:
                union = union.unionByName(r)
            union.write.parquet(f"{tmp}/{S.REJECTS}")
            st.set_rows(spark.read.parquet(f"{tmp}/{S.REJECTS}").count())

        with stage("statistics", spark, timings):
            dup = latest.agg(F.sum(F.col("n_copies") - 1).alias("d")).first()["d"] or 0
            stats = dataset_stats(ratings, users, items)
            stats.update({
                "format": "netflix", "layout": files.layout, "input": input_dir,
                "files": counts, "duplicates_dropped": int(dup),
                "probe_removed_from_ratings": bool(remove_probe and files.probe),
                **extra,
            })
            stats["reconcile"] = reconcile(counts, duplicates=int(dup), removed=removed,
                                           ratings_written=stats["ratings"])
        if not (stats["reconcile"]["all_files_reconcile"] and stats["reconcile"]["ratings_reconcile"]):
            raise JobError(f"internal error: counts do not reconcile: {stats['reconcile']}")
        _filesystem_delete(staging)
        timings["total"] = round(time.perf_counter() - t0, 3)
        stats["timings_s"] = timings
        write_json(f"{tmp}/{S.STATS_FILE}", stats)
    return IngestResult(output, stats, timings)


def _filesystem_delete(path: str) -> None:
    from batchml.io.atomic import remove_tree
    remove_tree(path)


def with_indices(df: DataFrame, users: DataFrame, items: DataFrame, *, col_user_id: str = "user_id",
                 col_item_id: str = "movie_id") -> DataFrame:
    """Replace source ids by dense indices (inner joins: every id is in the maps by construction).

    Adds columns ``user_idx``, ``item_idx``."""
    u = users.select(F.col(S.USER_ID_COL).alias("_uid"), S.USER_COL)
    i = items.select(F.col(S.ITEM_ID_COL).alias("_iid"), S.ITEM_COL)
    return (
        df.join(u, on=F.col(col_user_id).cast("string") == F.col("_uid"), how="inner")
        .join(i, on=F.col(col_item_id).cast("string") == F.col("_iid"), how="inner")
        .drop("_uid", "_iid")
    )


def map_pairs(parsed: DataFrame, users: DataFrame, items: DataFrame, raw_max: int):
    """Probe/qualifying pairs to indices; pairs whose user or movie is not in the ratings are rejects.

    Returns ``(pairs, unknown_rejects)``: pairs with ``user_idx, item_idx, ts``; rejects with
    ``source, line, raw, reason``."""
    data = parsed.where(F.col("kind") == NF.KIND_DATA)
    u = users.select(F.col(S.USER_ID_COL).alias("_uid"), S.USER_COL)
    i = items.select(F.col(S.ITEM_ID_COL).alias("_iid"), S.ITEM_COL)
    joined = (data.join(u, on=F.col("user_id").cast("string") == F.col("_uid"), how="left")
              .join(i, on=F.col("movie_id").cast("string") == F.col("_iid"), how="left"))
    pairs = joined.where(F.col(S.USER_COL).isNotNull() & F.col(S.ITEM_COL).isNotNull()).select(
        S.USER_COL, S.ITEM_COL, F.col("date").cast(T.TimestampType()).alias(S.TS_COL))
    raw = F.concat_ws(",", F.concat(F.col("movie_id").cast("string"), F.lit(":")),
                      F.col("user_id").cast("string"), F.col("date").cast("string"))
    unknown = joined.where(F.col(S.USER_COL).isNull() | F.col(S.ITEM_COL).isNull()).select(
        "source", F.col("line").cast(T.LongType()).alias("line"), F.substring(raw, 1, raw_max).alias("raw"),
        F.when(F.col(S.USER_COL).isNull(), F.lit(R.UNKNOWN_USER)).otherwise(F.lit(R.UNKNOWN_ITEM)).alias("reason"))
    return pairs, unknown
