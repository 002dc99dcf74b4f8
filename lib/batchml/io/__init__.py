"""Reading raw dumps and writing outputs atomically.

==================  ==============================================================================
module              holds
==================  ==============================================================================
``readers``         the dump formats: format name -> reader (``READERS``, ``FORMATS``)
``parsed``          what every reader returns (:class:`~batchml.io.parsed.ParsedDump`, line kinds)
``netflix_dump``    the Netflix Prize dump: its files and its reader
``netflix``         the Netflix raw line format (``MovieID:`` headers), parsed in parallel
``netflix_csv``     Kaggle's Netflix CSV dump
``amazon``          Amazon review dumps (Customer Reviews TSV, McAuley JSON lines)
``movielens``       MovieLens dumps (100K, 1M/10M ``.dat``, 20M+ CSV)
``delimited``       parsing line-per-record files (numeric ratings, title lines) into the common columns
``text``            reading text files as lines with file and position; exact line numbers
``peek``            a file's first lines: the fail-fast format check
``read_failures``   Spark failing to read an input file (truncated gzip), told as one InputError
``files``           finding input files on any filesystem (hidden names refused), naming them
``reasons``         reject reasons
``tables``          the dataset tables conformed to their declared schemas (:mod:`batchml.schema`)
``atomic``          atomic output directories and JSON documents
==================  ==============================================================================
"""
