"""Run a little of each kind of Spark work a batchml job does, on a few generated rows.

    BATCHML_CDS_DUMP=.venv/spark-cds.jsa ./spark-submit.sh jobs/warmup.py

``make venv`` runs it once so that the driver JVM records the classes it loads into a class-data
sharing archive (``spark-submit.sh`` then starts every local driver from it, about 3 s sooner):
a session, Arrow hand-over, text and Parquet I/O, a shuffle, a join, a window, a Python worker and
an MLlib ALS fit.  It reads and writes only a temporary directory.
"""
from __future__ import annotations

import sys
import tempfile

from batchml.config import SparkSettings
from batchml.spark import build_session, local_frame


def warm_up(spark) -> int:
    """A few rows through each kind of work; returns how many ratings the tiny ALS saw."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    rows = [(u, i, float(1 + (u * 7 + i * 3) % 5)) for u in range(20) for i in range(10) if (u + i) % 3]
    df = local_frame(spark, rows, "user_idx int, item_idx int, rating float")
    with tempfile.TemporaryDirectory() as tmp:
        df.write.parquet(f"{tmp}/ratings")
        df.select(F.concat_ws(",", *df.columns).alias("value")).write.text(f"{tmp}/text")
        back = spark.read.parquet(f"{tmp}/ratings")
        lines = spark.read.text(f"{tmp}/text").count()
        means = back.groupBy("item_idx").agg(F.avg("rating").alias("m"))
        ranked = back.join(F.broadcast(means), "item_idx").withColumn(
            "r", F.row_number().over(Window.partitionBy("user_idx").orderBy(F.desc("rating"))))
        ranked.mapInArrow(lambda batches: batches, ranked.schema).collect()
        ALS(rank=2, maxIter=1, userCol="user_idx", itemCol="item_idx", ratingCol="rating",
            seed=1).fit(back).userFactors.count()
    return lines


def main() -> int:
    spark = build_session(SparkSettings(), app_name="batchml-warmup")
    try:
        print(f"warm-up: {warm_up(spark)} ratings")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
