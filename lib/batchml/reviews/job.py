"""The review models job (``jobs/reviews.py``): a task's models fitted on the training split, chosen
on validation only, the test split scored once, every baseline beside ours.

Stages: read the ``reviews`` table, split it by a hash of the review id (:mod:`batchml.reviews.split`),
fit and choose (:mod:`batchml.reviews.verified` or :mod:`batchml.reviews.rating`), score the test
split, write the output dir atomically:

``metrics.json``  sizes, chosen hyper-parameters, validation and test figures of every model under
                  stable keys (``test.ours.ber``, ``test.baseline.ber``; ``test.ours.rmse``,
                  ``test.top100.rmse``, ``test.global_mean.rmse``), the validation grid, timings
``pipeline/``     ours, a fitted ``PipelineModel`` in MLlib's own format (``PipelineModel.load``);
                  it scores rows of the ``reviews`` table as they are
``term_weights/`` ours' weight of every term of its vocabulary (with its IDF)
``predictions/``  the test split scored by every model (``review_id, label, <model>...``)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.ml.feature import VectorAssembler
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml import schema as S
from batchml.config import as_dict
from batchml.errors import InputError, JobError
from batchml.io.atomic import atomic_dir, exists, write_json
from batchml.logs import stage
from batchml.reviews import rating as RT
from batchml.reviews import verified as VF
from batchml.reviews.features import LABEL_COL, TEXT_VECTOR_COL, TF_COL, TFIDF_COL, stop_words, vocabulary
from batchml.reviews.fitting import Candidate, edge_note
from batchml.reviews.split import SPLIT_COL, SPLITS, TEST, TRAIN, VALIDATION, split_frames, with_split
from batchml.spark import local_columns

LOG = logging.getLogger("batchml.reviews")

_COLUMNS = (S.REVIEW_ID_COL, S.USER_COL, S.ITEM_COL, S.RATING_COL, S.VERIFIED_COL, S.HELPFUL_COL,
            S.TOTAL_VOTES_COL, S.SUMMARY_COL, S.BODY_COL, S.BODY_LENGTH_COL)


@dataclass
class Splits:
    """The labeled rows of each split (cached), their counts and their sums of labels."""

    train: DataFrame
    validation: DataFrame
    test: DataFrame
    sizes: dict
    label_sums: dict


@dataclass
class TaskResult:
    """What a task hands to the writer: its part of ``metrics.json``, ours, the test predictions."""

    metrics: dict
    ours: Candidate
    predictions: DataFrame


def read_reviews(spark: SparkSession, dataset: str, timings: dict) -> tuple[DataFrame, int]:
    """The ``reviews`` table of an ingested Amazon dataset and its row count (:class:`InputError`
    when the dataset has none)."""
    if not exists(f"{dataset}/{S.REVIEWS}"):
        raise InputError(f"{dataset} has no {S.REVIEWS}/ table: ingest an Amazon dump (--format amazon-tsv or "
                         "amazon-json) with jobs/ingest.py")
    with stage("read", spark, timings) as st:
        reviews = spark.read.parquet(f"{dataset}/{S.REVIEWS}").select(*_COLUMNS)
        n = st.set_rows(reviews.count())
    return reviews, n


def split_reviews(spark: SparkSession, reviews: DataFrame, n_reviews: int, s, labeled, timings: dict) -> Splits:
    """Hash split of ``reviews``, then ``labeled`` (the task's label; it may drop rows), cached;
    sizes and label sums per split; :class:`JobError` when a split is empty."""
    with stage("split", spark, timings) as st:
        rows = labeled(with_split(reviews, validation=s.validation_fraction, test=s.test_fraction,
                                  seed=s.seed)).cache()
        figures = {r[SPLIT_COL]: r for r in rows.groupBy(SPLIT_COL).agg(
            F.count(F.lit(1)).alias("n"), F.sum(LABEL_COL).alias("label_sum")).collect()}
        sizes = {k: int(figures[k]["n"]) if k in figures else 0 for k in SPLITS}
        sizes["unlabeled"] = n_reviews - sum(sizes.values())
        st.set_rows(sizes[TRAIN])
        st.info.update(sizes)
    if n_reviews and sizes["unlabeled"] == n_reviews:
        raise JobError(f"none of the {n_reviews:,} reviews has a label for task {s.task!r} (the McAuley 2014 "
                       "JSON-lines schema does not record the verified flag)")
    empty = [k for k in SPLITS if sizes[k] == 0]
    if empty:
        raise JobError(f"the {', '.join(empty)} split has no labeled reviews ({sizes}): too few reviews "
                       f"for reviews.validation_fraction / reviews.test_fraction")
    parts = split_frames(rows)
    label_sums = {k: float(figures[k]["label_sum"]) for k in SPLITS}
    return Splits(parts[TRAIN], parts[VALIDATION], parts[TEST], sizes, label_sums)


def term_weights(spark: SparkSession, cand: Candidate) -> tuple[DataFrame, dict]:
    """Ours' weight of each vocabulary term (``term, weight, idf``) and of each numeric input."""
    terms, idf = vocabulary(cand.features)
    coef = cand.model.coefficients.toArray()
    assembler = next(st for st in cand.features.stages if isinstance(st, VectorAssembler))
    numeric = [c for c in assembler.getInputCols() if c not in (TF_COL, TFIDF_COL, TEXT_VECTOR_COL)]
    table = local_columns(spark, [terms, coef[:len(terms)].astype(float),
                                  idf if idf is not None else [None] * len(terms)],
                          "term string, weight double, idf double")
    return table, {name: float(w) for name, w in zip(numeric, coef[len(terms):])}


def chosen_of(cand: Candidate) -> dict:
    """A candidate's settings, its vocabulary size and intercept for ``metrics.json``."""
    terms, _ = vocabulary(cand.features)
    return {**cand.params, "vocabulary": len(terms), "intercept": float(cand.model.intercept)}


# -------------------------------------------------------------------------------------------- tasks
def run_verified(spark: SparkSession, reviews: DataFrame, n_reviews: int, s, timings: dict) -> TaskResult:
    """The verified-purchase task: baseline and ours chosen on validation, the test split scored once."""
    splits = split_reviews(spark, reviews, n_reviews, s, VF.labeled, timings)
    positives = {k: int(v) for k, v in splits.label_sums.items()}
    if positives["train"] in (0, splits.sizes[TRAIN]):
        raise JobError(f"the training split has one class only ({positives['train']:,} verified of "
                       f"{splits.sizes[TRAIN]:,}): nothing to learn")
    weights = VF.class_weights(splits.sizes[TRAIN], positives[TRAIN]) if s.class_weights else None
    with stage("fit and choose on validation", spark, timings) as st:
        models, grid = VF.fit_models(VF.with_weights(splits.train, weights), splits.validation, s,
                                     stop_words(s.keep_negations))
        st.info.update(chosen=models["ours"].params, val_ber=round(models["ours"].validation["ber"], 4))
    with stage("score test", spark, timings) as st:
        predictions = VF.scored_test(models, splits.test).cache()
        test = VF.figures_on_test(predictions, models)
        st.set_rows(predictions.count())
    metrics = {
        "task": "verified", "sizes": splits.sizes, "positives": positives, "class_weights": weights,
        "order": list(VF.ORDER), "labels": VF.LABELS,
        "chosen": {"baseline": {"threshold": models["baseline"].validation["threshold"]},
                   "ours": {**chosen_of(models["ours"]), "threshold": models["ours"].validation["threshold"]}},
        "validation": {k: m.validation for k, m in models.items()}, "test": test, "grid": grid,
        "notes": edge_note(grid, models["ours"].params, "ours")}
    return TaskResult(metrics, models["ours"], predictions)


def run_rating(spark: SparkSession, reviews: DataFrame, n_reviews: int, s, timings: dict) -> TaskResult:
    """The rating task: global mean, top-100 words, ours (and ours + item bias), the test scored once."""
    splits = split_reviews(spark, reviews, n_reviews, s, RT.labeled, timings)
    row = splits.train.agg(F.avg(LABEL_COL), F.min(LABEL_COL), F.max(LABEL_COL)).first()
    mu, scale = float(row[0]), (float(row[1]), float(row[2]))
    words = stop_words(s.keep_negations)
    with stage("fit and choose on validation", spark, timings) as st:
        models, grids = RT.fit_models(splits.train, splits.validation, s, words, scale)
        validation = {"global_mean": RT.global_mean_figures(mu, splits.validation),
                      **{k: m.validation for k, m in models.items()}}
        test_rows = splits.test
        if s.item_bias:
            models["ours_item_bias"], test_rows = RT.fit_item_bias(splits.train, splits.validation, splits.test,
                                                                   s, scale, models["ours"])
            validation["ours_item_bias"] = models["ours_item_bias"].validation
        st.info.update(chosen=models["ours"].params, val_rmse=round(models["ours"].validation["rmse"], 4))
    with stage("score test", spark, timings) as st:
        predictions = RT.scored_test(models, test_rows, mu).cache()
        test = {k: RT.figures(predictions.select(LABEL_COL, F.col(k).alias(S.PREDICTION_COL)))
                for k in RT.ORDER if k in predictions.columns}
        st.set_rows(predictions.count())
    chosen = {"global_mean": {"mu": mu},
              "top100": {**models["top100"].params, "intercept": float(models["top100"].model.intercept)},
              **{k: chosen_of(models[k]) for k in ("ours", "ours_item_bias") if k in models}}
    if "ours_item_bias" in chosen:
        chosen["ours_item_bias"]["item_bias_reg"] = s.item_bias_reg
    metrics = {"task": "rating", "sizes": splits.sizes, "rating_scale": list(scale),
               "order": [k for k in RT.ORDER if k in test], "labels": RT.LABELS, "chosen": chosen,
               "validation": validation, "test": test, "grid": grids,
               "notes": edge_note(grids["ours"], models["ours"].params, "ours")
               + edge_note(grids["top100"], models["top100"].params, "top100")}
    if "ours_item_bias" in test:
        metrics["item_bias_helps"] = {"validation": validation["ours_item_bias"]["rmse"] < validation["ours"]["rmse"],
                                      "test": test["ours_item_bias"]["rmse"] < test["ours"]["rmse"]}
    return TaskResult(metrics, models["ours"], predictions)


TASKS = {"verified": run_verified, "rating": run_rating}


# --------------------------------------------------------------------------------------- the job
def write_output(spark: SparkSession, output: str, result: TaskResult, metrics: dict, timings: dict) -> None:
    """``pipeline/``, ``term_weights/``, ``predictions/`` and ``metrics.json``, atomically."""
    with stage("write", spark, timings):
        with atomic_dir(output) as tmp:
            result.ours.pipeline().save(f"{tmp}/{S.REVIEW_PIPELINE}")
            terms, numeric = term_weights(spark, result.ours)
            terms.orderBy(F.desc("weight")).coalesce(1).write.parquet(f"{tmp}/{S.TERM_WEIGHTS}")
            metrics["numeric_weights"] = numeric
            result.predictions.coalesce(4).write.parquet(f"{tmp}/{S.REVIEW_PREDICTIONS}")
            write_json(f"{tmp}/{S.METRICS_FILE}", metrics)


def run_reviews(spark: SparkSession, cfg, *, dataset: str, output: str) -> dict:
    """The review models job for ``cfg.reviews.task``; returns what ``metrics.json`` holds."""
    s = cfg.reviews
    timings: dict = {}
    reviews, n_reviews = read_reviews(spark, dataset, timings)
    result = TASKS[s.task](spark, reviews, n_reviews, s, timings)
    metrics = {"dataset": dataset, **result.metrics,
               "split": {"key": S.REVIEW_ID_COL, "seed": s.seed, "validation_fraction": s.validation_fraction,
                         "test_fraction": s.test_fraction},
               "settings": as_dict(cfg)["reviews"], "timings_seconds": timings}
    write_output(spark, output, result, metrics, timings)
    return metrics
