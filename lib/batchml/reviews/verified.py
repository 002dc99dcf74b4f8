"""Is a review a verified purchase?  Logistic regression on the text, scored by the balanced error
rate (BER, the classes are imbalanced) and ROC AUC.

* **baseline**: logistic regression on the review's log length and rating only;
* **ours**: TF-IDF of words and n-grams + log length + rating + log votes, class weights
  ``n / (2 n_class)``, the longest n-gram and the regularization chosen on validation.

Each model's threshold is the one of least BER on the validation split (predict verified where
P(verified) > threshold); the test split is scored once, at that threshold.  The saved pipeline's
``LogisticRegressionModel`` carries the threshold, so its ``prediction`` column is the decision.
"""
from __future__ import annotations

from pyspark.ml.classification import LogisticRegression
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batchml import schema as S
from batchml import binary_metrics as B
from batchml.reviews.features import (FEATURES_COL, LABEL_COL, LOG_HELPFUL, LOG_LENGTH, LOG_TOTAL, RATING_IN,
                                      WEIGHT_COL, TextSpec, featurizer)
from batchml.reviews.fitting import Candidate, Task, search

ORDER = ("baseline", "ours")
LABELS = {"baseline": "baseline: LR(length, rating)", "ours": "ours: text + length + rating + votes"}
PROBABILITY_COL = "probability"


def labeled(df: DataFrame) -> DataFrame:
    """Reviews with a known verified flag, ``label`` 1.0 for a verified purchase."""
    return df.where(F.col(S.VERIFIED_COL).isNotNull()).withColumn(LABEL_COL, F.col(S.VERIFIED_COL).cast("double"))


def class_weights(n: int, positives: int) -> dict:
    """``n / (2 n_class)`` of each class of a training split of ``n`` rows (both classes present)."""
    return {"positive": n / (2.0 * positives), "negative": n / (2.0 * (n - positives))}


def with_weights(df: DataFrame, weights: dict | None) -> DataFrame:
    """``df`` plus ``weight`` (1 for every row without class weights)."""
    if weights is None:
        return df.withColumn(WEIGHT_COL, F.lit(1.0))
    return df.withColumn(WEIGHT_COL, F.when(F.col(LABEL_COL) == 1.0, F.lit(weights["positive"]))
                         .otherwise(F.lit(weights["negative"])))


def score_col() -> Column:
    """P(verified) of a scored frame."""
    return vector_to_array(F.col(PROBABILITY_COL))[1]


def validation_figures(scored: DataFrame) -> dict:
    """BER at the BER-minimising threshold of these rows, that threshold and the AUC."""
    counts = B.score_counts(scored.select(score_col().alias("s"), LABEL_COL), score_col="s", label_col=LABEL_COL)
    threshold, ber = B.best_threshold(counts)
    return {"ber": ber, "auc": B.roc_auc(counts), "threshold": threshold}


def task(s, weighted: bool) -> Task:
    """Logistic regression (``weight`` column when ``weighted``), chosen by least validation BER
    (then greatest AUC)."""
    def estimator(reg: float) -> LogisticRegression:
        lr = LogisticRegression(featuresCol=FEATURES_COL, labelCol=LABEL_COL, regParam=reg,
                                elasticNetParam=s.elastic_net, maxIter=s.max_iter, standardization=s.standardize)
        return lr.setWeightCol(WEIGHT_COL) if weighted else lr

    return Task(estimator=estimator, finish=lambda model: [], evaluate=validation_figures,
                key=lambda f: (f["ber"], -f["auc"]))


def fit_models(train: DataFrame, val: DataFrame, s, stop_words: tuple[str, ...]) -> tuple[dict, list[dict]]:
    """The baseline and ours, fitted on ``train`` (with ``weight``), chosen on ``val``; each model's
    ``LogisticRegressionModel`` set to its validation threshold.  Returns ({name: Candidate}, ours' grid)."""
    baseline, _ = search(train, val, [({}, featurizer(None, [LOG_LENGTH, RATING_IN]))], [0.0], task(s, False))
    grid = [({"ngram": n}, featurizer(TextSpec(ngram=n, vocab_size=s.vocab_size, min_df=s.min_df,
                                               normalize=s.normalize, stop_words=stop_words),
                                      [LOG_LENGTH, RATING_IN, LOG_HELPFUL, LOG_TOTAL]))
            for n in s.ngrams]
    ours, rows = search(train, val, grid, s.regs, task(s, s.class_weights))
    for cand in (baseline, ours):
        cand.model.setThreshold(min(max(cand.validation["threshold"], 0.0), 1.0))
    return {"baseline": baseline, "ours": ours}, rows


def scored_test(models: dict[str, Candidate], test: DataFrame) -> DataFrame:
    """The test rows (``review_id, label``) with ``<name>_score`` and ``<name>_prediction`` of each
    model, each pipeline run on the reviews table's own columns."""
    df = test
    for name, cand in models.items():
        out = cand.pipeline().transform(df)
        df = out.select(*df.columns, score_col().alias(f"{name}_score"),
                        F.col("prediction").cast("int").alias(f"{name}_prediction"))
    return df.select(S.REVIEW_ID_COL, LABEL_COL, *[c for name in models
                                                  for c in (f"{name}_score", f"{name}_prediction")])


def figures_on_test(predictions: DataFrame, models: dict[str, Candidate]) -> dict:
    """Each model's test figures at its validation threshold (and BER at 0.5, for reference)."""
    out = {}
    for name, cand in models.items():
        counts = B.score_counts(predictions, score_col=f"{name}_score", label_col=LABEL_COL)
        figures = B.evaluate_at(counts, cand.validation["threshold"])
        figures["ber_at_0_5"] = B.rates(B.confusion(counts, 0.5))["ber"]
        figures["roc"] = B.roc_points(counts)
        out[name] = figures
    return out
