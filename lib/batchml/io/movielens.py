"""Reader for the MovieLens dumps: 100K (``u.data`` + ``u.item``), 1M/10M (``ratings.dat`` +
``movies.dat``) and 20M/25M/latest (``ratings.csv`` + ``movies.csv``).

=========  ======================================  =============================================
variant    ratings                                 titles
=========  ======================================  =============================================
100k       ``user\\titem\\trating\\ttimestamp``       ``u.item``: 24 ``|`` fields, ISO-8859-1
dat        ``UserID::MovieID::Rating::Timestamp``  ``movies.dat``: ``MovieID::Title::Genres``,
                                                   ISO-8859-1
csv        header ``userId,movieId,rating,         ``movies.csv``: header, UTF-8, quoted titles
           timestamp``, half-star ratings
=========  ======================================  =============================================

The year of a title comes from its ``"Title (1995)"`` suffix.  Only the full ratings file of 100K
(``u.data``) is read, not the predefined ``u1.base`` ... splits.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from pyspark.sql import SparkSession

from batchml.errors import InputError
from batchml.io import delimited as D
from batchml.io.files import InputFiles, directory_of, list_files, resolve_input
from batchml.io.parsed import ParsedDump
from batchml.io.peek import check_head, mostly
from batchml.io.text import read_small_text

LOG = logging.getLogger("batchml.ingest")

FIELDS = ("user", "item", "rating", "ts")


@dataclass(frozen=True)
class Variant:
    """How one MovieLens release lays out its files."""

    name: str
    ratings_file: str      # regex of the ratings file name
    sep: str               # Java regex separating ratings fields
    line_rx: str           # regex a ratings line matches (format check)
    header: str | None
    half_stars: bool
    titles_file: str
    titles_encoding: str
    titles_rx: str          # regex of a title line: groups 1 = id, 2 = title
    titles_header: str | None


VARIANTS = (
    Variant("100k", r"u\.data(\.gz)?", "\t", r"\d+\t\d+\t\d+\t\d+", None, False,
            "u.item", "ISO-8859-1", r"^\s*([0-9]+)\|([^|]*)(?:\|[^|]*){22}$", None),
    Variant("dat", r"ratings\.dat(\.gz)?", "::", r"\d+::\d+::\d+::\d+", None, False,
            "movies.dat", "ISO-8859-1", r"^\s*([0-9]+)::(.*)::([^:]*)$", None),
    Variant("csv", r"ratings\.csv(\.gz)?", ",", r"\d+,\d+,[0-9.]+,\d+", "userId,movieId,rating,timestamp",
            True, "movies.csv", "UTF-8", r'^\s*([0-9]+),("(?:[^"]|"")*"|[^",]*),([^",]*)$',
            "movieId,title,genres"),
)


def discover_movielens(root: str) -> tuple[Variant, InputFiles, str | None]:
    """The MovieLens variant under ``root``, its ratings files and its titles file (or None)."""
    hits = [(v, resolve_input(root, v.ratings_file)) for v in VARIANTS]
    hits = [(v, f) for v, f in hits if f.files]
    if not hits:
        raise InputError(f"{root} has no MovieLens ratings file (expected u.data, ratings.dat or "
                         "ratings.csv, optionally .gz)")
    if len(hits) > 1:
        raise InputError(f"{root} holds more than one MovieLens release "
                         f"({', '.join(f.files[0] for _, f in hits)}): pass one directory per release")
    variant, found = hits[0]
    titles = list_files(directory_of(found.root), pattern=re.escape(variant.titles_file))
    return variant, found, titles[0] if titles else None


def check_movielens_format(variant: Variant, paths) -> None:
    """Fail fast unless each ratings file has the variant's line shape."""
    sep = {"\t": "tab", "::": "'::'", ",": "comma"}[variant.sep]
    check_head(paths, looks_right=lambda lines: mostly(lines, r"\s*" + variant.line_rx + r"\s*",
                                                       skip_first_if=variant.header),
               what=f"a MovieLens {variant.ratings_file.split('(')[0].replace(chr(92), '')} file "
                    f"(expected {sep}-separated user, movie, rating, timestamp"
                    + (f" under the header {variant.header!r})" if variant.header else ")"))


def read_movielens_ratings(spark: SparkSession, variant: Variant, paths, raw_max: int = 300):
    """Parse ratings files of ``variant`` into the common ratings columns (``block, seq``)."""
    return D.parse_numeric_ratings(D.read_text_lines(spark, paths), sep=variant.sep, fields=FIELDS,
                                   header=variant.header, half_stars=variant.half_stars, raw_max=raw_max)


def read_movielens_titles(spark: SparkSession, variant: Variant, path: str, raw_max: int = 300):
    """Parse the titles file of ``variant`` (decoded from its encoding) into the common items
    columns; the year comes from the title's ``(1995)`` suffix."""
    return D.parse_title_lines(read_small_text(spark, [path], variant.titles_encoding),
                               line_rx=variant.titles_rx, groups={"item": 1, "title": 2},
                               header=variant.titles_header, unquote=variant.name == "csv",
                               raw_max=raw_max)


def parse_movielens_dump(spark: SparkSession, root: str, raw_max: int) -> ParsedDump:
    """Find and parse a MovieLens dump into a :class:`batchml.io.parsed.ParsedDump`."""
    variant, found, titles = discover_movielens(root)
    check_movielens_format(variant, found.files)
    LOG.info("MovieLens (%s): ratings %s, titles %s", variant.name, found.files, titles)
    items = read_movielens_titles(spark, variant, titles, raw_max) if titles else None
    return ParsedDump(format="movielens", ratings=read_movielens_ratings(spark, variant, found.files, raw_max),
                      items=items, numeric_ids=True, root=found.root, info={"variant": variant.name})
