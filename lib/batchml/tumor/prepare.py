"""Image folders -> de-duplicated, split, decoded Parquet shards (``images/split=train|test``),
``rejects`` and ``_stats.json``.

Every file under a class folder is accounted for: ``files read = accepted + duplicates + rejected``.
Files are de-duplicated by the sha256 of their bytes *before* the split, and the split is a
deterministic, stratified function of the hash, so no image (nor a byte-identical copy) sits on both
sides.  The output directory is written atomically.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession, Window as W
from pyspark.sql import functions as F, types as T

from batchml.errors import JobError
from batchml.config import TumorSettings
from batchml.io.atomic import atomic_dir, remove_tree, write_json
from batchml.logs import stage
from batchml.tumor import schema as S
from batchml.tumor.images import decode_batches

LOG = logging.getLogger("batchml.tumor")

CLASS_COL = "class_folder"
SHARD_ROWS = 2000  # images per Parquet file (about 120 MB at 175 px)
REASON_CONFLICT = "same bytes under different classes"
# YAML 1.1 reads unquoted yes/no keys as booleans; accept what they become.
_YAML_BOOL_KEYS = {"true": "yes", "false": "no"}


def class_labels(settings: TumorSettings) -> dict[str, int]:
    """Lower-case class folder name -> label, from ``tumor.classes``."""
    out = {}
    for k, v in settings.classes.items():
        key = k.lower()
        out[_YAML_BOOL_KEYS.get(key, key)] = int(v)
    return out


def relative_path(root: str):
    """Column: a ``binaryFile`` path made relative to ``root``."""
    base = root if "://" in root else os.path.abspath(root)
    base = base.rstrip("/") + "/"
    plain = F.regexp_replace(F.col("path"), r"^file:(//)?", "")
    return (F.when(F.startswith(plain, F.lit(base)), F.substring(plain, len(base) + 1, 1 << 20))
            .otherwise(plain))


def read_files(spark: SparkSession, root: str) -> DataFrame:
    """Every file under ``root`` (recursively): ``path`` (relative), ``class_folder``, ``length``,
    ``hash`` (sha256 hex of the bytes), ``content``."""
    return (spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(root)
            .select(relative_path(root).alias(S.PATH_COL), "length", "content")
            .withColumn(CLASS_COL, F.when(F.instr(S.PATH_COL, "/") > 0,
                                          F.substring_index(S.PATH_COL, "/", 1)))
            .withColumn(S.HASH_COL, F.sha2("content", 256)))


def with_labels(files_df: DataFrame, labels: dict[str, int]) -> DataFrame:
    """Add ``label`` (null for files outside a known class folder)."""
    mapping = F.create_map(*[x for k, v in sorted(labels.items()) for x in (F.lit(k), F.lit(v))])
    return files_df.withColumn(S.LABEL_COL, mapping[F.lower(F.col(CLASS_COL))].cast(T.IntegerType()))


def with_dedup(files_df: DataFrame) -> DataFrame:
    """Add ``keep`` (the first path of each hash), ``n_labels`` (distinct labels sharing the hash).

    Output columns: ``path, label, hash, keep, n_labels`` (one row per labelled file).
    """
    by_hash = W.partitionBy(S.HASH_COL)
    first = W.partitionBy(S.HASH_COL).orderBy(S.PATH_COL)
    return (files_df.select(S.PATH_COL, S.LABEL_COL, S.HASH_COL)
            .withColumn("n_labels", F.size(F.collect_set(S.LABEL_COL).over(by_hash)))
            .withColumn("keep", F.row_number().over(first) == 1))


def with_split(unique_df: DataFrame, test_fraction: float, seed: int) -> DataFrame:
    """Stratified deterministic split of distinct images: per label, order by a seeded hash of the
    content hash and put the first ``round(n * test_fraction)`` into ``test``.

    Output columns: the input columns plus ``split``.
    """
    key = F.xxhash64(F.col(S.HASH_COL), F.lit(seed))
    ordered = W.partitionBy(S.LABEL_COL).orderBy(key, S.HASH_COL)
    per_label = W.partitionBy(S.LABEL_COL)
    n_test = F.round(F.count(F.lit(1)).over(per_label) * F.lit(test_fraction))
    return (unique_df.withColumn("_rank", F.row_number().over(ordered))
            .withColumn(S.SPLIT_COL, F.when(F.col("_rank") <= n_test, S.TEST).otherwise(S.TRAIN))
            .drop("_rank"))


@dataclass
class PrepareResult:
    output: str
    stats: dict
    timings: dict = field(default_factory=dict)


def _size_summary(df: DataFrame) -> dict:
    side = F.greatest(S.WIDTH_COL, S.HEIGHT_COL)
    r = df.agg(F.min(S.WIDTH_COL).alias("min_w"), F.max(S.WIDTH_COL).alias("max_w"),
               F.min(S.HEIGHT_COL).alias("min_h"), F.max(S.HEIGHT_COL).alias("max_h"),
               F.percentile_approx(side, [0.1, 0.5, 0.9], 10000).alias("q")).first()
    edges = [0, 128, 256, 512, 1024, 2048]
    bucket = F.when(side >= edges[-1], F.lit(f">={edges[-1]}"))
    for lo, hi in reversed(list(zip(edges, edges[1:]))):
        bucket = F.when((side >= lo) & (side < hi), F.lit(f"{lo}-{hi - 1}")).otherwise(bucket)
    hist = {row["b"]: int(row["count"]) for row in df.groupBy(bucket.alias("b")).count().collect()}
    return {"width": {"min": r["min_w"], "max": r["max_w"]},
            "height": {"min": r["min_h"], "max": r["max_h"]},
            "longest_side_quantiles": dict(zip(["p10", "p50", "p90"], r["q"] or [])),
            "longest_side_histogram": {k: hist[k] for k in sorted(hist, key=lambda s: int(s.strip(">=").split("-")[0]))}}


def prepare_images(spark: SparkSession, settings: TumorSettings, input_dir: str, output: str,
                   size: int | None = None, test_fraction: float | None = None) -> PrepareResult:
    """Read class folders under ``input_dir``, write image shards, rejects and stats to ``output``.

    Parameters
    ----------
    spark : SparkSession
    settings : TumorSettings
        ``classes``, ``size``, ``test_fraction``, ``seed``, ``raw_max_chars``.
    input_dir, output : str
        Input root (class folders below it) and the dataset directory to (re)place atomically.
    size, test_fraction : optional
        Override the settings.

    Returns
    -------
    PrepareResult
        With the ``_stats.json`` content.
    """
    t0 = time.perf_counter()
    size = size or settings.size
    test_fraction = settings.test_fraction if test_fraction is None else test_fraction
    if not 0.0 < test_fraction < 1.0:
        raise JobError(f"test fraction must be in (0, 1), got {test_fraction}")
    labels = class_labels(settings)
    timings: dict = {}
    raw_max = settings.raw_max_chars

    with atomic_dir(output) as tmp:
        staging = f"{tmp}/_staging"
        with stage("list and hash files", spark, timings) as st:
            files = with_labels(read_files(spark, input_dir), labels)
            index = files.select(S.PATH_COL, CLASS_COL, S.LABEL_COL, S.HASH_COL, "length")
            index.write.parquet(f"{staging}/index")
            index = spark.read.parquet(f"{staging}/index")
            n_all = st.set_rows(index.count())
        if n_all == 0:
            raise JobError(f"no files under {input_dir}")
        labelled = index.where(F.col(S.LABEL_COL).isNotNull())
        unlabelled = {r[CLASS_COL] or "": int(r["count"])
                      for r in index.where(F.col(S.LABEL_COL).isNull()).groupBy(CLASS_COL).count().collect()}
        if unlabelled:
            LOG.info("files outside the class folders %s, skipped: %s", sorted(labels), unlabelled)

        with stage("de-duplicate", spark, timings) as st:
            dedup = with_dedup(labelled)
            dedup.write.parquet(f"{staging}/dedup")
            dedup = spark.read.parquet(f"{staging}/dedup")
            unique = dedup.where(F.col("keep") & (F.col("n_labels") == 1)).select(
                S.PATH_COL, S.LABEL_COL, S.HASH_COL)
            st.set_rows(unique.count())

        with stage("decode images", spark, timings) as st:
            content = read_files(spark, input_dir).select(S.PATH_COL, "content")
            to_decode = unique.join(content, on=S.PATH_COL, how="inner")
            out_schema = T.StructType(
                [f for f in to_decode.schema.fields if f.name != "content"]
                + [T.StructField(S.WIDTH_COL, T.IntegerType()), T.StructField(S.HEIGHT_COL, T.IntegerType()),
                   T.StructField(S.MODE_COL, T.StringType()), T.StructField(S.FORMAT_COL, T.StringType()),
                   T.StructField(S.SIZE_COL, T.IntegerType()),
                   T.StructField(S.PIXELS_COL, T.ArrayType(T.FloatType(), False)),
                   T.StructField(S.ERROR_COL, T.StringType()), T.StructField("raw", T.StringType())])
            decoded = to_decode.mapInPandas(decode_batches(size, raw_max), out_schema)
            decoded.write.parquet(f"{staging}/decoded")
            decoded = spark.read.parquet(f"{staging}/decoded")
            st.set_rows(decoded.count())

        with stage("split", spark, timings) as st:
            ok = decoded.where(F.col(S.ERROR_COL).isNull())
            split = with_split(ok.select(S.PATH_COL, S.LABEL_COL, S.HASH_COL), test_fraction, settings.seed)
            split.select(S.HASH_COL, S.SPLIT_COL).write.parquet(f"{staging}/split")
            split = spark.read.parquet(f"{staging}/split")
            st.set_rows(split.count())

        with stage("write shards and rejects", spark, timings) as st:
            images = (ok.join(split, on=S.HASH_COL, how="inner")
                      .select(S.PATH_COL, S.LABEL_COL, S.HASH_COL, S.WIDTH_COL, S.HEIGHT_COL, S.MODE_COL,
                              S.FORMAT_COL, S.SIZE_COL, S.PIXELS_COL, S.SPLIT_COL))
            n_shards = max(1, -(-split.count() // SHARD_ROWS))
            shard = F.pmod(F.xxhash64(S.HASH_COL), F.lit(n_shards))
            (images.repartition(2 * n_shards, S.SPLIT_COL, shard).sortWithinPartitions(S.HASH_COL)
             .write.partitionBy(S.SPLIT_COL).parquet(f"{tmp}/{S.IMAGES}"))
            decode_rejects = decoded.where(F.col(S.ERROR_COL).isNotNull()).select(
                F.col(S.PATH_COL).alias("source"), F.lit(None).cast(T.LongType()).alias("line"),
                F.col("raw"), F.substring_index(S.ERROR_COL, ":", 1).alias("reason"))
            conflict_rejects = dedup.where(F.col("n_labels") > 1).select(
                F.col(S.PATH_COL).alias("source"), F.lit(None).cast(T.LongType()).alias("line"),
                F.concat(F.lit("sha256 "), F.col(S.HASH_COL)).alias("raw"), F.lit(REASON_CONFLICT).alias("reason"))
            rejects = decode_rejects.unionByName(conflict_rejects)
            rejects.coalesce(1).write.parquet(f"{tmp}/{S.REJECTS}")
            images = spark.read.parquet(f"{tmp}/{S.IMAGES}")
            rejects = spark.read.parquet(f"{tmp}/{S.REJECTS}")
            st.set_rows(images.count())

        with stage("stats", spark, timings):
            stats = _stats(labelled, dedup, images, rejects, labels, unlabelled, size, test_fraction,
                           settings.seed, input_dir)
        remove_tree(staging)
        timings["total"] = round(time.perf_counter() - t0, 3)
        stats["timings_s"] = timings
        write_json(f"{tmp}/{S.STATS_FILE}", stats)
        if not stats["reconcile"]["ok"]:
            raise JobError(f"counts do not reconcile: {stats['reconcile']}")
        if stats["accepted"] == 0:
            raise JobError(f"no decodable images under the class folders {sorted(labels)} of {input_dir}")
    return PrepareResult(output=output, stats=stats, timings=timings)


def _stats(labelled: DataFrame, dedup: DataFrame, images: DataFrame, rejects: DataFrame,
           labels: dict, unlabelled: dict, size: int, test_fraction: float, seed: int,
           input_dir: str) -> dict:
    read = {int(r[S.LABEL_COL]): int(r["count"]) for r in labelled.groupBy(S.LABEL_COL).count().collect()}
    dups = {int(r[S.LABEL_COL]): int(r["count"]) for r in
            dedup.where(~F.col("keep") & (F.col("n_labels") == 1)).groupBy(S.LABEL_COL).count().collect()}
    per = {(int(r[S.LABEL_COL]), r[S.SPLIT_COL]): int(r["count"])
           for r in images.groupBy(S.LABEL_COL, S.SPLIT_COL).count().collect()}
    by_reason = {r["reason"]: int(r["count"]) for r in rejects.groupBy("reason").count().collect()}
    n_read, n_acc, n_dup, n_rej = sum(read.values()), sum(per.values()), sum(dups.values()), sum(by_reason.values())
    by_class = {}
    for label in sorted(set(labels.values())):
        by_class[str(label)] = {
            "folders": sorted(k for k, v in labels.items() if v == label),
            "files_read": read.get(label, 0), "duplicates_removed": dups.get(label, 0),
            "train": per.get((label, S.TRAIN), 0), "test": per.get((label, S.TEST), 0)}
    mode_counts = {r[S.MODE_COL]: int(r["count"]) for r in images.groupBy(S.MODE_COL).count().collect()}
    fmt_counts = {r[S.FORMAT_COL]: int(r["count"]) for r in images.groupBy(S.FORMAT_COL).count().collect()}
    return {
        "input": input_dir, "size": size, "test_fraction": test_fraction, "seed": seed,
        "files_read": n_read, "accepted": n_acc, "duplicates_removed": n_dup, "rejected": n_rej,
        "rejected_by_reason": by_reason,
        "skipped_outside_class_folders": unlabelled,
        "by_class": by_class,
        "by_split": {s: sum(v for (lb, sp), v in per.items() if sp == s) for s in (S.TRAIN, S.TEST)},
        "modes": mode_counts, "formats": fmt_counts,
        "original_size": _size_summary(images) if n_acc else {},
        "reconcile": {"ok": n_read == n_acc + n_dup + n_rej,
                      "files_read": n_read, "accepted_plus_duplicates_plus_rejected": n_acc + n_dup + n_rej},
    }
