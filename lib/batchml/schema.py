"""Every shared column, table and file name, and the declared schemas of the dataset tables.

One home per name: a module that reads or writes one of these imports it from here (the tumor job's
image-shard names live in :mod:`batchml.tumor.schema`; the model dir's own file names in
:mod:`batchml.model_dir`).
"""
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
# Review text (Amazon formats): the reviews table
REVIEW_ID_COL = "review_id"
TOTAL_VOTES_COL = "total_votes"
CATEGORY_COL = "category"
SUMMARY_COL = "summary"
BODY_COL = "body"
BODY_LENGTH_COL = "body_length"

# Model and output columns shared by factorize, recommend, similarity, query and the model dir.
BIAS_COL = "bias"                 # b_u / b_i
FEATURES_COL = "features"         # p_u / q_i, array<float>
COUNT_COL = "n_ratings"           # ratings of a user / item
PREDICTION_COL = "prediction"     # a predicted rating
SCORE_COL = "score"               # a ranking score
RANK_COL = "rank"                 # 1-based position in a list
MEAN_COL = "mean_rating"
SHRUNK_COL = "shrunk_mean"
BIAS_RANK_COL = "bias_rank"
OTHER_COL = "other_idx"           # the neighbour in similar_items / similar_users
SIMILARITY_COL = "similarity"
CO_COUNT_COL = "co_count"

# The dataset tables as the ingest writes them (batchml.io.tables.conform enforces them).
RATINGS_SCHEMA = T.StructType([
    T.StructField(USER_COL, T.IntegerType(), False),
    T.StructField(ITEM_COL, T.IntegerType(), False),
    T.StructField(RATING_COL, T.FloatType(), False),
    T.StructField(TS_COL, T.TimestampType(), True),
])

#: per-rating columns of the Amazon formats, after the RATINGS_SCHEMA ones when a dump has them
RATINGS_OPTIONAL = T.StructType([
    T.StructField(VERIFIED_COL, T.BooleanType(), True),
    T.StructField(HELPFUL_COL, T.IntegerType(), True),
])

#: per-review columns a format may provide (Amazon) beside the ratings columns: staged with the
#: parse and written to the reviews table only, so the ratings table stays lean
REVIEW_TEXT_COLS = (REVIEW_ID_COL, TOTAL_VOTES_COL, CATEGORY_COL, SUMMARY_COL, BODY_COL)

#: one row per rating (the same (user, item) rows as ratings), with the review's text; HTML
#: entities and ``<br />`` decoded; ``review_id`` is the dump's id or ``file:line`` when it has none
REVIEWS_SCHEMA = T.StructType([
    T.StructField(REVIEW_ID_COL, T.StringType(), False),
    T.StructField(USER_COL, T.IntegerType(), False),
    T.StructField(ITEM_COL, T.IntegerType(), False),
    T.StructField(RATING_COL, T.FloatType(), False),
    T.StructField(TS_COL, T.TimestampType(), True),
    T.StructField(VERIFIED_COL, T.BooleanType(), True),
    T.StructField(HELPFUL_COL, T.IntegerType(), True),
    T.StructField(TOTAL_VOTES_COL, T.IntegerType(), True),
    T.StructField(CATEGORY_COL, T.StringType(), True),
    T.StructField(SUMMARY_COL, T.StringType(), True),
    T.StructField(BODY_COL, T.StringType(), True),
    T.StructField(BODY_LENGTH_COL, T.IntegerType(), True),
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

RECOMMENDATIONS_SCHEMA = T.StructType([
    T.StructField(USER_COL, T.IntegerType(), False),
    T.StructField(ITEM_COL, T.IntegerType(), False),
    T.StructField(SCORE_COL, T.DoubleType(), False),
    T.StructField(RANK_COL, T.IntegerType(), False),
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

#: the probe pairs keep their ratings from the training files (null when the pair has none)
PROBE_SCHEMA = T.StructType([*PAIRS_SCHEMA.fields, T.StructField(RATING_COL, T.FloatType(), True)])

# Table (directory) names inside a dataset dir.
RATINGS = "ratings"
USERS = "users"
ITEMS = "items"
REJECTS = "rejects"
PROBE = "probe"
QUALIFYING = "qualifying"
REVIEWS = "reviews"
STATS_FILE = "_stats.json"
# beside a generated dump: the generating model (truth.json, users.parquet, items.parquet) and the
# counts of what was planted; the factorize job reads it as the RMSE floor
GROUND_TRUTH = "ground_truth"
TRUTH_FILE = "truth.json"

# Output tables and files of the similarity and recommendation jobs.
SIMILAR_ITEMS = "similar_items"
SIMILAR_USERS = "similar_users"
RECOMMENDATIONS = "recommendations"
RECOMMENDATIONS_READABLE = "recommendations_readable"
POPULAR = "popular"
METRICS_FILE = "metrics.json"

# Output of the review models job (jobs/reviews.py), beside metrics.json.
REVIEW_PIPELINE = "pipeline"        # the fitted MLlib PipelineModel (ours), MLlib's own save format
TERM_WEIGHTS = "term_weights"       # term, weight, idf of ours (rating model: the words' weights)
REVIEW_PREDICTIONS = "predictions"  # the test split scored by every model of the table
