"""Reader for Kaggle's "Netflix Movie Rating Dataset" (a subset of the Prize data as CSV).

``Netflix_Dataset_Rating.csv``: header ``User_ID,Rating,Movie_ID``, then ``712664,5,3`` lines
(sorted by movie, no dates).  ``Netflix_Dataset_Movie.csv``: header ``Movie_ID,Year,Name``, UTF-8,
names double-quoted when they contain commas.  Either may be gzipped.
"""
from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from batchml.errors import InputError
from batchml.io import delimited as D
from batchml.io.files import directory_of, list_files, resolve_input
from batchml.io.parsed import ParsedDump
from batchml.io.peek import check_head, mostly
from batchml.io.text import read_small_text

LOG = logging.getLogger("batchml.ingest")

RATINGS_HEADER = "User_ID,Rating,Movie_ID"
MOVIES_HEADER = "Movie_ID,Year,Name"
RATING_FIELDS = ("user", "rating", "item")
_RATINGS_FILE = r"Netflix_Dataset_Rating.*\.csv(\.gz)?"
_MOVIES_FILE = r"Netflix_Dataset_Movie.*\.csv"
#: ``Movie_ID,Year,Name``: id, a 4-digit year (or NULL / empty), the name (quoted or not)
MOVIE_LINE = r'^\s*([0-9]+)\s*,\s*([0-9]{4}|NULL|)\s*,(.*)$'


def check_netflix_csv_format(paths) -> None:
    """Fail fast unless each file looks like ``User_ID,Rating,Movie_ID`` CSV."""
    check_head(paths, looks_right=lambda lines: mostly(lines, r"\s*\d+,\s*\d+,\s*\d+\s*",
                                                       skip_first_if=RATINGS_HEADER),
               what="a Kaggle Netflix ratings CSV (expected the header 'User_ID,Rating,Movie_ID' "
                    "and 'UserID,Rating,MovieID' lines of integers)")


def read_netflix_csv_ratings(spark: SparkSession, paths, raw_max: int = 300):
    """Parse ``Netflix_Dataset_Rating.csv`` files into the common ratings columns (``block, seq``
    positions; see :func:`batchml.io.delimited.parse_numeric_ratings`)."""
    return D.parse_numeric_ratings(D.read_text_lines(spark, paths), sep=",", fields=RATING_FIELDS,
                                   header=RATINGS_HEADER, raw_max=raw_max)


def read_netflix_csv_movies(spark: SparkSession, paths, raw_max: int = 300):
    """Parse ``Netflix_Dataset_Movie.csv`` (UTF-8, quoted names) into the common items columns."""
    return D.parse_title_lines(read_small_text(spark, paths, "UTF-8"), line_rx=MOVIE_LINE,
                               groups={"item": 1, "year": 2, "title": 3}, header=MOVIES_HEADER,
                               unquote=True, year="field", raw_max=raw_max)


def parse_netflix_csv_dump(spark: SparkSession, root: str, raw_max: int) -> ParsedDump:
    """Find and parse a Kaggle Netflix CSV dump into a :class:`batchml.io.parsed.ParsedDump`."""
    found = resolve_input(root, _RATINGS_FILE)
    if not found.files:
        raise InputError(f"{root} has no Kaggle Netflix ratings file (expected Netflix_Dataset_Rating.csv, "
                         "optionally .gz)")
    check_netflix_csv_format(found.files)
    movies = list_files(directory_of(found.root), pattern=_MOVIES_FILE)
    LOG.info("Kaggle Netflix CSV: %d ratings files, movies=%s", len(found.files), bool(movies))
    items = read_netflix_csv_movies(spark, movies, raw_max) if movies else None
    return ParsedDump(format="netflix-csv", ratings=read_netflix_csv_ratings(spark, found.files, raw_max),
                      items=items, numeric_ids=True, root=found.root)
