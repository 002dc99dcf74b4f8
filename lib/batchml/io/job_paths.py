"""The paths a job reads and writes, checked before any work: the one guard that keeps a job from
destroying its own input.

A job names its inputs and outputs (:func:`batchml.cli.run_job`'s ``inputs`` / ``outputs``).  Before
Spark starts, every input must exist, and no output may be an input, lie inside one, or contain one
(the atomic swap would move the input aside and delete it); an output that is an existing *file*
is refused too (outputs are directories).  Paths are compared after resolving ``..``, symlinks
and, for URIs, the scheme and host.

Outputs go where a directory rename is atomic: local paths, ``file://``, a shared mount, and HDFS
(``hdfs://``, ``viewfs://``).  Object stores (``s3://``, ``s3a://``, ``gs://``, ``abfs://``, ...) have no
atomic directory rename, so an output there is refused: write to HDFS or a shared path and copy.
Inputs may be on any filesystem Spark and pyarrow read.
"""
from __future__ import annotations

import os
from typing import Mapping
from urllib.parse import urlsplit

from pyarrow import fs as pafs

from batchml.errors import ConfigError, InputError
from batchml.io.files import filesystem, require_input

_GLOB_CHARS = set("*?[")
#: URI schemes where an output directory can be swapped into place atomically
ATOMIC_OUTPUT_SCHEMES = ("file", "hdfs", "viewfs")


def check_output_filesystem(flag: str, path: str) -> None:
    """Raise :class:`ConfigError` when ``path`` is on a filesystem without atomic directory renames."""
    scheme = urlsplit(path).scheme.lower() if "://" in path else "file"
    if scheme not in ATOMIC_OUTPUT_SCHEMES:
        raise ConfigError(f"{flag} {path}: outputs on {scheme}:// are not supported (no atomic directory "
                          "rename there); write to hdfs:// or a local/shared path and copy the result")


def canonical(path: str) -> str:
    """A comparable form of ``path``: ``scheme://host/normalized/path`` or a resolved local path;
    a glob in the last component stands for its directory."""
    base, name = os.path.split(path.rstrip("/"))
    if _GLOB_CHARS & set(name):
        path = base or "."
    if "://" in path and not path.startswith("file://"):
        parts = urlsplit(path)
        return f"{parts.scheme}://{parts.netloc}{os.path.normpath(parts.path or '/')}"
    local = path[len("file://"):] if path.startswith("file://") else path
    return os.path.realpath(local)


def _nested(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def check_local_output(flag: str, path: str) -> None:
    """Raise :class:`ConfigError` unless ``path`` is a local (or shared-mount) path: for outputs that
    processes write with plain file operations (the tumor job's TensorFlow workers)."""
    if "://" in path and not path.startswith("file://"):
        raise ConfigError(f"{flag} {path}: must be a local or shared-mount path that every worker sees "
                          "(TensorFlow workers write it directly)")


def check_job_paths(inputs: Mapping[str, str | None], outputs: Mapping[str, str | None],
                    local_outputs: Mapping[str, str | None] = {}) -> None:
    """Raise :class:`InputError` for a missing input or an output that is an existing file, and
    :class:`ConfigError` for an output equal to, inside or around an input, or on a filesystem it
    cannot be written to (names are the flags).  ``local_outputs`` are outputs that must also be
    local paths (:func:`check_local_output`)."""
    for flag, path in ((f, p) for f, p in local_outputs.items() if p):
        check_local_output(flag, path)
    outputs = {**outputs, **local_outputs}
    given_in = {flag: p for flag, p in inputs.items() if p}
    for flag, path in given_in.items():
        try:
            require_input(path)
        except InputError:
            raise InputError(f"{flag} {path} does not exist") from None
    for out_flag, out in ((f, p) for f, p in outputs.items() if p):
        check_output_filesystem(out_flag, out)
        fs, p = filesystem(out)
        if fs.get_file_info(p).type == pafs.FileType.File:
            raise InputError(f"{out_flag} {out} is an existing file; outputs are directories")
        for in_flag, path in given_in.items():
            if _nested(canonical(out), canonical(path)):
                raise ConfigError(f"{out_flag} {out} overlaps {in_flag} {path}: a job never writes "
                                  "over, into or around its own input")
