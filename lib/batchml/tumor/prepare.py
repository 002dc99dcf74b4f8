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

from batchml.config import TumorSettings
from batchml.errors import InputError, JobError
from batchml.io.atomic import atomic_dir, remove_tree, write_json
from batchml.logs import stage
from batchml.schema import REJECTS, STATS_FILE
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


def prepare_images(spark: SparkSession, settings: TumorSettings, input_dir: str, output: str) -> PrepareResult:
    """Read class folders under ``input_dir``, write image shards, rejects and stats to ``output``.

    Parameters
    ----------
    spark : SparkSession
    settings : TumorSettings
        ``classes``, ``size``, ``test_fraction``, ``seed``, ``raw_max_chars``.
    input_dir, output : str
        Input root (class folders below it) and the dataset directory to (re)place atomically.

    Returns
    -------
    PrepareResult
        With the ``_stats.json`` content.
    """
    t0 = time.perf_counter()
    labels = class_labels(settings)
    timings: dict = {}
    with atomic_dir(output) as tmp:
        staging = f"{tmp}/_staging"
        index = _list_files(spark, input_dir, labels, f"{staging}/index", timings)
        labelled = index.where(F.col(S.LABEL_COL).isNotNull())
        unlabelled = _unlabelled_counts(index, labels)
        dedup, unique = _deduplicate(spark, labelled, f"{staging}/dedup", timings)
        decoded = _decode(spark, input_dir, unique, settings, f"{staging}/decoded", timings)
        ok = decoded.where(F.col(S.ERROR_COL).isNull())
        split = _split(spark, ok, settings, f"{staging}/split", timings)
        images, rejects = _write_shards_and_rejects(spark, ok, split, rejects_of(decoded, dedup), tmp, timings)
        with stage("stats", spark, timings):
            stats = _stats(labelled, dedup, images, rejects, labels, unlabelled, settings, input_dir)
        remove_tree(staging)
        timings["total"] = round(time.perf_counter() - t0, 3)
        stats["timings_s"] = timings
        write_json(f"{tmp}/{STATS_FILE}", stats)
        _check_outcome(stats, labels, input_dir)
    return PrepareResult(output=output, stats=stats, timings=timings)


def _staged(spark: SparkSession, df: DataFrame, path: str) -> DataFrame:
    """Write ``df`` to Parquet at ``path`` and read it back (cuts the lineage; later stages reuse it)."""
    df.write.parquet(path)
    return spark.read.parquet(path)


def _list_files(spark: SparkSession, input_dir: str, labels: dict[str, int], path: str,
                timings: dict) -> DataFrame:
    """Stage: the index of every file under ``input_dir`` (``path, class_folder, label, hash,
    length``), staged at ``path``; :class:`InputError` when there is no file at all."""
    with stage("list and hash files", spark, timings) as st:
        files = with_labels(read_files(spark, input_dir), labels)
        index = _staged(spark, files.select(S.PATH_COL, CLASS_COL, S.LABEL_COL, S.HASH_COL, "length"), path)
        n_all = st.set_rows(index.count())
    if n_all == 0:
        raise InputError(f"no files under {input_dir}")
    return index


def _unlabelled_counts(index: DataFrame, labels: dict[str, int]) -> dict[str, int]:
    """Files outside the class folders, by top folder (``""``: directly under the input root)."""
    unlabelled = {r[CLASS_COL] or "": int(r["count"])
                  for r in index.where(F.col(S.LABEL_COL).isNull()).groupBy(CLASS_COL).count().collect()}
    if unlabelled:
        LOG.info("files outside the class folders %s, skipped: %s", sorted(labels), unlabelled)
    return unlabelled


def _deduplicate(spark: SparkSession, labelled: DataFrame, path: str,
                 timings: dict) -> tuple[DataFrame, DataFrame]:
    """Stage: ``(dedup, unique)``: every labelled file with ``keep``/``n_labels`` (staged at
    ``path``), and the distinct images whose bytes sit under one class only."""
    with stage("de-duplicate", spark, timings) as st:
        dedup = _staged(spark, with_dedup(labelled), path)
        unique = dedup.where(F.col("keep") & (F.col("n_labels") == 1)).select(
            S.PATH_COL, S.LABEL_COL, S.HASH_COL)
        st.set_rows(unique.count())
    return dedup, unique


def _decoded_schema(to_decode: DataFrame) -> T.StructType:
    """Schema of :func:`batchml.tumor.images.decode_batches`' output for ``to_decode``'s rows."""
    return T.StructType(
        [f for f in to_decode.schema.fields if f.name != "content"]
        + [T.StructField(S.WIDTH_COL, T.IntegerType()), T.StructField(S.HEIGHT_COL, T.IntegerType()),
           T.StructField(S.MODE_COL, T.StringType()), T.StructField(S.FORMAT_COL, T.StringType()),
           T.StructField(S.SIZE_COL, T.IntegerType()),
           T.StructField(S.PIXELS_COL, T.ArrayType(T.FloatType(), False)),
           T.StructField(S.ERROR_COL, T.StringType()), T.StructField("raw", T.StringType())])


