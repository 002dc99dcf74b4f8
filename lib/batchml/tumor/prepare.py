"""Image folders -> de-duplicated, grouped, split, decoded Parquet shards
(``images/split=train|validation|test``), ``rejects`` and ``_stats.json``.

Every file under the input is listed (:mod:`batchml.tumor.files`: names Spark hides included) and
accounted for: ``files listed = files read under a class folder + files outside them`` and ``files
read = accepted + duplicates + rejected``.  Files are de-duplicated by the sha256 of their bytes
*before* the split; decoded scans (cropped to the head, normalized: :mod:`batchml.tumor.images`) are
grouped with their near-duplicates (:mod:`batchml.tumor.near_duplicates`), and the splits are a
deterministic, stratified function of the group: test first, then validation carved from the rest,
so no image, byte-identical copy or near-copy sits on two sides.  The output directory is written
atomically.
"""
from __future__ import annotations

import logging
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
from batchml.tumor.files import CONTENT_COL, InputFiles, stage_input_files
from batchml.tumor.images import Preprocessing, decode_batches
from batchml.tumor.near_duplicates import near_duplicate_groups

LOG = logging.getLogger("batchml.tumor")

CLASS_COL = "class_folder"
SHARD_ROWS = 2000  # images per Parquet file (about 120 MB at 175 px)
REASON_CONFLICT = "same bytes under different classes"
REASON_UNREADABLE = "unreadable file"
# YAML 1.1 reads unquoted yes/no keys as booleans; accept what they become.
_YAML_BOOL_KEYS = {"true": "yes", "false": "no"}


def class_labels(settings: TumorSettings) -> dict[str, int]:
    """Lower-case class folder name -> label, from ``tumor.classes``."""
    out = {}
    for k, v in settings.classes.items():
        key = k.lower()
        out[_YAML_BOOL_KEYS.get(key, key)] = int(v)
    return out


def read_files(files: InputFiles, spark: SparkSession) -> DataFrame:
    """Every listed file: ``path`` (relative), ``class_folder``, ``length``, ``hash`` (sha256 hex of
    the bytes; null where the file could not be read), ``content``."""
    return (files.contents(spark)
            .withColumn(CLASS_COL, F.when(F.instr(S.PATH_COL, "/") > 0,
                                          F.substring_index(S.PATH_COL, "/", 1)))
            .withColumn(S.HASH_COL, F.sha2(CONTENT_COL, 256)))


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


def with_split(unique_df: DataFrame, fraction: float, seed: int, chosen: str = S.TEST,
               rest: str = S.TRAIN) -> DataFrame:
    """Stratified deterministic split of distinct images: per label, order the near-duplicate groups
    (``group``; each image is its own group where the column is absent) by a seeded hash and put
    whole groups into ``chosen`` while fewer than ``round(n * fraction)`` images are in it.  A group
    is stratified by its smallest label, so it never straddles the split.

    Output columns: the input columns plus ``split``.
    """
    group = F.col(S.GROUP_COL) if S.GROUP_COL in unique_df.columns else F.col(S.HASH_COL)
    df = (unique_df.withColumn("_g", group)
          .withColumn("_stratum", F.min(S.LABEL_COL).over(W.partitionBy("_g"))))
    key = F.xxhash64(F.col("_g"), F.lit(seed))
    before = F.rank().over(W.partitionBy("_stratum").orderBy(key, "_g")) - 1  # images in earlier groups
    n_chosen = F.round(F.count(F.lit(1)).over(W.partitionBy("_stratum")) * F.lit(fraction))
    return (df.withColumn(S.SPLIT_COL, F.when(before < n_chosen, chosen).otherwise(rest))
            .drop("_g", "_stratum"))


def with_splits(unique_df: DataFrame, settings: TumorSettings) -> DataFrame:
    """``test`` (``test_fraction`` of the images), then ``validation`` (``validation_fraction`` of the
    rest, with another ordering) and ``train``: whole near-duplicate groups on one side."""
    split = with_split(unique_df, settings.test_fraction, settings.seed)
    test = split.where(F.col(S.SPLIT_COL) == S.TEST)
    rest = with_split(split.where(F.col(S.SPLIT_COL) != S.TEST).drop(S.SPLIT_COL),
                      settings.validation_fraction, settings.seed + 1, chosen=S.VALIDATION)
    return test.unionByName(rest)


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
        files, index = _list_files(spark, input_dir, labels, staging, timings)
        labelled = index.where(F.col(S.LABEL_COL).isNotNull())
        unlabelled = _unlabelled_counts(index, labels)
        dedup, unique = _deduplicate(spark, labelled, f"{staging}/dedup", timings)
        decoded = _decode(spark, files, unique, settings, f"{staging}/decoded", timings)
        ok = decoded.where(F.col(S.ERROR_COL).isNull())
        groups = _group_near_duplicates(spark, ok, settings, f"{staging}/groups", timings)
        split = _split(spark, ok.join(groups, on=S.HASH_COL, how="inner"), settings, f"{staging}/split", timings)
        rejects = rejects_of(decoded, dedup, labelled)
        images, rejects = _write_shards_and_rejects(spark, ok, split, rejects, tmp, timings)
        with stage("stats", spark, timings):
            stats = _stats(labelled, dedup, images, rejects, labels, unlabelled, settings, input_dir)
            stats.update(_listing_stats(files, stats, unlabelled))
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


