"""Finding input files on any filesystem pyarrow knows, and naming them in outputs.

An input is a directory (its files are searched), one file, or a glob in the last path component
(``data/amazon/amazon_reviews_us_*.tsv.gz``); local paths, ``file://``, ``hdfs://``, ``s3://``, ...
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from pyarrow import fs as pafs
from pyspark.sql import Column
from pyspark.sql import functions as F

from batchml.errors import InputError

_GLOB_CHARS = set("*?[")


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding ``path`` and the path on it (absolute for local paths)."""
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def is_file(path: str) -> bool:
    """True when ``path`` names a file (not a directory) on its filesystem."""
    fs, p = filesystem(path)
    return fs.get_file_info(p).type == pafs.FileType.File


def list_files(root: str, subdir: str = "", pattern: str | None = None, recursive: bool = False) -> list[str]:
    """Files directly under ``root/subdir`` (or below it, with ``recursive``) whose name fully
    matches the regex ``pattern``, as paths Spark can read, sorted."""
    fs, base = filesystem(root)
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


def require_input(path: str) -> None:
    """Raise :class:`InputError` unless ``path`` (a directory, a file, or a glob whose directory)
    exists."""
    base, name = os.path.split(path.rstrip("/"))
    where = (base or ".") if _GLOB_CHARS & set(name) else path
    fs, p = filesystem(where)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        raise InputError(f"input {where} does not exist")


@dataclass
class InputFiles:
    """Files matched under an input (a directory, a single file or a glob such as ``dir/*.tsv.gz``).

    ``root`` is the directory that output ``source`` names are relative to.
    """

    root: str
    files: list[str]


def resolve_input(path: str, pattern: str) -> InputFiles:
    """Files named by ``path`` whose name fully matches the regex ``pattern``.

    ``path`` may be a directory (its files are searched, not recursively), one file (taken as is),
    or a glob in the last path component (``data/amazon/amazon_reviews_us_*.tsv.gz``).
    """
    base, name = os.path.split(path.rstrip("/"))
    if _GLOB_CHARS & set(name):
        rx = fnmatch.translate(name)
        found = [f for f in list_files(base or ".", pattern=pattern)
                 if re.fullmatch(rx, f.rstrip("/").rsplit("/", 1)[-1])]
        return InputFiles(root=base or ".", files=found)
    return InputFiles(root=path, files=list_files(path, pattern=pattern))


def directory_of(root: str) -> str:
    """``root`` itself, or the directory holding it when it is a file (where metadata files sit)."""
    return os.path.dirname(root.rstrip("/")) or "." if is_file(root) else root


def source_name(root: str) -> Column:
    """Turn a scan's ``source`` file URI into the path relative to ``root`` (the input directory)."""
    base = root if "://" in root else os.path.abspath(root)
    if not base.endswith("/") and os.path.isfile(base):
        base = os.path.dirname(base)
    base = base.rstrip("/") + "/"
    plain = F.regexp_replace(F.col("source"), r"^file:(//)?", "")
    return F.when(F.startswith(plain, F.lit(base)), F.substring(plain, len(base) + 1, 100000)).otherwise(plain)
