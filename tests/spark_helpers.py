"""Small helpers shared by the Spark tests."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def tiny_splits(spark, nbytes: int = 2048):
    """Force many file splits so records straddle partition boundaries; restores the settings."""
    keys = ("spark.sql.files.maxPartitionBytes", "spark.sql.files.openCostInBytes")
    old = {k: spark.conf.get(k) for k in keys}
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(nbytes))
    spark.conf.set("spark.sql.files.openCostInBytes", "0")
    try:
        yield
    finally:
        for k, v in old.items():
            spark.conf.set(k, v)