def _decode(spark: SparkSession, input_dir: str, unique: DataFrame, settings: TumorSettings, path: str,
            timings: dict) -> DataFrame:
    """Stage: decode the distinct images to ``size`` x ``size`` pixels (``error`` set where a file
    cannot be decoded), staged at ``path``."""
    with stage("decode images", spark, timings) as st:
        content = read_files(spark, input_dir).select(S.PATH_COL, "content")
        to_decode = unique.join(content, on=S.PATH_COL, how="inner")
        decoded = to_decode.mapInPandas(decode_batches(settings.size, settings.raw_max_chars),
                                        _decoded_schema(to_decode))
        decoded = _staged(spark, decoded, path)
        st.set_rows(decoded.count())
    return decoded


def _split(spark: SparkSession, ok: DataFrame, settings: TumorSettings, path: str, timings: dict) -> DataFrame:
    """Stage: ``hash, split`` of the decodable images, staged at ``path``."""
    with stage("split", spark, timings) as st:
        split = with_split(ok.select(S.PATH_COL, S.LABEL_COL, S.HASH_COL), settings.test_fraction, settings.seed)
        split = _staged(spark, split.select(S.HASH_COL, S.SPLIT_COL), path)
        st.set_rows(split.count())
    return split


def rejects_of(decoded: DataFrame, dedup: DataFrame) -> DataFrame:
    """The rejects table (:data:`batchml.schema.REJECTS_SCHEMA` columns): undecodable files, and
    every file whose bytes sit under more than one class."""
    decode_rejects = decoded.where(F.col(S.ERROR_COL).isNotNull()).select(
        F.col(S.PATH_COL).alias("source"), F.lit(None).cast(T.LongType()).alias("line"),
        F.col("raw"), F.substring_index(S.ERROR_COL, ":", 1).alias("reason"))
    conflict_rejects = dedup.where(F.col("n_labels") > 1).select(
        F.col(S.PATH_COL).alias("source"), F.lit(None).cast(T.LongType()).alias("line"),
        F.concat(F.lit("sha256 "), F.col(S.HASH_COL)).alias("raw"), F.lit(REASON_CONFLICT).alias("reason"))
    return decode_rejects.unionByName(conflict_rejects)


def _write_shards_and_rejects(spark: SparkSession, ok: DataFrame, split: DataFrame, rejects: DataFrame,
                              tmp: str, timings: dict) -> tuple[DataFrame, DataFrame]:
    """Stage: write ``images/`` (partitioned by split, about :data:`SHARD_ROWS` rows a file, sorted by
    hash) and ``rejects/`` under ``tmp``; return both as read back."""
    with stage("write shards and rejects", spark, timings) as st:
        images = (ok.join(split, on=S.HASH_COL, how="inner")
                  .select(S.PATH_COL, S.LABEL_COL, S.HASH_COL, S.WIDTH_COL, S.HEIGHT_COL, S.MODE_COL,
                          S.FORMAT_COL, S.SIZE_COL, S.PIXELS_COL, S.SPLIT_COL))
        n_shards = max(1, -(-split.count() // SHARD_ROWS))
        shard = F.pmod(F.xxhash64(S.HASH_COL), F.lit(n_shards))
        (images.repartition(2 * n_shards, S.SPLIT_COL, shard).sortWithinPartitions(S.HASH_COL)
         .write.partitionBy(S.SPLIT_COL).parquet(f"{tmp}/{S.IMAGES}"))
        rejects.coalesce(1).write.parquet(f"{tmp}/{REJECTS}")
        images = spark.read.parquet(f"{tmp}/{S.IMAGES}")
        rejects = spark.read.parquet(f"{tmp}/{REJECTS}")
        st.set_rows(images.count())
    return images, rejects


def _check_outcome(stats: dict, labels: dict[str, int], input_dir: str) -> None:
    if not stats["reconcile"]["ok"]:
        raise JobError(f"counts do not reconcile: {stats['reconcile']}")
    if stats["accepted"] == 0:
        raise InputError(f"no decodable images under the class folders {sorted(labels)} of {input_dir}")


def _stats(labelled: DataFrame, dedup: DataFrame, images: DataFrame, rejects: DataFrame,
           labels: dict, unlabelled: dict, settings: TumorSettings, input_dir: str) -> dict:
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
        "input": input_dir, "size": settings.size, "test_fraction": settings.test_fraction,
        "seed": settings.seed,
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
