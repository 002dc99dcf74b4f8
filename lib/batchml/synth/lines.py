"""Helpers the line-per-record dump generators share: vectorized line building with pyarrow,
planting extra lines (broken, duplicate, blank) at chosen positions, writing plain or gzip files, and
the ground-truth record saved beside a dump."""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchml.schema import GROUND_TRUTH, TRUTH_FILE

ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)


@dataclass
class LineDump:
    """What a generator wrote, for tests and demos.

    ``planted``: broken lines by reject reason; ``duplicates``: extra lines repeating an earlier
    (user, item) pair; ``blank``: blank lines written; ``truth``: what ``ground_truth/truth.json``
    holds.
    """

    path: Path
    files: list[str]
    n_ratings: int
    planted: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    blank: int = 0
    truth: dict = field(default_factory=dict)


def write_lines(fh, arr: pa.Array) -> None:
    """Write a string array whose values already end in newlines, straight from its buffer."""
    if isinstance(arr, pa.ChunkedArray):
        for chunk in arr.chunks:
            write_lines(fh, chunk)
        return
    if len(arr) == 0:
        return
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + len(arr) + 1]
    fh.write(memoryview(arr.buffers()[2])[offsets[0]: offsets[-1]])


def as_strings(a: np.ndarray) -> pa.Array:
    """Numbers as a string array."""
    return pc.cast(pa.array(a), pa.string())


def date_strings(dates: np.ndarray) -> pa.Array:
    """'YYYY-MM-DD' strings of datetime64[D] values via a lookup table of the distinct days (fast)."""
    if len(dates) == 0:
        return pa.array([], pa.string())
    first = dates.min()
    offs = (dates - first).astype(np.int64)
    table = np.datetime_as_string(first + np.arange(offs.max() + 1).astype("timedelta64[D]"), unit="D")
    return pa.array(table.tolist(), pa.string()).take(pa.array(offs))


def join_cols(cols: Sequence[pa.Array | str], sep: str) -> pa.Array:
    """Lines (ending in ``\\n``) from columns joined by ``sep``; a plain str is a constant column."""
    n = next(len(c) for c in cols if not isinstance(c, str))
    arrs = [pa.array(np.full(n, c, dtype=object), pa.string()) if isinstance(c, str) else c for c in cols]
    line = pc.binary_join_element_wise(*arrs, sep)
    return pc.binary_join_element_wise(line, pa.scalar(""), "\n")


def concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string arrays and constants (no separator)."""
    n = next(len(c) for c in parts if not isinstance(c, str))
    arrs = [pa.array(np.full(n, c, dtype=object), pa.string()) if isinstance(c, str) else c for c in parts]
    return pc.binary_join_element_wise(*arrs, pa.scalar(""))


def fixed_codes(values: np.ndarray, width: int, prefix: str = "") -> pa.Array:
    """Distinct non-negative ints as fixed-width base-36 codes (``"B0" + 8 chars`` style ids)."""
    v = np.asarray(values, dtype=np.int64).copy()
    digits = np.empty((len(v), width), dtype=np.uint8)
    for k in range(width - 1, -1, -1):
        digits[:, k] = ALNUM[v % 36]
        v //= 36
    strings = digits.view(f"S{width}").ravel().astype(str)
    return pa.array(np.char.add(prefix, strings) if prefix else strings, pa.string())


def pick(options: Sequence[str], idx: np.ndarray) -> pa.Array:
    """``options[idx]`` as a string array."""
    return pa.array(list(options), pa.string()).take(pa.array(np.asarray(idx, dtype=np.int64)))


def insert_lines(body: pa.Array, extra: Sequence[str], after: np.ndarray) -> pa.Array:
    """Insert ``extra`` lines (without newline) into ``body`` (lines ending in newline): ``extra[k]``
    goes right after ``body[after[k]]`` (``-1``: before the first line)."""
    if len(extra) == 0:
        return body
    if isinstance(body, pa.ChunkedArray):
        body = body.combine_chunks()
    after = np.asarray(after, dtype=np.int64)
    order = np.argsort(after, kind="stable")
    after = after[order]
    lines = pa.array([extra[i] + "\n" for i in order], pa.string())
    n, m = len(body), len(lines)
    take = np.empty(n + m, dtype=np.int64)
    take[np.arange(n) + np.searchsorted(after, np.arange(n), side="left")] = np.arange(n)
    take[after + 1 + np.arange(m)] = n + np.arange(m)
    return pa.concat_arrays([body.cast(pa.string()), lines]).take(pa.array(take))


def write_file(path: Path, chunks: Sequence[pa.Array], gz: bool, encoding: str = "utf-8") -> None:
    """Write line arrays to ``path`` (gzip when ``gz``); non-UTF-8 encodings are re-encoded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = gzip.open(path, "wb", compresslevel=3) if gz else open(path, "wb")
    with fh:
        for arr in chunks:
            if encoding.lower().replace("-", "") == "utf8":
                write_lines(fh, arr)
            else:
                fh.write("".join(arr.to_pylist()).encode(encoding))


def save_truth(out: Path, truth: dict) -> None:
    """``ground_truth/truth.json`` beside the dump."""
    gt = out / GROUND_TRUTH
    gt.mkdir(parents=True, exist_ok=True)
    (gt / TRUTH_FILE).write_text(json.dumps(truth, indent=2, default=str))


def spread(rng: np.random.Generator, n_lines: int, k: int) -> np.ndarray:
    """``k`` random insertion points ``after`` in ``[0, n_lines - 1]`` (never before line 1, which
    may be a header)."""
    return rng.integers(0, max(1, n_lines), size=k)
