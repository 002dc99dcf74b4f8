"""Column names and table schemas: the output contract of every table (see shared DESIGN.md)."""
from __future__ import annotations

from pyspark.sql import types as T

USER_COL = "user_idx"
ITEM_COL = "item_idx"
RATING_COL = "rating"
TS_COL = "ts"
USER_ID_COL = "user_id"
ITEM_ID_COL = "item_id"
TITLE_COL = "title"
YEAR_COL = "year"
VERIFIED_COL = "verified"
HELPFUL_COL = "helpful_votes"

RATINGS_SCHEMA = T.StructType([
    T.StructField(USER_COL, T.IntegerType(), False),
    T.StructField(ITEM_COL, T.IntegerType(), False),
    T.StructField(RATING_COL, T.FloatType(), False),
    T.StructField(TS_COL, T.TimestampType(), True),
])

USERS_SCHEMA = T.StructType([
    T.StructField(USER_COL, T.IntegerType(), False),
    T.StructField(USER_ID_COL, T.StringType(), False),
])

ITEMS_SCHEMA = T.StructType([
    T.StructField(ITEM_COL, T.IntegerType(), False),
    T.StructField(ITEM_ID_COL, T.StringType(), False),
    T.StructField(TITLE_COL, T.StringType(), True),
    T.StructField(YEAR_COL, T.IntegerType(), True),
])

REJECTS_SCHEMA = T.StructType([
    T.StructField("source", T.StringType(), False),
    T.StructField("line", T.LongType(), True),
    T.StructField("raw", T.StringType(), True),
    T.StructField("reason", T.StringType(), False),
])

PAIRS_SCHEMA = T.StructType([
    T.StructField(USER_COL, T.IntegerType(), False),
    T.StructField(ITEM_COL, T.IntegerType(), False),
    T.StructField(TS_COL, T.TimestampType(), True),
])

# Table (directory) names inside a dataset dir.
RATINGS = "ratings"
USERS = "users"
ITEMS = "items"
REJECTS = "rejects"
PROBE = "probe"
QUALIFYING = "qualifying"
STATS_FILE = "_stats.json"
