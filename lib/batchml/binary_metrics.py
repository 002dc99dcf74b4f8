"""Binary-classifier figures from per-score counts: the BER-minimising threshold, BER, confusion,
ROC AUC and the ROC curve -- the one home of these for every classifier (the verified-purchase
model, the tumor CNN).

Scored rows become one row per distinct score (:class:`ScoreCounts`: score, positives, negatives):
aggregated in Spark (:func:`score_counts`) so the driver holds the distinct scores, never the rows,
or from numpy arrays (:meth:`ScoreCounts.of`); everything else is numpy over those counts and exact
(ties included).

Conventions: a row is predicted positive when ``score > threshold`` (MLlib's rule for
``LogisticRegressionModel.threshold``), or ``score >= threshold`` with ``inclusive=True`` (the tumor
CNN, whose training step counts p = 0.5 as a tumor); the candidate thresholds never equal a score,
so both rules choose alike; BER = (FPR + FNR) / 2; AUC is the probability that a random
positive scores above a random negative, ties counting one half (Mann-Whitney U).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


@dataclass(frozen=True)
class ScoreCounts:
    """Distinct scores in increasing order, with the positives and negatives at each."""

    scores: np.ndarray
    pos: np.ndarray
    neg: np.ndarray

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    @classmethod
    def of(cls, labels, scores) -> "ScoreCounts":
        """From per-row arrays (labels 1 = positive, anything else negative)."""
        labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
        u, inv = np.unique(scores, return_inverse=True)
        pos = np.bincount(inv, weights=(labels == 1).astype(np.float64), minlength=len(u))
        neg = np.bincount(inv, weights=(labels != 1).astype(np.float64), minlength=len(u))
        return cls(u, pos.astype(np.int64), neg.astype(np.int64))


def score_counts(df: DataFrame, *, score_col: str, label_col: str) -> ScoreCounts:
    """One row per distinct score of ``df`` (label 1.0 = positive), aggregated in Spark."""
    label = (F.col(label_col) == 1).cast("long")
    table = (df.groupBy(F.col(score_col).cast("double").alias("s"))
             .agg(F.sum(label).alias("pos"), F.sum(1 - label).alias("neg"))
             .orderBy("s").toArrow())
    return ScoreCounts(table.column("s").to_numpy(), table.column("pos").to_numpy().astype(np.int64),
                       table.column("neg").to_numpy().astype(np.int64))


def confusion(c: ScoreCounts, threshold: float, inclusive: bool = False) -> dict:
    """``tp, fp, tn, fn`` predicting positive where ``score > threshold`` (``>=`` if ``inclusive``)."""
    above = c.scores >= threshold if inclusive else c.scores > threshold
    tp, fp = int(c.pos[above].sum()), int(c.neg[above].sum())
    return {"tp": tp, "fp": fp, "tn": c.n_neg - fp, "fn": c.n_pos - tp}


def rates(cm: dict) -> dict:
    """FPR, FNR, BER and accuracy of a confusion dict (nan where undefined)."""
    neg, pos = cm["fp"] + cm["tn"], cm["tp"] + cm["fn"]
    fpr = cm["fp"] / neg if neg else float("nan")
    fnr = cm["fn"] / pos if pos else float("nan")
    n = neg + pos
    return {"ber": (fpr + fnr) / 2, "fpr": fpr, "fnr": fnr,
            "accuracy": (cm["tp"] + cm["tn"]) / n if n else float("nan")}


def roc_auc(c: ScoreCounts) -> float:
    """Area under the ROC curve (ties count one half); nan without both classes."""
    if c.n_pos == 0 or c.n_neg == 0:
        return float("nan")
    neg_below = np.cumsum(c.neg) - c.neg
    wins = np.sum(c.pos * (neg_below + 0.5 * c.neg))
    return float(wins / (c.n_pos * c.n_neg))


def thresholds(c: ScoreCounts) -> np.ndarray:
    """Every distinct decision: below the lowest score (all positive), the midpoints between
    consecutive scores, just above the highest score (all negative); none equals a score."""
    s = c.scores
    if len(s) == 0:
        return np.array([0.5])
    return np.concatenate([[s[0] - 1.0], (s[:-1] + s[1:]) / 2.0, [np.nextafter(s[-1], np.inf)]])


def ber_by_threshold(c: ScoreCounts) -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds, BER at each)``: with threshold j, the scores from index j up are positive."""
    fn = np.concatenate([[0], np.cumsum(c.pos)])
    tn = np.concatenate([[0], np.cumsum(c.neg)])
    fnr = fn / max(c.n_pos, 1)
    fpr = (c.n_neg - tn) / max(c.n_neg, 1)
    return thresholds(c), (fnr + fpr) / 2.0


def best_threshold(c: ScoreCounts, prefer: float = 0.5) -> tuple[float, float]:
    """The threshold of least BER and that BER; ties go to the threshold nearest ``prefer``."""
    cands, ber = ber_by_threshold(c)
    best = np.flatnonzero(np.isclose(ber, ber.min(), rtol=0, atol=1e-12))
    k = best[np.argmin(np.abs(cands[best] - prefer))]
    return float(cands[k]), float(ber[k])


def roc_points(c: ScoreCounts, max_points: int = 201) -> dict:
    """The ROC curve (``fpr``, ``tpr`` lists, from (0, 0) to (1, 1)), thinned to ``max_points``."""
    tp = np.concatenate([[0], np.cumsum(c.pos[::-1])]) / max(c.n_pos, 1)
    fp = np.concatenate([[0], np.cumsum(c.neg[::-1])]) / max(c.n_neg, 1)
    keep = np.unique(np.linspace(0, len(tp) - 1, min(max_points, len(tp))).round().astype(int))
    return {"fpr": fp[keep].tolist(), "tpr": tp[keep].tolist()}


def evaluate_at(c: ScoreCounts, threshold: float, inclusive: bool = False) -> dict:
    """BER, FPR, FNR, accuracy and the confusion at ``threshold``, the AUC and the row counts."""
    cm = confusion(c, threshold, inclusive)
    return {**rates(cm), "auc": roc_auc(c), "threshold": threshold, "confusion": cm,
            "n": c.n_pos + c.n_neg, "positives": c.n_pos}
