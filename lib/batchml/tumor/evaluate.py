"""Evaluation of the tumor CNN: predictions (a ``mapInPandas`` over the shards), BER, accuracy,
confusion matrix, ROC AUC (plain numpy), the BER-minimising threshold chosen on the validation split,
and a PNG grid of test scans with their predictions.
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


def confusion(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Counts of ``tp, fp, tn, fn`` predicting tumor where ``score >= threshold``."""
    pred = scores >= threshold
    pos = labels == 1
    return {"tp": int(np.sum(pred & pos)), "fp": int(np.sum(pred & ~pos)),
            "tn": int(np.sum(~pred & ~pos)), "fn": int(np.sum(~pred & pos))}


def rates(c: dict) -> dict:
    """FPR, FNR, BER = (FPR + FNR) / 2 and accuracy of a confusion dict (nan where undefined)."""
    neg, pos = c["fp"] + c["tn"], c["tp"] + c["fn"]
    fpr = c["fp"] / neg if neg else float("nan")
    fnr = c["fn"] / pos if pos else float("nan")
    n = neg + pos
    return {"fpr": fpr, "fnr": fnr, "ber": (fpr + fnr) / 2, "accuracy": (c["tp"] + c["tn"]) / n if n else float("nan")}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative (ties count one half), from average ranks (Mann-Whitney U)."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(np.sum(labels == 1)), int(np.sum(labels != 1))
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = np.sum(ranks[labels == 1]) - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The threshold minimising BER (predict tumor where ``score >= t``) and that BER.

    Candidates are midpoints between consecutive distinct scores (plus the ends); ties of BER go to
    the threshold nearest 0.5.
    """
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    u = np.unique(scores)
    cands = np.concatenate([[0.0], (u[:-1] + u[1:]) / 2.0, [np.nextafter(u[-1], np.inf)]]) if len(u) else np.array([0.5])
    pos, neg = labels == 1, labels != 1
    n_pos, n_neg = max(int(pos.sum()), 1), max(int(neg.sum()), 1)
    pred = scores[None, :] >= cands[:, None]
    fnr = np.sum(~pred & pos[None, :], axis=1) / n_pos
    fpr = np.sum(pred & neg[None, :], axis=1) / n_neg
    ber = (fnr + fpr) / 2
    best = np.flatnonzero(np.isclose(ber, ber.min()))
    k = best[np.argmin(np.abs(cands[best] - 0.5))]
    return float(cands[k]), float(ber[k])


def evaluate(val_labels, val_scores, test_labels, test_scores) -> dict:
    """Test-split figures at the BER-minimising threshold of the validation scores (and at 0.5):
    the test labels are used only to score."""
    threshold, val_ber = best_threshold(val_labels, val_scores)
    c = confusion(np.asarray(test_labels), np.asarray(test_scores), threshold)
    c05 = confusion(np.asarray(test_labels), np.asarray(test_scores), 0.5)
    r, r05 = rates(c), rates(c05)
    return {"threshold": threshold, "validation_ber_at_threshold": val_ber,
            "ber": r["ber"], "fpr": r["fpr"], "fnr": r["fnr"], "accuracy": r["accuracy"],
            "confusion": {"actual_tumor": {"predicted_tumor": c["tp"], "predicted_none": c["fn"]},
                          "actual_none": {"predicted_tumor": c["fp"], "predicted_none": c["tn"]}},
            "roc_auc": roc_auc(np.asarray(test_labels), np.asarray(test_scores)),
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
