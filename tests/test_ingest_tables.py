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


def _latest_reference(rows):
    """Plain Python: per (user, item) the row of greatest (ts, source, line), and how many rows."""
    best, n = {}, {}
    for r in rows:
        k = (r[0], r[1])
        n[k] = n.get(k, 0) + 1
        if k not in best or r[3:] > best[k][3:]:
            best[k] = r
    return sorted((*best[k], n[k]) for k in best)


def test_keep_latest_every_path_matches_plain_python(spark, monkeypatch):
    """No repeated key (no join), a few (broadcast anti-join), many (the one aggregate: the
    broadcast limit lowered), and ``few`` (the one aggregate at once): the same rows and counts."""
    from batchml import indexing
    unique = [(f"u{i}", f"i{i % 7}", float(i % 5), i, "a.txt", i) for i in range(40)]
    repeated = unique + [("u3", "i3", 1.0, 3, "b.txt", 1), ("u3", "i3", 2.0, 3, "a.txt", 9),
                         ("u5", "i5", 4.0, 99, "a.txt", 2)]
    args = dict(keys=["user_id", "item_id"], order=["ts", "source", "line"], value_cols=["rating"])
    schema = "user_id string, item_id string, rating double, ts long, source string, line long"
    for rows in (unique, repeated):
        df = spark.createDataFrame(rows, schema)
        expected = _latest_reference(rows)
        for few, limit in ((False, indexing.BROADCAST_MAX_VALUES), (False, 1), (True, 0)):
            monkeypatch.setattr(indexing, "BROADCAST_MAX_VALUES", limit)
            got = sorted(tuple(r) for r in indexing.keep_latest(df, few=few, **args).collect())
            assert got == expected, (few, limit, len(rows))
            n_repeated = indexing.latest_and_repeats(df, few=few, **args)[1]
            assert n_repeated == (None if few else 0 if rows is unique else 2), (few, limit)


def test_integer_ids_index_and_map_like_their_text(spark):
    """A reader's integer ids (Netflix) get the dense ids their text gets, in numeric order, on the
    distributed and the driver path; an id map (text ids) joins them through ``keyed_like``."""
    from batchml.indexing import index_ids, keyed_like
    ids = [7, 10, 7, 123456789, 2, 10]
    expected = [(i, str(v)) for i, v in enumerate(sorted(set(ids)))]
    as_int = spark.createDataFrame([(v,) for v in ids], "user_id int")
    as_text = spark.createDataFrame([(str(v),) for v in ids], "user_id string")
    for df in (as_int, as_text):
        for local in (False, True):
            users = index_ids(df, col_id="user_id", col_idx="user_idx", numeric=True, local=local)
            assert users.schema["user_id"].dataType.simpleString() == "string"
            assert sorted(tuple(r) for r in users.collect()) == expected, (df.schema, local)
    users = index_ids(as_text, col_id="user_id", col_idx="user_idx", numeric=True)
    mapped = as_int.join(keyed_like(users, as_int, "user_id"), on="user_id")
    assert sorted((r.user_id, r.user_idx) for r in mapped.collect()) == sorted(
        (v, dict((b, a) for a, b in expected)[str(v)]) for v in ids)


def test_repeated_integer_key_pairs_unpack_exactly(spark):
    """Two int keys are grouped packed into one long: the repeated pairs come back as they were,
    negative and extreme values included, and match the pair-of-columns aggregate."""
    from batchml.indexing import repeated_keys
    edge = [-2**31, -1, 0, 1, 17770, 2**31 - 1]
    rows = [(u, i) for u in edge for i in edge] + [(u, i) for u in edge[::2] for i in edge[1::2]]
    df = spark.createDataFrame(rows, "user_id int, item_id int")
    expected = sorted({r for r in rows if rows.count(r) > 1})
    got = sorted(tuple(r) for r in repeated_keys(df, ["user_id", "item_id"]).collect())
    as_long = df.selectExpr("cast(user_id as long) user_id", "cast(item_id as long) item_id")
    assert got == expected == sorted(tuple(r) for r in repeated_keys(as_long, ["user_id", "item_id"]).collect())
    assert len(expected) == 9