def _list_files(spark: SparkSession, input_dir: str, labels: dict[str, int], staging: str,
                timings: dict) -> tuple[InputFiles, DataFrame]:
    """Stage: the listing of ``input_dir`` (hidden names included, see :mod:`batchml.tumor.files`)
    and the index of every file (``path, class_folder, label, hash, length``), staged under
    ``staging``; :class:`InputError` when there is no file at all."""
    with stage("list and hash files", spark, timings) as st:
        files = stage_input_files(spark, input_dir, f"{staging}/hidden")
        indexed = with_labels(read_files(files, spark), labels)
        index = _staged(spark, indexed.select(S.PATH_COL, CLASS_COL, S.LABEL_COL, S.HASH_COL, "length"),
                        f"{staging}/index")
        st.set_rows(index.count())
    return files, index


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
        dedup = _staged(spark, with_dedup(labelled.where(F.col(S.HASH_COL).isNotNull())), path)
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
           T.StructField(S.PHASH_COL, T.LongType()),
           T.StructField(S.ERROR_COL, T.StringType()), T.StructField("raw", T.StringType())])


def _decode(spark: SparkSession, files: InputFiles, unique: DataFrame, settings: TumorSettings, path: str,
            timings: dict) -> DataFrame:
    """Stage: decode the distinct images to ``size`` x ``size`` pixels (``error`` set where a file
    cannot be decoded), staged at ``path``."""
    with stage("decode images", spark, timings) as st:
        content = files.contents(spark).select(S.PATH_COL, CONTENT_COL)
        to_decode = unique.join(content, on=S.PATH_COL, how="inner")
        decoded = to_decode.mapInPandas(decode_batches(Preprocessing.from_settings(settings),
                                                       settings.raw_max_chars),
                                        _decoded_schema(to_decode))
        decoded = _staged(spark, decoded, path)
        st.set_rows(decoded.count())
    return decoded


def _group_near_duplicates(spark: SparkSession, ok: DataFrame, settings: TumorSettings, path: str,
                           timings: dict) -> DataFrame:
    """Stage: ``hash, group`` of the decodable images (:mod:`batchml.tumor.near_duplicates`, on the
    driver: one 64-bit hash per image), staged at ``path``."""
    with stage("group near-duplicates", spark, timings) as st:
        rows = ok.select(S.HASH_COL, S.PHASH_COL).collect()
        keys = [r[S.HASH_COL] for r in rows]
        if settings.near_duplicate_bits > 0:
            groups = near_duplicate_groups(keys, [int(r[S.PHASH_COL]) for r in rows], settings.near_duplicate_bits)
        else:
            groups = {k: k for k in keys}
        schema = T.StructType([T.StructField(S.HASH_COL, T.StringType(), False),
                               T.StructField(S.GROUP_COL, T.StringType(), False)])
        out = _staged(spark, spark.createDataFrame(sorted(groups.items()), schema), path)
        st.set_rows(len(keys))
    return out


def _split(spark: SparkSession, ok: DataFrame, settings: TumorSettings, path: str, timings: dict) -> DataFrame:
    """Stage: ``hash, group, split`` of the decodable images, staged at ``path``."""
    with stage("split", spark, timings) as st:
        split = with_splits(ok.select(S.PATH_COL, S.LABEL_COL, S.HASH_COL, S.GROUP_COL), settings)
        split = _staged(spark, split.select(S.HASH_COL, S.GROUP_COL, S.SPLIT_COL), path)
        st.set_rows(split.count())
    return split


