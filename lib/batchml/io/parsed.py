"""The shape every dump reader returns: a :class:`ParsedDump` of lines classified by kind.

Each format's reader (see :mod:`batchml.io.readers`) turns its files into these common columns;
everything after that (staging, the reject limit, de-duplication, dense ids, pair tables,
statistics) is shared by :func:`batchml.ingest.ingest`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pyspark.sql import DataFrame, SparkSession

from batchml import schema as S

#: the ``kind`` of a parsed line; every line read is exactly one of them
KIND_HEADER, KIND_DATA, KIND_BLANK, KIND_REJECT = "header", "data", "blank", "reject"

#: optional per-rating columns a format may provide (Amazon), kept in the ratings table
OPTIONAL_RATING_COLS = (S.VERIFIED_COL, S.HELPFUL_COL)


@dataclass
class ParsedDump:
    """A dump parsed into common columns, before staging.

    ``ratings``: ``source, line, kind, user_id, item_id, rating float, ts timestamp,
    [verified boolean, helpful_votes int,] reason, raw`` (kind: header / data / blank / reject).
    Ids are strings, or integers where the reader parses them as numbers (``numeric_ids`` is then
    set: the Netflix Prize dump's are int, MovieLens's and the Kaggle CSV's long): the shared
    stages key on the ids as they come (10M Prize-shaped ratings: int keys de-duplicate, index and
    map to dense ids about twice as fast as their text) and the users and items tables store their
    text.  A reader gives all its id columns one type.
    ``items``: ``source, line, kind, item_id, title, year, reason, raw`` or None.
    ``pairs``: extra (user, item[, ts]) tables such as Netflix ``probe`` and ``qualifying``, in the
    ratings columns.

    A reader may give ``block, seq`` (from :func:`batchml.io.text.read_lines`) instead of ``line`` in
    ``ratings``: the lines are then numbered after staging, from the staged Parquet.  An optional
    ``title`` column in ``ratings`` (Amazon TSV product titles) names the items when ``items`` is None.
    ``root`` is the directory that ``source`` names are relative to (default: the input).
    """

    format: str
    ratings: DataFrame
    items: DataFrame | None = None
    pairs: dict[str, DataFrame] = field(default_factory=dict)
    numeric_ids: bool = False
    info: dict = field(default_factory=dict)
    root: str | None = None


#: a reader: ``(spark, input path, raw_max_chars) -> ParsedDump``
Reader = Callable[[SparkSession, str, int], ParsedDump]
