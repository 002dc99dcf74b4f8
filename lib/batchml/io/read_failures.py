"""Spark failing to read an input file (a truncated or corrupt gzip, a file that vanished), told
as one :class:`~batchml.errors.InputError` naming the file instead of a Java stack trace.

The format check (:mod:`batchml.io.peek`) reads only a file's head; a gzip cut short past its first
MiB, or corrupt in the middle, is found when Spark's scan reaches the damage, as
``[FAILED_READ_FILE…] Encountered error while reading file F`` caused by ``java.io.EOFException:
Unexpected end of input stream`` or ``java.io.IOException: invalid stored block lengths``.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

from batchml.errors import InputError

_FAILED_READ = re.compile(r"\[FAILED_READ_FILE[.A-Z_]*\] Encountered error while reading file (\S+?)\.?\s")
_CAUSE = re.compile(r"^Caused by: ([\w.$]+(?:Exception|Error)): ?(.*)$", re.MULTILINE)


def read_failure(exc: BaseException, *, internal: str | None = None) -> InputError | None:
    """The :class:`InputError` for Spark's failure to read an input file, or None when ``exc`` is
    something else (or names a file under ``internal``, the job's own temporary output)."""
    text = str(exc)
    found = _FAILED_READ.search(text)
    if found is None:
        return None
    path = re.sub(r"^file:(//)?", "", found.group(1))
    if internal and internal.rstrip("/") in path:
        return None
    causes = _CAUSE.findall(text)
    cause = f"{causes[-1][0].rsplit('.', 1)[-1]}: {causes[-1][1].strip()}" if causes else "unreadable"
    return InputError(f"cannot read input file {path} ({cause}); a truncated or corrupt gzip file? "
                      "re-fetch or re-compress it")


@contextmanager
def input_read_errors(*, internal: str | None = None) -> Iterator[None]:
    """Run a block that scans the input files; Spark's failure to read one becomes an
    :class:`InputError` naming it (see :func:`read_failure`)."""
    try:
        yield
    except Exception as exc:
        err = read_failure(exc, internal=internal)
        if err is None:
            raise
        raise err from None