def rejects_of(decoded: DataFrame, dedup: DataFrame, labelled: DataFrame) -> DataFrame:
    """The rejects table (:data:`batchml.schema.REJECTS_SCHEMA` columns): unreadable and undecodable
    files, and every file whose bytes sit under more than one class."""
    unreadable = labelled.where(F.col(S.HASH_COL).isNull()).select(
        F.col(S.PATH_COL).alias("source"), F.lit(None).cast(T.LongType()).alias("line"),
        F.lit(None).cast(T.StringType()).alias("raw"), F.lit(REASON_UNREADABLE).alias("reason"))
    decode_rejects = decoded.where(F.col(S.ERROR_COL).isNotNull()).select(
        F.col(S.PATH_COL).alias("source"), F.lit(None).cast(T.LongType()).alias("line"),
        F.col("raw"), F.substring_index(S.ERROR_COL, ":", 1).alias("reason"))
    conflict_rejects = dedup.where(F.col("n_labels") > 1).select(
        F.col(S.PATH_COL).alias("source"), F.lit(None).cast(T.LongType()).alias("line"),
        F.concat(F.lit("sha256 "), F.col(S.HASH_COL)).alias("raw"), F.lit(REASON_CONFLICT).alias("reason"))
    return decode_rejects.unionByName(conflict_rejects).unionByName(unreadable)


def _write_shards_and_rejects(spark: SparkSession, ok: DataFrame, split: DataFrame, rejects: DataFrame,
                              tmp: str, timings: dict) -> tuple[DataFrame, DataFrame]:
    """Stage: write ``images/`` (partitioned by split, about :data:`SHARD_ROWS` rows a file, sorted by
    hash) and ``rejects/`` under ``tmp``; return both as read back."""
    with stage("write shards and rejects", spark, timings) as st:
        images = (ok.join(split, on=S.HASH_COL, how="inner")
                  .select(S.PATH_COL, S.LABEL_COL, S.HASH_COL, S.GROUP_COL, S.WIDTH_COL, S.HEIGHT_COL,
                          S.MODE_COL, S.FORMAT_COL, S.SIZE_COL, S.PIXELS_COL, S.SPLIT_COL))
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


def _listing_stats(files: InputFiles, stats: dict, unlabelled: dict[str, int]) -> dict:
    """Stats keys that tie the counts to the file listing: every listed file is either read under a
    class folder or counted outside them; ``hidden_names_read`` counts the files Spark's
    ``binaryFile`` would have skipped."""
    n_listed = len(files.listed)
    n_outside = sum(unlabelled.values())
    reconcile = dict(stats["reconcile"])
    reconcile.update(ok=reconcile["ok"] and n_listed == stats["files_read"] + n_outside,
                     files_listed=n_listed, files_read_plus_outside_class_folders=stats["files_read"] + n_outside)
    return {"files_listed": n_listed, "hidden_names_read": len(files.hidden),
            "hidden_names_sample": list(files.hidden[:20]), "reconcile": reconcile}


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
            "train": per.get((label, S.TRAIN), 0), "validation": per.get((label, S.VALIDATION), 0),
            "test": per.get((label, S.TEST), 0)}
    mode_counts = {r[S.MODE_COL]: int(r["count"]) for r in images.groupBy(S.MODE_COL).count().collect()}
    fmt_counts = {r[S.FORMAT_COL]: int(r["count"]) for r in images.groupBy(S.FORMAT_COL).count().collect()}
    return {
        "input": input_dir, "size": settings.size, "test_fraction": settings.test_fraction,
        "validation_fraction": settings.validation_fraction, "seed": settings.seed,
        "preprocessing": {"crop": settings.crop, "crop_margin": settings.crop_margin,
                          "normalize": settings.normalize, "near_duplicate_bits": settings.near_duplicate_bits},
        "near_duplicates": _group_summary(images),
        "files_read": n_read, "accepted": n_acc, "duplicates_removed": n_dup, "rejected": n_rej,
        "rejected_by_reason": by_reason,
        "skipped_outside_class_folders": unlabelled,
        "by_class": by_class,
        "by_split": {s: sum(v for (lb, sp), v in per.items() if sp == s) for s in (S.TRAIN, S.VALIDATION, S.TEST)},
        "modes": mode_counts, "formats": fmt_counts,
        "original_size": _size_summary(images) if n_acc else {},
        "reconcile": {"ok": n_read == n_acc + n_dup + n_rej,
                      "files_read": n_read, "accepted_plus_duplicates_plus_rejected": n_acc + n_dup + n_rej},
    }


def _group_summary(images: DataFrame) -> dict:
    """Near-duplicate groups of more than one distinct image: how many, and the images in them."""
    sizes = images.groupBy(S.GROUP_COL).count().where(F.col("count") > 1)
    r = sizes.agg(F.count(F.lit(1)).alias("groups"), F.sum("count").alias("images")).first()
    return {"groups": int(r["groups"] or 0), "images_in_groups": int(r["images"] or 0)}


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
