"""Column, table and file names of the tumor image shards and training outputs.

The names the tumor jobs share with the rating jobs (``rejects``, ``_stats.json``, ``metrics.json``)
live in :mod:`batchml.schema`.
"""
from __future__ import annotations

PATH_COL = "path"          # source file, relative to the input root
LABEL_COL = "label"        # 1: tumor, 0: none
HASH_COL = "hash"          # sha256 of the file bytes, hex
SPLIT_COL = "split"        # train | validation | test
GROUP_COL = "group"        # near-duplicate group: the smallest content hash among its members
PHASH_COL = "phash"        # 64-bit perceptual hash of the cropped scan (staging only)
WIDTH_COL = "orig_width"
HEIGHT_COL = "orig_height"
MODE_COL = "orig_mode"     # Pillow mode of the file (L, RGB, RGBA, P, ...)
FORMAT_COL = "orig_format"  # JPEG, PNG, ...
SIZE_COL = "size"          # side of the square pixel grid
PIXELS_COL = "pixels"      # size*size floats in [0, 1], row-major
ERROR_COL = "error"        # decode error (staging only)
PROB_COL = "prob_tumor"

TRAIN, VALIDATION, TEST = "train", "validation", "test"
IMAGES = "images"          # Parquet partitioned by split
PREDICTIONS = "predictions"
MODEL_FILE = "model.keras"
CHECKPOINTS = "checkpoints"
GRID_FILE = "test_grid.png"
HISTORY_FILE = "train_history.json"
