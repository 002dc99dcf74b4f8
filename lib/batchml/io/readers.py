"""The dump formats the ingest reads, each with its one reader (format name -> reader)."""
from __future__ import annotations

from batchml.errors import ConfigError
from batchml.io.amazon import parse_amazon_json_dump, parse_amazon_tsv_dump
from batchml.io.movielens import parse_movielens_dump
from batchml.io.netflix_csv import parse_netflix_csv_dump
from batchml.io.netflix_dump import parse_netflix_dump
from batchml.io.parsed import Reader

READERS: dict[str, Reader] = {
    "netflix": parse_netflix_dump,
    "netflix-csv": parse_netflix_csv_dump,
    "amazon-tsv": parse_amazon_tsv_dump,
    "amazon-json": parse_amazon_json_dump,
    "movielens": parse_movielens_dump,
}

#: the ``--format`` names, in the order the docs list them
FORMATS = tuple(READERS)


def reader_for(fmt: str) -> Reader:
    """The reader of format ``fmt``; :class:`ConfigError` naming the known formats otherwise."""
    if fmt not in READERS:
        raise ConfigError(f"unknown format {fmt!r} (known: {', '.join(sorted(READERS))})")
    return READERS[fmt]
