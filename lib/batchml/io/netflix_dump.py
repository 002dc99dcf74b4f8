"""The Netflix Prize dump as a whole: finding its files and parsing them into the common
ingest columns (see :class:`batchml.io.parsed.ParsedDump`)."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml import schema as S
from batchml.errors import InputError
from batchml.io import netflix as NF
from batchml.io.files import list_files
from batchml.io.parsed import ParsedDump
from batchml.io.peek import check_head

LOG = logging.getLogger("batchml.ingest")


@dataclass
class NetflixFiles:
    """The files of a Netflix Prize dump found under an input directory."""

    root: str
    ratings: list[str]
    titles: str | None = None
    probe: str | None = None
    qualifying: str | None = None
    layout: str = "combined"


def discover_netflix(root: str) -> NetflixFiles:
    """Find ``combined_data_*.txt`` (or ``training_set/mv_*.txt``), ``movie_titles.{csv,txt}``,
    ``probe.txt`` and ``qualifying.txt`` (each optionally ``.gz``) under ``root``."""
    combined = list_files(root, pattern=r"combined_data_\d+\.txt(\.gz)?")
    training = list_files(root, "training_set", pattern=r"mv_\d+\.txt(\.gz)?")
    if combined and training:
        raise InputError(f"{root} has both combined_data_*.txt and training_set/mv_*.txt: pass one layout")
    if not combined and not training:
        raise InputError(f"{root} has no Netflix ratings files (expected combined_data_*.txt or "
                       "training_set/mv_*.txt, optionally .gz)")

    def pick(*names: str) -> str | None:
        for n in names:
            found = list_files(root, pattern=re.escape(n) + r"(\.gz)?")
            if found:
                return found[0]
        return None

    return NetflixFiles(root=root, ratings=combined or training,
                        titles=pick("movie_titles.csv", "movie_titles.txt"), probe=pick("probe.txt"),
                        qualifying=pick("qualifying.txt"), layout="combined" if combined else "training_set")


_HEADER_LINE = re.compile(r"^[0-9]+:$")
_DATA_LINE = re.compile(r"^[0-9]+,[0-9],[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _looks_like_netflix(lines: list[str]) -> bool:
    """A movie header among the first 20 lines and at least 80% header or data lines."""
    lines = [x.strip() for x in lines]
    good = sum(bool(_HEADER_LINE.match(x) or _DATA_LINE.match(x)) for x in lines)
    return any(_HEADER_LINE.match(x) for x in lines[:20]) and good >= 0.8 * len(lines)


def check_netflix_format(paths: Sequence[str]) -> None:
    """Fail fast when a file is not in the Netflix raw format at all (not merely a few bad lines)."""
    check_head(paths, looks_right=_looks_like_netflix,
               what="a Netflix Prize ratings file (expected 'MovieID:' header lines followed by "
                    "'CustomerID,Rating,YYYY-MM-DD' lines)")


def _common(df: DataFrame) -> DataFrame:
    """Netflix parse columns -> the common ingest columns (int ids: see ``numeric_ids`` of
    :class:`~batchml.io.parsed.ParsedDump`; float rating, timestamp)."""
    return df.select(
        "source", "line", "kind",
        F.col("user_id").cast(T.IntegerType()).alias("user_id"),
        F.col("movie_id").cast(T.IntegerType()).alias("item_id"),
        F.col("rating").cast(T.FloatType()).alias("rating"),
        F.col("date").cast(T.TimestampType()).alias("ts"),
        "reason", "raw",
    )


def parse_netflix_dump(spark: SparkSession, root: str, raw_max: int) -> ParsedDump:
    """Parse a Netflix dump into a :class:`batchml.io.parsed.ParsedDump`."""
    files = discover_netflix(root)
    LOG.info("Netflix dump (%s layout): %d ratings files, titles=%s, probe=%s, qualifying=%s",
             files.layout, len(files.ratings), bool(files.titles), bool(files.probe), bool(files.qualifying))
    check_netflix_format(files.ratings)
    ratings = _common(NF.read_netflix_blocks(spark, files.ratings, NF.RATING_FIELDS, raw_max))
    items = None
    if files.titles:
        items = NF.read_movie_titles(spark, files.titles, raw_max_chars=raw_max).select(
            "source", "line", "kind", F.col("movie_id").cast(T.IntegerType()).alias("item_id"), "title", "year",
            "reason", "raw")
    pairs = {}
    for name, path, fields in ((S.PROBE, files.probe, NF.PROBE_FIELDS),
                               (S.QUALIFYING, files.qualifying, NF.QUALIFYING_FIELDS)):
        if path:
            pairs[name] = _common(NF.read_netflix_blocks(spark, [path], fields, raw_max))
    return ParsedDump(format="netflix", ratings=ratings, items=items, pairs=pairs, numeric_ids=True,
                      info={"layout": files.layout})
