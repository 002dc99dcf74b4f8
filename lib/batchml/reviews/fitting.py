"""Fitting a model over a featurizer and choosing its hyper-parameters on the validation split.

For each featurizer of the grid (e.g. each longest n-gram) the feature stages are fitted once on the
training split and both splits are featurized once (cached); each regularization strength then fits
only the final estimator.  The chosen candidate becomes one :class:`PipelineModel`: the fitted
feature stages, the estimator's model and the task's finishing stages (e.g. clipping to the rating
scale), which scores rows of the ``reviews`` table as they are.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from pyspark.ml import Estimator, Pipeline, PipelineModel, Transformer
from pyspark.sql import DataFrame

from batchml.reviews.features import FEATURES_COL, LABEL_COL, WEIGHT_COL

LOG = logging.getLogger("batchml.reviews")


@dataclass
class Candidate:
    """A fitted featurizer + estimator, its settings and its validation figures."""

    params: dict
    features: PipelineModel
    model: Transformer
    finish: list = field(default_factory=list)
    validation: dict = field(default_factory=dict)

    def pipeline(self) -> PipelineModel:
        """The whole model, from the reviews table's columns to the prediction."""
        return PipelineModel(stages=[*self.features.stages, self.model, *self.finish])


@dataclass(frozen=True)
class Task:
    """What a task brings to a search: its estimator for a regularization strength, the stages that
    follow the estimator's model, the validation figures of a scored frame, and the sort key of
    those figures (smaller is better)."""

    estimator: Callable[[float], Estimator]
    finish: Callable[[Transformer], list]
    evaluate: Callable[[DataFrame], dict]
    key: Callable[[dict], tuple]


def featurized(model: PipelineModel, df: DataFrame) -> DataFrame:
    """``features``, ``label`` (and ``weight`` when present) of ``df``, cached."""
    keep = [FEATURES_COL] + [c for c in (LABEL_COL, WEIGHT_COL) if c in df.columns]
    return model.transform(df).select(*keep).cache()


def score(stages: Sequence[Transformer], df: DataFrame) -> DataFrame:
    """``df`` through ``stages`` in turn."""
    for s in stages:
        df = s.transform(df)
    return df


def search(train: DataFrame, val: DataFrame, grid: Sequence[tuple[dict, Pipeline]], regs: Sequence[float],
           task: Task) -> tuple[Candidate, list[dict]]:
    """Every (featurizer, reg) pair fitted on ``train`` and evaluated on ``val``.

    ``grid``: (settings for the report, featurizer pipeline).  Returns the best candidate by
    ``task.key`` (the first of equals, in grid order) and one row per pair: its settings, its
    validation figures and its fit seconds.
    """
    best: Candidate | None = None
    rows: list[dict] = []
    for params, pipe in grid:
        features = pipe.fit(train)
        tr, va = featurized(features, train), featurized(features, val)
        for reg in regs:
            t0 = time.perf_counter()
            model = task.estimator(reg).fit(tr)
            finish = task.finish(model)
            figures = task.evaluate(score([model, *finish], va))
            seconds = round(time.perf_counter() - t0, 3)
            rows.append({**params, "reg": reg, **figures, "seconds": seconds})
            LOG.info("validation %s reg=%g: %s", params, reg, {k: v for k, v in figures.items()
                                                                if isinstance(v, float)})
            if best is None or task.key(figures) < task.key(best.validation):
                best = Candidate({**params, "reg": reg}, features, model, finish, figures)
        tr.unpersist()
        va.unpersist()
    return best, rows


def edge_note(rows: list[dict], chosen: dict, name: str, key: str = "reg") -> list[str]:
    """A note when the chosen ``key`` sits on the edge of a grid of three or more values (a chosen
    0 is no edge: there is nothing below it)."""
    values = sorted({r[key] for r in rows})
    if len(values) >= 3 and chosen[key] in (values[0], values[-1]) and chosen[key] != 0:
        return [f"{name}: the chosen {key}={chosen[key]:g} is on the edge of the grid {values}; "
                "widen reviews.regs"]
    return []
