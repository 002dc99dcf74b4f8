"""Evaluation of the tumor CNN: predictions (a ``mapInPandas`` over the shards), BER, accuracy,
confusion matrix and ROC AUC at the BER-minimising threshold chosen on the validation split (all from
:mod:`batchml.binary_metrics`), and a PNG grid of test scans with their predictions.
"""
from __future__ import annotations

import logging
import os
from typing import Iterator

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from batchml import binary_metrics as B
from batchml.tumor import schema as S
from batchml.tumor.images import pixels_array

LOG = logging.getLogger("batchml.tumor")

_MODELS: dict = {}


def _load_model(path: str):
    """Load (once per Python worker and file version) a saved ``.keras`` model."""
    key = (path, os.path.getmtime(path))
    if key not in _MODELS:
        import keras
        _MODELS.clear()
        _MODELS[key] = keras.models.load_model(path, compile=False)
    return _MODELS[key]


def predict_batches(model_path: str, size: int, batch_size: int = 256):
    """A ``mapInPandas`` function adding ``prob_tumor`` (and dropping ``pixels``)."""
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = None
        for pdf in batches:
            if model is None:
                model = _load_model(model_path)
            x = pixels_array(list(pdf[S.PIXELS_COL]), size)
            probs = np.zeros(len(pdf), np.float64)
            for i in range(0, len(x), batch_size):
                probs[i:i + batch_size] = np.asarray(model(x[i:i + batch_size], training=False))[:, 1]
            out = pdf.drop(columns=[S.PIXELS_COL])
            out[S.PROB_COL] = probs
            yield out
    return run


def with_predictions(images_df: DataFrame, model_path: str, size: int) -> DataFrame:
    """Score every image with the saved model.

    Output columns: ``path, label, hash, split, prob_tumor``.
    """
    base = images_df.select(S.PATH_COL, S.LABEL_COL, S.HASH_COL, S.SPLIT_COL, S.PIXELS_COL)
    schema = T.StructType([f for f in base.schema.fields if f.name != S.PIXELS_COL]
                          + [T.StructField(S.PROB_COL, T.DoubleType(), False)])
    return base.mapInPandas(predict_batches(model_path, size), schema)


def evaluate(val_labels, val_scores, test_labels, test_scores) -> dict:
    """Test-split figures at the BER-minimising threshold of the validation scores (and at 0.5):
    the test labels are used only to score.  A scan is predicted tumor where ``score >= threshold``
    (:mod:`batchml.binary_metrics`, ``inclusive``)."""
    threshold, val_ber = B.best_threshold(B.ScoreCounts.of(val_labels, val_scores))
    test = B.ScoreCounts.of(test_labels, test_scores)
    c, c05 = B.confusion(test, threshold, inclusive=True), B.confusion(test, 0.5, inclusive=True)
    r, r05 = B.rates(c), B.rates(c05)
    return {"threshold": threshold, "validation_ber_at_threshold": val_ber,
            "ber": r["ber"], "fpr": r["fpr"], "fnr": r["fnr"], "accuracy": r["accuracy"],
            "confusion": {"actual_tumor": {"predicted_tumor": c["tp"], "predicted_none": c["fn"]},
                          "actual_none": {"predicted_tumor": c["fp"], "predicted_none": c["tn"]}},
            "roc_auc": B.roc_auc(test),
            "at_0_5": {"ber": r05["ber"], "accuracy": r05["accuracy"], **c05},
            "test_images": int(len(test_labels)), "validation_images": int(len(val_labels))}


def draw_grid(tiles: list[dict], size: int, path: str, columns: int = 6, tile: int = 128) -> None:
    """A PNG grid of scans; each tile is captioned with truth, prediction and probability and framed
    green (correct) or red (wrong).  ``tiles``: dicts with ``pixels, label, prob_tumor, prediction``."""
    columns = max(1, min(columns, len(tiles)))
    rows = max(1, -(-len(tiles) // columns))
    caption = 14
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    names = {0: "none", 1: "tumor"}
    for i, t in enumerate(tiles):
        arr = (np.clip(np.asarray(t["pixels"], np.float32).reshape(size, size), 0, 1) * 255).astype(np.uint8)
        img = Image.fromarray(arr, "L").resize((tile - 6, tile - 6), Image.BILINEAR).convert("RGB")
        x, y = (i % columns) * tile, (i // columns) * (tile + caption)
        ok = int(t["prediction"]) == int(t["label"])
        draw.rectangle([x, y, x + tile - 1, y + tile - 1], fill=(0, 160, 0) if ok else (210, 0, 0))
        sheet.paste(img, (x + 3, y + 3))
        draw.text((x + 2, y + tile), f"T:{names[int(t['label'])]} P:{names[int(t['prediction'])]} "
                                     f"{t['prob_tumor']:.2f}", fill=(0, 0, 0))
    sheet.save(path, format="PNG")
