"""Finding input files on any filesystem, peeking at their first lines, naming them in outputs."""
from __future__ import annotations

import gzip
import io
import os
import re
from pathlib import PurePosixPath

from pyarrow import fs as pafs
from pyspark.sql import Column
from pyspark.sql import functions as F

from batchml.errors import InputError
from batchml.io.atomic import _filesystem


def list_files(root: str, subdir: str = "", pattern: str | None = None, recursive: bool = False) -> list[str]:
    """Files directly under ``root/subdir`` (or below it, with ``recursive``) whose name fully
    matches the regex ``pattern``, as paths Spark can read, sorted."""
    fs, base = _filesystem(root)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.File and not subdir:
        found = [info]
    else:
        sel = pafs.FileSelector(base.rstrip("/") + ("/" + subdir if subdir else ""), allow_not_found=True,
                                recursive=recursive)
        found = [f for f in fs.get_file_info(sel) if f.type == pafs.FileType.File]
    names = [f for f in found if pattern is None or re.fullmatch(pattern, PurePosixPath(f.path).name)]
    return sorted(uri_of(root, f.path) for f in names)


def uri_of(root: str, path: str) -> str:
    """The URI Spark reads for a pyarrow filesystem path found under ``root``."""
    if "://" in root:
        return root.split("://", 1)[0] + "://" + path
    return path


def head_lines(path: str, n: int = 50, nbytes: int = 65536, encoding: str = "utf-8") -> list[str]:
    """The first ``n`` non-blank lines of a (possibly gzipped) file, read from its first bytes."""
    fs, p = _filesystem(path)
    with fs.open_input_stream(p, compression=None) as raw:  # we un-gzip ourselves
        data = raw.read(nbytes if not path.endswith(".gz") else 1 << 20)
    if path.endswith(".gz"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read1(nbytes)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable gzip file ({exc})") from None
    text = data.decode(encoding, errors="replace")
    parts = text.split("\n")
    if len(data) >= nbytes and len(parts) > 1:
        parts = parts[:-1]  # drop a line cut by the read limit
    return [ln.rstrip("\r") for ln in parts if ln.strip()][:n]


def source_name(root: str) -> Column:
    """Turn a scan's ``source`` file URI into the path relative to ``root`` (the input directory)."""
    base = root if "://" in root else os.path.abspath(root)
    if not base.endswith("/") and os.path.isfile(base):
        base = os.path.dirname(base)
    base = base.rstrip("/") + "/"
    plain = F.regexp_replace(F.col("source"), r"^file:(//)?", "")
    return F.when(F.startswith(plain, F.lit(base)), F.substring(plain, len(base) + 1, 100000)).otherwise(plain)
