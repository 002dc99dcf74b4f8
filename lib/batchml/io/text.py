"""Line-oriented reading of raw text dumps in parallel, keeping each line's file and position.

``read_lines`` tags every line with its file (``source``), the byte offset of the file split it came
from (``block``) and a sequence number (``seq``) that increases by one per line within a split.  A
small pass over the splits (:func:`block_summary`) turns that into exact line numbers per file
without ever funnelling a file through one partition.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.io.files import read_bytes
from batchml.spark import local_frame


def read_lines(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """Read text files (plain or gzip) as ``value, source, block, seq``.

    ``seq`` is ``monotonically_increasing_id()`` taken straight off the scan: consecutive within a
    split, unique across the job, and the same on every scan of the same files with the same settings.
    """
    return (
        spark.read.text(list(paths))
        .select(
            F.col("value"),
            F.col("_metadata.file_path").alias("source"),
            F.col("_metadata.file_block_start").alias("block"),
            F.monotonically_increasing_id().alias("seq"),
        )
    )


@dataclass(frozen=True)
class Block:
    """One file split as seen by the scan."""

    source: str
    block: int
    min_seq: int
    n_lines: int
    marks: tuple = ()   # (seq, payload) pairs for the lines a format cares about (e.g. headers)


def block_summary(lines_df: DataFrame, mark: Column | None = None) -> list[Block]:
    """Collect one small row per split: first seq, line count and, optionally, the ``(seq, mark)``
    of every line where ``mark`` is not null (sorted by seq)."""
    aggs = [F.min("seq").alias("min_seq"), F.count(F.lit(1)).alias("n_lines")]
    if mark is not None:
        aggs.append(F.collect_list(F.when(mark.isNotNull(), F.struct(F.col("seq"), mark.alias("m"))))
                    .alias("marks"))
    rows = lines_df.groupBy("source", "block").agg(*aggs).collect()
    out = []
    for r in rows:
        marks = tuple(sorted((m["seq"], m["m"]) for m in r["marks"])) if mark is not None else ()
        out.append(Block(r["source"], int(r["block"]), int(r["min_seq"]), int(r["n_lines"]), marks))
    return sorted(out, key=lambda b: (b.source, b.block))


def line_offsets(blocks: list[Block]) -> dict[tuple[str, int], int]:
    """Number of lines in the earlier splits of the same file, per (source, block)."""
    offsets, running, current = {}, 0, None
    for b in blocks:
        if b.source != current:
            current, running = b.source, 0
        offsets[(b.source, b.block)] = running
        running += b.n_lines
    return offsets


def with_line_numbers(lines_df: DataFrame, blocks: list[Block]) -> DataFrame:
    """Add ``line`` (1-based line number within its file) via a broadcast of the split table."""
    spark = lines_df.sparkSession
    offs = line_offsets(blocks)
    table = local_frame(spark, [(b.source, b.block, offs[(b.source, b.block)] - b.min_seq + 1) for b in blocks],
                        "source string, block long, line_delta long")
    return (
        lines_df.join(F.broadcast(table), on=["source", "block"], how="left")
        .withColumn("line", F.col("seq") + F.col("line_delta"))
        .drop("line_delta")
    )


def with_lines(df: DataFrame) -> DataFrame:
    """Replace ``block, seq`` by ``line`` (1-based within the file); runs one small job."""
    return with_lines_and_groups(df, by=())[0]


def with_lines_and_groups(df: DataFrame, by: Sequence[str]) -> tuple[DataFrame, list[tuple]]:
    """:func:`with_lines`, and the row count per ``(source, *by)`` from the same small job (e.g. per
    kind and reason of a parse: the line accounting), as ``(source, *by values, n)`` tuples."""
    rows = (df.groupBy("source", "block", *by)
            .agg(F.min("seq").alias("min_seq"), F.count(F.lit(1)).alias("n")).collect())
    per_block: dict[tuple, list] = {}
    groups: dict[tuple, int] = {}
    for r in rows:
        b = per_block.setdefault((r["source"], int(r["block"])), [r["min_seq"], 0])
        b[0], b[1] = min(b[0], r["min_seq"]), b[1] + int(r["n"])
        key = (r["source"], *(r[c] for c in by))
        groups[key] = groups.get(key, 0) + int(r["n"])
    blocks = sorted((Block(src, blk, int(m), n) for (src, blk), (m, n) in per_block.items()),
                    key=lambda b: (b.source, b.block))
    return (with_line_numbers(df, blocks).drop("block", "seq"),
            [(*key, n) for key, n in sorted(groups.items(), key=lambda kv: str(kv[0]))])


_SMALL_TEXT_SCHEMA = "source string, line long, value string"


def read_small_text(spark: SparkSession, paths: Sequence[str], encoding: str = "UTF-8") -> DataFrame:
    """Whole small files (titles, a few MB; plain or gzip) decoded with ``encoding``, one row per
    line: ``source, line, value`` with exact 1-based line numbers, blank lines included.

    Read on the driver (:func:`batchml.io.files.read_bytes`: a UTF-8 byte order mark dropped); a final
    newline ends the last line and one trailing ``\\r`` per line is removed (CRLF files).  Spark's
    CSV reader would skip blank lines (shifting every later line number) and its file sources hide
    ``_x`` / ``.x`` names.
    """
    rows = []
    for path in paths:
        lines = read_bytes(path).decode(encoding, errors="replace").split("\n")
        if lines[-1] == "":
            lines.pop()
        rows += [(path, n, v.removesuffix("\r")) for n, v in enumerate(lines, start=1)]
    return local_frame(spark, rows, _SMALL_TEXT_SCHEMA)


def truncate_raw(col: Column, max_chars: int) -> Column:
    """A raw line as kept in ``rejects``: at most ``max_chars`` characters."""
    return F.substring(col, 1, max_chars)
