"""Peeking at a file's first lines: the fail-fast format check every dump reader runs before Spark
reads a whole file (a file in the wrong format at all fails at once, naming it; a few bad lines in a
right file are rejects, not failures)."""
from __future__ import annotations

import gzip
import io
import re
import zlib
from typing import Callable, Sequence

from batchml.errors import InputError
from batchml.io.files import UTF8_BOM, filesystem

#: compressed bytes read from the head of a gzip file
GZIP_HEAD_BYTES = 1 << 20


def head_lines(path: str, n: int = 50, nbytes: int = 65536, encoding: str = "utf-8") -> list[str]:
    """The first ``n`` non-blank lines of a plain or gzip file, read from its first bytes (a UTF-8
    byte order mark dropped, as Spark's text reader does).

    The stream is opened with ``compression=None`` and un-gzipped here: pyarrow would otherwise
    decompress ``.gz`` on its own and the gzip check would see plain text.  A gzip file read whole
    here (under 1 MiB) is checked to its end, so a truncated small file fails now; a longer one is
    reported when Spark reaches the cut (:mod:`batchml.io.read_failures`).  When no line ends within
    ``nbytes``, the cut first line is returned.
    """
    fs, p = filesystem(path)
    gz = path.endswith(".gz")
    limit = GZIP_HEAD_BYTES if gz else nbytes
    with fs.open_input_stream(p, compression=None) as raw:
        data = raw.read(limit)
    if gz:
        data = _gunzip_head(path, data, nbytes, whole=len(data) < limit)
    parts = data.removeprefix(UTF8_BOM).decode(encoding, errors="replace").split("\n")
    if len(data) >= nbytes and len(parts) > 1:
        parts = parts[:-1]  # drop a line cut by the read limit
    return [ln.rstrip("\r") for ln in parts if ln.strip()][:n]


def _gunzip_head(path: str, data: bytes, nbytes: int, *, whole: bool) -> bytes:
    """The first ``nbytes`` un-gzipped bytes of ``data``; all of it checked when ``whole``."""
    try:
        if whole:
            return gzip.decompress(data)[:nbytes]
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            return stream.read1(nbytes)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: not a readable gzip file ({exc})") from None


def check_head(paths: Sequence[str], *, looks_right: Callable[[list[str]], bool], what: str,
               max_files: int = 32, encoding: str = "utf-8") -> None:
    """Fail fast when a file is not in the declared format at all (not merely a few bad lines).

    ``looks_right`` gets the first non-blank lines of a file; ``what`` describes the expected format
    in the error message, which names the file and quotes its first line.
    """
    step = max(1, len(paths) // max_files)
    for path in list(paths)[::step][:max_files]:
        lines = head_lines(path, encoding=encoding)
        if not lines:
            raise InputError(f"{path} is empty (no non-blank line); expected {what}")
        if not looks_right(lines):
            raise InputError(f"{path} is not {what}; its first line is {lines[0][:120]!r}")


def mostly(lines: list[str], rx: str, skip_first_if: str | None = None, share: float = 0.8) -> bool:
    """True when at least ``share`` of ``lines`` fully match ``rx`` (the first line may be a header
    matching ``skip_first_if``).  ``\\d`` and ``\\s`` match ASCII only, as in Spark's regexes."""
    if skip_first_if is not None and lines and re.fullmatch(skip_first_if, lines[0].strip()):
        lines = lines[1:]
    if not lines:
        return True
    return sum(bool(re.fullmatch(rx, x, re.ASCII)) for x in lines) >= share * len(lines)
