"""Column, table and file names of the tumor image shards and training outputs."""
from __future__ import annotations

from pyspark.sql import types as T

PATH_COL = "path"          # source file, relative to the input root
LABEL_COL = "label"        # 1: tumor, 0: none
HASH_COL = "hash"          # sha256 of the file bytes, hex
SPLIT_COL = "split"        # train | test
WIDTH_COL = "orig_width"
HEIGHT_COL = "orig_height"
MODE_COL = "orig_mode"     # Pillow mode of the file (L, RGB, RGBA, P, ...)
FORMAT_COL = "orig_format"  # JPEG, PNG, ...
SIZE_COL = "size"          # side of the square pixel grid
PIXELS_COL = "pixels"      # size*size floats in [0, 1], row-major
ERROR_COL = "error"        # decode error (staging only)
PROB_COL = "prob_tumor"
PRED_COL = "prediction"
CORRECT_COL = "correct"

TRAIN, TEST = "train", "test"
IMAGES = "images"          # Parquet partitioned by split
REJECTS = "rejects"
STATS_FILE = "_stats.json"
METRICS_FILE = "metrics.json"
PREDICTIONS = "predictions"
MODEL_FILE = "model.keras"
CHECKPOINTS = "checkpoints"
GRID_FILE = "test_grid.png"

IMAGES_SCHEMA = T.StructType([
    T.StructField(PATH_COL, T.StringType(), False),
    T.StructField(LABEL_COL, T.IntegerType(), False),
    T.StructField(HASH_COL, T.StringType(), False),
    T.StructField(WIDTH_COL, T.IntegerType(), False),
    T.StructField(HEIGHT_COL, T.IntegerType(), False),
    T.StructField(MODE_COL, T.StringType(), False),
    T.StructField(FORMAT_COL, T.StringType(), False),
    T.StructField(SIZE_COL, T.IntegerType(), False),
    T.StructField(PIXELS_COL, T.ArrayType(T.FloatType(), False), False),
])
