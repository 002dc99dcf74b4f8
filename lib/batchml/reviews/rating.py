"""The star rating from the words: linear regression, RMSE and MAE, predictions clipped to the
training ratings' range.

* **global_mean**: the mean training rating;
* **top100**: a linear model on the counts of the ``reviews.top_words`` (100) most frequent words;
* **ours**: TF-IDF of the full vocabulary of words and n-grams + log length, the longest n-gram
  and the regularization chosen on validation;
* **ours_item_bias** (``reviews.item_bias``): ours + the item's bias b_i = sum(r - mu) / (n_i +
  lambda) as one more feature, the bias term of the factor model fitted on the training split
  (leave-one-out on the training rows, so a row never sees its own rating; 0 for an item the
  training split lacks).  It is scored beside ours to say whether it helps; the saved pipeline is
  ours, which needs nothing but the review.
"""
from __future__ import annotations

from pyspark.ml.feature import SQLTransformer
from pyspark.ml.regression import LinearRegression
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml import schema as S
from batchml.metrics import regression_metrics
from batchml.reviews.features import (FEATURES_COL, ITEM_BIAS_COL, LABEL_COL, LOG_LENGTH, TextSpec, featurizer,
                                      with_more_inputs)
from batchml.reviews.fitting import Candidate, Task, search

ORDER = ("global_mean", "top100", "ours", "ours_item_bias")
LABELS = {"global_mean": "global mean", "top100": "linear, top-100 words", "ours": "ours: full vocabulary",
          "ours_item_bias": "ours + item bias"}
RAW_PREDICTION_COL = "raw_prediction"


def labeled(df: DataFrame) -> DataFrame:
    """Every review, ``label`` its rating."""
    return df.withColumn(LABEL_COL, F.col(S.RATING_COL).cast("double"))


def clip_stage(lo: float, hi: float) -> SQLTransformer:
    """``prediction`` = the raw prediction clipped to [lo, hi]."""
    return SQLTransformer(statement=f"SELECT *, least(greatest({RAW_PREDICTION_COL}, {lo!r}), {hi!r}) "
                                    f"AS {S.PREDICTION_COL} FROM __THIS__")


def figures(scored: DataFrame) -> dict:
    """RMSE, MAE and the row count of ``prediction`` against ``label``."""
    m = regression_metrics(scored, col_rating=LABEL_COL, col_prediction=S.PREDICTION_COL)
    return {"rmse": m["rmse"], "mae": m["mae"], "n": m["n"]}


def task(s, lo: float, hi: float) -> Task:
    """Linear regression clipped to [lo, hi], chosen by least validation RMSE."""
    def estimator(reg: float) -> LinearRegression:
        return LinearRegression(featuresCol=FEATURES_COL, labelCol=LABEL_COL, predictionCol=RAW_PREDICTION_COL,
                                regParam=reg, elasticNetParam=s.elastic_net, maxIter=s.max_iter,
                                standardization=s.standardize)

    return Task(estimator=estimator, finish=lambda model: [clip_stage(lo, hi)], evaluate=figures,
                key=lambda f: (f["rmse"],))


def ours_spec(s, stop_words: tuple[str, ...], ngram: int) -> TextSpec:
    return TextSpec(ngram=ngram, vocab_size=s.vocab_size, min_df=s.min_df, normalize=s.normalize,
                    stop_words=stop_words)


def fit_models(train: DataFrame, val: DataFrame, s, stop_words: tuple[str, ...],
               scale: tuple[float, float]) -> tuple[dict, dict]:
    """top100 and ours fitted on ``train`` and chosen on ``val``.  Returns ({name: Candidate},
    {name: validation grid})."""
    t = task(s, *scale)
    top = TextSpec(ngram=1, vocab_size=s.top_words, min_df=1.0, idf=False, stop_words=stop_words)
    top100, top_rows = search(train, val, [({"words": s.top_words}, featurizer(top, []))], s.regs, t)
    grid = [({"ngram": n}, featurizer(ours_spec(s, stop_words, n), [LOG_LENGTH])) for n in s.ngrams]
    ours, rows = search(train, val, grid, s.regs, t)
    return {"top100": top100, "ours": ours}, {"top100": top_rows, "ours": rows}


def with_item_bias(train: DataFrame, others: dict[str, DataFrame], reg: float) -> tuple[DataFrame, dict]:
    """``item_bias`` on the training rows (leave-one-out) and on ``others`` (from all training rows)."""
    mu = train.agg(F.avg(LABEL_COL)).first()[0]
    per_item = train.groupBy(S.ITEM_COL).agg(F.sum(F.col(LABEL_COL) - F.lit(mu)).alias("_s"),
                                             F.count(F.lit(1)).alias("_n"))
    own = F.col(LABEL_COL) - F.lit(mu)
    loo = F.when(F.col("_n") - 1 + reg > 0, (F.col("_s") - own) / (F.col("_n") - 1 + F.lit(reg)))
    tr = train.join(per_item, S.ITEM_COL, "left").withColumn(ITEM_BIAS_COL, F.coalesce(loo, F.lit(0.0)))
    full = F.when(F.col("_n") + reg > 0, F.col("_s") / (F.col("_n") + F.lit(reg)))
    out = {k: df.join(per_item, S.ITEM_COL, "left").withColumn(ITEM_BIAS_COL, F.coalesce(full, F.lit(0.0)))
           for k, df in others.items()}
    return tr.drop("_s", "_n"), {k: df.drop("_s", "_n") for k, df in out.items()}


def fit_item_bias(train: DataFrame, val: DataFrame, test: DataFrame, s, scale,
                  ours: Candidate) -> tuple[Candidate, DataFrame]:
    """Ours (its fitted text stages, its reg) + the item bias, fitted on ``train``; returns it
    (validation figures set) and ``test`` with its ``item_bias`` column."""
    tr, other = with_item_bias(train, {"val": val, "test": test}, s.item_bias_reg)
    grid = [(ours.params, with_more_inputs(ours.features, [ITEM_BIAS_COL]))]
    cand, _ = search(tr, other["val"], grid, [ours.params["reg"]], task(s, *scale))
    return cand, other["test"]


def global_mean_figures(mu: float, df: DataFrame) -> dict:
    """The figures of predicting ``mu`` for every row of ``df``."""
    return figures(df.select(LABEL_COL, F.lit(float(mu)).alias(S.PREDICTION_COL)))


def scored_test(models: dict[str, Candidate], test: DataFrame, mu: float) -> DataFrame:
    """The test rows (``review_id, label``) with each model's prediction in a column of its name
    (``test`` holds ``item_bias`` when ``ours_item_bias`` is one of the models)."""
    df = test.withColumn("global_mean", F.lit(float(mu)))
    for name, cand in models.items():
        df = cand.pipeline().transform(df).select(*df.columns, F.col(S.PREDICTION_COL).alias(name))
    return df.select(S.REVIEW_ID_COL, LABEL_COL, "global_mean", *models)
