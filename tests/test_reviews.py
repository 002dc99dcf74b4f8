"""Review models (jobs/reviews.py) on one generated Amazon TSV dump whose reviews table is written
once for the module by a plain-Python reading (the Spark ingest of that table, and its reconciling
with the ratings, are tested in test_ingest_amazon.py): the hashed split, BER / AUC against plain
Python, ours against every baseline on the test split, the saved pipeline re-loaded, the weights."""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F

from batchml.config import as_dict, build_config
from batchml.errors import InputError
from batchml import binary_metrics as B
from batchml.reviews.job import run_reviews
from batchml.reviews.report import format_table
from batchml.reviews.split import SPLIT_COL, TEST, split_frames, with_split
from batchml.reviews import verified as VF
from batchml.synth.review_text import LANGS
from review_outputs import write_reviews_dataset

#: one-point grids (time): verified on words, rating on words + bigrams (the negations), its
#: vocabulary capped so the normal equations stay small
REVIEWS = {"validation_fraction": 0.15, "test_fraction": 0.25, "regs": [1e-4], "max_iter": 30}
TASKS = {"verified": {"ngrams": [1]}, "rating": {"ngrams": [2], "vocab_size": 1000}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_reviews_dataset(2500, 21, tmp_path_factory.mktemp("reviews"))


@pytest.fixture(scope="module")
def runs(spark, test_config, dataset) -> dict:
    """Both tasks run once: {task: (metrics, output dir)}."""
    out = {}
    for task, extra in TASKS.items():
        cfg = build_config({**as_dict(test_config), "reviews": {**REVIEWS, **extra, "task": task}})
        path = dataset.parent / f"out_{task}"
        out[task] = (run_reviews(spark, cfg, dataset=str(dataset), output=str(path)), path)
    return out


def test_split_is_deterministic_and_disjoint(spark, dataset):
    reviews = spark.read.parquet(str(dataset / "reviews")).select("review_id")

    def sides(df, seed=42):
        split = with_split(df, validation=0.15, test=0.25, seed=seed)
        return {r["review_id"]: r[SPLIT_COL] for r in split.collect()}

    first = sides(reviews)
    assert sides(reviews.repartition(7).orderBy(F.rand(3))) == first          # not the partitioning
    assert len(first) == reviews.count()                                         # one side per review
    frames = split_frames(with_split(reviews, validation=0.15, test=0.25, seed=42))
    ids = {k: {r["review_id"] for r in df.collect()} for k, df in frames.items()}
    assert all(not (ids[a] & ids[b]) for a, b in itertools.combinations(ids, 2))
    assert set().union(*ids.values()) == set(first)
    n = len(first)
    assert abs(len(ids["test"]) / n - 0.25) < 0.04 and abs(len(ids["validation"]) / n - 0.15) < 0.04
    assert sides(reviews, seed=7) != first


# A hand-made case: ties across classes, a threshold between and on scores.
LABELS = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
SCORES = [0.9, 0.8, 0.8, 0.7, 0.3, 0.3, 0.3, 0.1, 0.95, 0.5]


def _plain_auc(labels, scores):
    pos = [s for y, s in zip(labels, scores) if y == 1]
    neg = [s for y, s in zip(labels, scores) if y != 1]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def _plain_ber(labels, scores, t):
    fn = sum(1 for y, s in zip(labels, scores) if y == 1 and not s > t)
    fp = sum(1 for y, s in zip(labels, scores) if y != 1 and s > t)
    return (fn / labels.count(1) + fp / (len(labels) - labels.count(1))) / 2


def test_ber_and_auc_equal_plain_python(spark):
    df = spark.createDataFrame([(float(y), s) for y, s in zip(LABELS, SCORES)], "label double, s double")
    counts = B.score_counts(df, score_col="s", label_col="label")
    assert np.array_equal(counts.scores, np.unique(SCORES))
    assert B.roc_auc(counts) == pytest.approx(_plain_auc(LABELS, SCORES), abs=1e-12) == 19.5 / 24
    for t in (0.0, 0.3, 0.31, 0.75, 0.8, 0.85, 0.95):
        cm = B.confusion(counts, t)
        assert B.rates(cm)["ber"] == pytest.approx(_plain_ber(LABELS, SCORES, t), abs=1e-12), t
        assert cm["tp"] + cm["fn"] == 6 and cm["fp"] + cm["tn"] == 4
    # the chosen threshold is the best of every cut, and lies between scores (strictly above the cut)
    t, ber = B.best_threshold(counts)
    brute = min(_plain_ber(LABELS, SCORES, c) for c in [-1.0, *SCORES])
    assert ber == pytest.approx(brute, abs=1e-12) == pytest.approx(_plain_ber(LABELS, SCORES, t), abs=1e-12)
    assert t == pytest.approx(0.4)
    assert B.roc_auc(B.ScoreCounts.of(LABELS, SCORES)) == B.roc_auc(counts)


def test_ours_beats_every_baseline_on_test(runs):
    v = runs["verified"][0]
    assert v["test"]["ours"]["ber"] < v["test"]["baseline"]["ber"]
    assert v["test"]["ours"]["auc"] > v["test"]["baseline"]["auc"]
    r = runs["rating"][0]
    assert r["test"]["ours"]["rmse"] < r["test"]["top100"]["rmse"] < r["test"]["global_mean"]["rmse"]
    assert r["test"]["ours"]["mae"] < r["test"]["top100"]["mae"]
    for m in (v, r):
        for split in ("validation", "test"):
            assert set(m[split]) == set(m["order"])
        assert sum(m["sizes"][k] for k in ("train", "validation", "test")) == 2500
        assert m["test"]["ours"]["n"] == m["sizes"]["test"]
        assert "chosen on validation" in format_table(m)
    assert v["chosen"]["ours"]["ngram"] == 1 and r["chosen"]["ours"]["ngram"] == 2
    assert r["chosen"]["top100"]["words"] == 100 and set(r["item_bias_helps"]) == {"validation", "test"}
    assert r["order"] == ["global_mean", "top100", "ours", "ours_item_bias"]


def test_metrics_equal_a_numpy_reading_of_the_predictions(runs):
    """The test figures in metrics.json are those of the written predictions, at the validation
    threshold (verified), and the thresholded prediction is the saved model's own decision."""
    m, out = runs["verified"]
    pred = pd.read_parquet(out / "predictions")
    assert len(pred) == m["sizes"]["test"]
    for name in ("baseline", "ours"):
        y, s, t = pred["label"].to_numpy(), pred[f"{name}_score"].to_numpy(), m["chosen"][name]["threshold"]
        assert (pred[f"{name}_prediction"].to_numpy() == (s > t)).all()
        assert m["test"][name]["ber"] == pytest.approx(_plain_ber(list(y), list(s), t), abs=1e-12)
        assert m["test"][name]["auc"] == pytest.approx(_plain_auc(list(y), list(s)), abs=1e-9)
    m, out = runs["rating"]
    pred = pd.read_parquet(out / "predictions")
    for name in m["order"]:
        err = pred[name].to_numpy() - pred["label"].to_numpy()
        assert m["test"][name]["rmse"] == pytest.approx(float(np.sqrt(np.mean(err ** 2))), abs=1e-9)
    lo, hi = m["rating_scale"]
    assert pred["ours"].between(lo, hi).all()


@pytest.mark.parametrize("task", list(TASKS))
def test_saved_pipeline_reloads_with_the_same_predictions(spark, runs, dataset, task):
    m, out = runs[task]
    model = PipelineModel.load(str(out / "pipeline"))
    reviews = spark.read.parquet(str(dataset / "reviews"))
    test = split_frames(with_split(reviews, validation=REVIEWS["validation_fraction"],
                                   test=REVIEWS["test_fraction"], seed=m["split"]["seed"]))[TEST]
    scored = model.transform(test)
    if task == "verified":
        scored = scored.select("review_id", VF.score_col().alias("again"), F.col("prediction").cast("int").alias("p"))
    else:
        scored = scored.select("review_id", F.col("prediction").alias("again"))
    got = scored.toPandas().merge(pd.read_parquet(out / "predictions"), on="review_id")
    assert len(got) == m["sizes"]["test"] == len(scored.toPandas())
    assert np.allclose(got["again"], got["ours_score" if task == "verified" else "ours"], rtol=0, atol=1e-12)
    if task == "verified":
        assert (got["p"] == got["ours_prediction"]).all()


def _generated_terms(stars) -> set[str]:
    """The words and bigrams the generator writes for these star levels: sentiment words and their
    headlines ("One Star", "Waste of money")."""
    lang = LANGS["en"]
    terms = {w for s in stars for w in lang["levels"][s].split()}
    for s in stars:
        for headline in lang["summaries"][s]:
            words = re.findall(r"[a-z']+", headline.lower())
            terms |= set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}
    return terms


def test_rating_weights_follow_the_generated_words(runs):
    """The terms the rating model weighs most are the generator's praise (4-5 star words and
    headlines, negated complaints: "not bad"), the least its complaints (negated praise: "not great")."""
    _, out = runs["rating"]
    w = pd.read_parquet(out / "term_weights").sort_values("weight")
    praise, complaint = _generated_terms((4, 5)), _generated_terms((1, 2))
    praise, complaint = praise | {f"not {c}" for c in complaint}, complaint | {f"not {p}" for p in praise}
    top, bottom = list(w["term"].iloc[::-1].head(10)), list(w["term"].head(10))
    assert sum(t in praise for t in top) >= 8, top
    assert sum(t in complaint for t in bottom) >= 8, bottom


def test_a_dataset_without_reviews_is_an_input_error(spark, test_config, tmp_path):
    (tmp_path / "ds" / "ratings").mkdir(parents=True)
    with pytest.raises(InputError, match="has no reviews/ table"):
        run_reviews(spark, test_config, dataset=str(tmp_path / "ds"), output=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
