"""Atomic output directories: write to a temporary sibling, move into place only when complete.

A failed or killed run leaves the previous output untouched; a re-run replaces it whole.  A run
killed outright (SIGKILL, lost driver) cannot clean up its hidden ``.NAME.tmp-*`` sibling; the
next successful run of the same output removes such siblings once they are older than
:data:`STALE_AFTER_S`.  Works on every filesystem pyarrow knows (local paths, ``file://``,
``hdfs://``, ``s3://``, ...).
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from pyarrow import fs as pafs

from batchml.errors import InputError
from batchml.io.files import filesystem

LOG = logging.getLogger("batchml.io")

#: a temporary sibling untouched for this long belongs to a run that died (a day: no job of ours
#: writes for that long)
STALE_AFTER_S = 24 * 3600


def _uri(path: str, fs_path: str) -> str:
    """The path Spark should use for ``fs_path`` on the filesystem of ``path``."""
    if "://" in path:
        scheme_host = path[: path.index("://") + 3] + path[path.index("://") + 3:].split("/", 1)[0]
        return scheme_host + ("" if fs_path.startswith("/") else "/") + fs_path
    return fs_path


def exists(path: str) -> bool:
    fs, p = filesystem(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def remove_tree(path: str) -> None:
    fs, p = filesystem(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(p)
    elif info.type == pafs.FileType.File:
        fs.delete_file(p)


def _remove_stale_siblings(fs: pafs.FileSystem, parent: str, name: str) -> None:
    """Delete ``.NAME.tmp-*`` / ``.NAME.old-*`` siblings last modified more than
    :data:`STALE_AFTER_S` ago; siblings without a modification time are left alone."""
    now = time.time()
    for info in fs.get_file_info(pafs.FileSelector(parent)):
        base = info.base_name
        if not base.startswith((f".{name}.tmp-", f".{name}.old-")):
            continue
        if info.mtime is None or now - info.mtime.timestamp() < STALE_AFTER_S:
            continue
        LOG.warning("removing %s, left by a run that was killed", info.path)
        try:
            if info.type == pafs.FileType.Directory:
                fs.delete_dir(info.path)
            else:
                fs.delete_file(info.path)
        except OSError:  # pragma: no cover - best effort
            LOG.warning("could not remove %s", info.path)


@contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yield a temporary sibling of ``path`` to write into; on success it replaces ``path``.

    On an exception the temporary directory is removed and ``path`` is left as it was.
    """
    fs, target = filesystem(path)
    if fs.get_file_info(target).type == pafs.FileType.File:
        raise InputError(f"output {path} is an existing file; outputs are directories")
    parent = target.rstrip("/").rsplit("/", 1)[0] or "/"
    name = target.rstrip("/").rsplit("/", 1)[-1]
    token = uuid.uuid4().hex[:10]
    tmp = f"{parent}/.{name}.tmp-{token}"
    fs.create_dir(parent, recursive=True)
    fs.create_dir(tmp, recursive=True)
    try:
        yield _uri(path, tmp)
    except BaseException:
        try:
            fs.delete_dir(tmp)
        except OSError:  # pragma: no cover - best effort clean-up
            LOG.warning("could not remove temporary output %s", tmp)
        raise
    old = None
    if fs.get_file_info(target).type != pafs.FileType.NotFound:
        old = f"{parent}/.{name}.old-{token}"
        fs.move(target, old)
    try:
        fs.move(tmp, target)
    except BaseException:
        if old is not None:
            fs.move(old, target)
        raise
    if old is not None:
        fs.delete_dir(old)
    _remove_stale_siblings(fs, parent, name)
    LOG.info("wrote %s", path)


def write_json(path: str, obj: dict) -> None:
    """Write a JSON document (pretty, UTF-8) to a local or remote path."""
    fs, p = filesystem(path)
    with fs.open_output_stream(p) as out:
        out.write(json.dumps(obj, indent=2, sort_keys=False, default=str).encode("utf-8"))


def read_json(path: str) -> dict:
    fs, p = filesystem(path)
    with fs.open_input_stream(p) as inp:
        return json.loads(inp.read().decode("utf-8"))
