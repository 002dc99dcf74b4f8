"""Finding input files on any filesystem pyarrow knows, and naming them in outputs.

An input is a directory (its files are searched), one file, or a glob in the last path component
(``data/amazon/amazon_reviews_us_*.tsv.gz``); local paths, ``file://``, ``hdfs://``, ``s3://``, ...
"""
from __future__ import annotations

import fnmatch
import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from pyarrow import fs as pafs
from pyspark.sql import Column
from pyspark.sql import functions as F

from batchml.errors import InputError

_GLOB_CHARS = set("*?[")

#: name prefixes of the files Spark's file sources skip without a word, even when named one by one
HIDDEN_PREFIXES = ("_", ".")

#: the UTF-8 byte order mark some editors put at the start of a text file
UTF8_BOM = b"\xef\xbb\xbf"


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
    matches the regex ``pattern``, as paths Spark can read, sorted.  A hidden name (``_x``, ``.x``)
    that matches, with or without its prefix, is refused (:func:`refuse_hidden`): Spark would skip
    it without a word."""
    fs, base = filesystem(root)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.File and not subdir:
        found = [info]
    else:
        sel = pafs.FileSelector(base.rstrip("/") + ("/" + subdir if subdir else ""), allow_not_found=True,
                                recursive=recursive)
        found = [f for f in fs.get_file_info(sel) if f.type == pafs.FileType.File]
    names = [f for f in found if pattern is None or re.fullmatch(pattern, PurePosixPath(f.path).name)]
    refuse_hidden([f.path for f in names] + [f.path for f in found if _hides(f.path, pattern)])
    return sorted(uri_of(root, f.path) for f in names)


def _hides(path: str, pattern: str | None) -> bool:
    """True for a hidden name (``_x``, ``.x``) that would match ``pattern`` without its prefix."""
    name = PurePosixPath(path).name
    return (pattern is not None and name.startswith(HIDDEN_PREFIXES)
            and re.fullmatch(pattern, name.lstrip("".join(HIDDEN_PREFIXES))) is not None)


def refuse_hidden(paths: list[str]) -> None:
    """Raise :class:`InputError` naming the files Spark would skip silently (names starting with
    ``_`` or ``.``): an input file is read or reported, never dropped."""
    hidden = sorted({p for p in paths if PurePosixPath(p).name.startswith(HIDDEN_PREFIXES)})
    if hidden:
        raise InputError(f"{hidden[0]}{f' (and {len(hidden) - 1} more)' if len(hidden) > 1 else ''}: "
                         "Spark does not read files whose names start with '_' or '.'; rename or "
                         "remove them")


def read_bytes(path: str) -> bytes:
    """The whole content of a (small) file, un-gzipped when its name ends in ``.gz``; a UTF-8 byte
    order mark at the start is dropped."""
    fs, p = filesystem(path)
    with fs.open_input_stream(p, compression=None) as raw:
        data = raw.read()
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: not a readable gzip file ({exc})") from None
    return data.removeprefix(UTF8_BOM)


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
    or a glob in the last path component (``data/amazon/amazon_reviews_us_*.tsv.gz``).  A matching
    file whose name Spark hides (``_x``, ``.x``) is refused (see :func:`list_files`).
    """
    base, name = os.path.split(path.rstrip("/"))
    if _GLOB_CHARS & set(name):
        rx = fnmatch.translate(name)
        found = InputFiles(root=base or ".", files=[f for f in list_files(base or ".", pattern=pattern)
                                                    if re.fullmatch(rx, f.rstrip("/").rsplit("/", 1)[-1])])
    else:
        found = InputFiles(root=path, files=list_files(path, pattern=pattern))
    return found


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
