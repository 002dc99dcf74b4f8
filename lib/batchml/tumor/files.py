"""The input files of the tumor prepare job: every file under the input root, hidden names included,
with its bytes.

Spark's ``binaryFile`` source silently skips every file or folder whose name starts with ``_`` or
``.`` (Hadoop's hidden-file rule), even when such a path is named explicitly.  So the input is listed
with the Hadoop ``FileSystem`` API (no filter: the listing is the source of truth), the visible files
are read with ``binaryFile``, and the files it skipped are read on the driver through the same
``FileSystem`` and staged as Parquet.  A listed file that still cannot be read keeps a null
``content`` and is rejected downstream with a reason: no file is dropped silently.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F, types as T

from batchml.errors import InputError
from batchml.tumor import schema as S

LOG = logging.getLogger("batchml.tumor")

LENGTH_COL = "length"
CONTENT_COL = "content"
FILES_SCHEMA = T.StructType([T.StructField(S.PATH_COL, T.StringType(), False),
                             T.StructField(LENGTH_COL, T.LongType(), True),
                             T.StructField(CONTENT_COL, T.BinaryType(), True)])


def _root_uri(root: str) -> str:
    return root if "://" in root else os.path.abspath(root)


def relative_path(root: str):
    """Column: a ``binaryFile`` path made relative to ``root``."""
    base = _root_uri(root).rstrip("/") + "/"
    plain = F.regexp_replace(F.col("path"), r"^file:(//)?", "")
    return (F.when(F.startswith(plain, F.lit(base)), F.substring(plain, len(base) + 1, 1 << 20))
            .otherwise(plain))


def _relative(root: str, uri: str) -> str:
    """The Python twin of :func:`relative_path` for one Hadoop path string."""
    base = _root_uri(root).rstrip("/") + "/"
    plain = uri[len("file:"):] if uri.startswith("file:") else uri
    while plain.startswith("//") and not base.startswith("//"):
        plain = plain[1:]
    return plain[len(base):] if plain.startswith(base) else plain


def _filesystem(spark: SparkSession, root: str):
    jvm = spark.sparkContext._jvm  # noqa: SLF001  (the Hadoop FileSystem has no Python API)
    path = jvm.org.apache.hadoop.fs.Path(_root_uri(root))
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # noqa: SLF001


def list_files(spark: SparkSession, root: str) -> dict[str, int]:
    """Relative path -> length of every file under ``root`` (recursively, hidden names included).

    Raises
    ------
    InputError
        ``root`` does not exist or is not a directory.
    """
    path, fs = _filesystem(spark, root)
    if not fs.exists(path):
        raise InputError(f"input directory {root} does not exist")
    if not fs.getFileStatus(path).isDirectory():
        raise InputError(f"input {root} is a file; expected a directory of class folders")
    out: dict[str, int] = {}
    it = fs.listFiles(path, True)
    while it.hasNext():
        status = it.next()
        out[_relative(root, status.getPath().toString())] = int(status.getLen())
    return out


def _read_on_driver(spark: SparkSession, root: str, rel_paths: list[str]) -> list[tuple]:
    """``(path, length, content)`` of files read through the Hadoop ``FileSystem`` on the driver
    (``content`` None where the file cannot be read)."""
    root_path, fs = _filesystem(spark, root)
    jvm = spark.sparkContext._jvm  # noqa: SLF001
    rows = []
    for rel in rel_paths:
        p = jvm.org.apache.hadoop.fs.Path(root_path, rel)
        try:
            stream = fs.open(p)
            try:
                data = bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
            finally:
                stream.close()
            rows.append((rel, len(data), data))
        except Exception as exc:  # noqa: BLE001  (Py4J wraps every Java error; the reason is logged)
            LOG.warning("cannot read %s: %s", rel, str(exc).splitlines()[0][:200])
            rows.append((rel, None, None))
    return rows


def _binary_files(spark: SparkSession, root: str) -> DataFrame:
    """``path`` (relative), ``length``, ``content`` of the files ``binaryFile`` sees under ``root``."""
    return (spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(_root_uri(root))
            .select(relative_path(root).alias(S.PATH_COL), F.col(LENGTH_COL), F.col(CONTENT_COL)))


@dataclass(frozen=True)
class InputFiles:
    """The listing of an input root and where the files Spark hides were staged."""

    root: str
    listed: dict[str, int]       # relative path -> length, every file
    hidden: tuple[str, ...]      # files binaryFile skipped (read on the driver)
    hidden_table: str | None     # Parquet of their ``path, length, content``

    def contents(self, spark: SparkSession) -> DataFrame:
        """``path, length, content`` of every listed file (``content`` null where unreadable)."""
        df = _binary_files(spark, self.root)
        if self.hidden_table:
            df = df.unionByName(spark.read.parquet(self.hidden_table))
        return df


def stage_input_files(spark: SparkSession, root: str, staging: str) -> InputFiles:
    """List ``root``, find the files ``binaryFile`` skips and stage their bytes at ``staging``.

    Raises
    ------
    InputError
        No file at all under ``root``.
    """
    listed = list_files(spark, root)
    if not listed:
        raise InputError(f"no files under {root}")
    seen = {r[S.PATH_COL] for r in _binary_files(spark, root).select(S.PATH_COL).collect()}
    hidden = tuple(sorted(p for p in listed if p not in seen))
    table = None
    if hidden:
        LOG.info("%d file(s) whose names Spark hides (leading _ or .) are read on the driver: %s",
                 len(hidden), ", ".join(hidden[:5]) + (" ..." if len(hidden) > 5 else ""))
        table = staging
        spark.createDataFrame(_read_on_driver(spark, root, list(hidden)), FILES_SCHEMA).write.parquet(table)
    return InputFiles(root=root, listed=listed, hidden=hidden, hidden_table=table)
