"""conform: the dataset tables in their declared schemas (batchml.schema)."""
from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality

from batchml import schema as S
from batchml.io.tables import conform

TS = dt.datetime(2005, 1, 2, 3, 4, 5)


def test_columns_in_schema_order_cast_to_declared_types(spark):
    df = spark.createDataFrame([(TS, 4.0, 7, 1, "x")],
                               "ts timestamp, rating double, item_idx long, user_idx int, user_id string")
    expected = spark.createDataFrame([(1, 7, 4.0, TS)], S.RATINGS_SCHEMA)
    got = conform(df, S.RATINGS_SCHEMA, S.RATINGS_OPTIONAL)
    assert_df_equality(got, expected, ignore_nullable=True)
    assert got.schema.simpleString() == "struct<user_idx:int,item_idx:int,rating:float,ts:timestamp>"


def test_optional_columns_kept_when_present(spark):
    df = spark.createDataFrame([(1, 2, 5.0, TS, 3, True), (1, 3, 1.0, None, None, None)],
                               "user_idx int, item_idx int, rating float, ts timestamp, "
                               "helpful_votes long, verified boolean")
    expected = spark.createDataFrame([(1, 2, 5.0, TS, True, 3), (1, 3, 1.0, None, None, None)],
                                     "user_idx int, item_idx int, rating float, ts timestamp, "
                                     "verified boolean, helpful_votes int")
    assert_df_equality(conform(df, S.RATINGS_SCHEMA, S.RATINGS_OPTIONAL), expected, ignore_nullable=True)


def test_rejects_with_null_line_and_empty_table(spark):
    df = spark.createDataFrame([("reason", None, "raw", "f.txt"), ("r2", 3, None, "g.txt")],
                               "reason string, line int, raw string, source string")
    expected = spark.createDataFrame([("f.txt", None, "raw", "reason"), ("g.txt", 3, None, "r2")],
                                     S.REJECTS_SCHEMA)
    assert_df_equality(conform(df, S.REJECTS_SCHEMA), expected, ignore_nullable=True)
    empty = conform(df.limit(0), S.REJECTS_SCHEMA)
    assert empty.count() == 0
    assert [(f.name, f.dataType) for f in empty.schema] == [(f.name, f.dataType) for f in S.REJECTS_SCHEMA]
