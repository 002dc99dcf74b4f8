"""The feature stages of the review pipelines, all MLlib stages (saved and re-loaded with the model).

A featurizer starts from the columns of the ``reviews`` table, so a saved pipeline scores that
table as it is: an :class:`SQLTransformer` derives the inputs (``text`` = summary + body, log
length, log votes, rating), then :class:`RegexTokenizer` (letters, digits and apostrophes, any
language, lower-cased) -> :class:`StopWordsRemover` (English, negations kept by default) ->
:class:`NGram` (2.. n, concatenated with the words into ``terms``) -> :class:`CountVectorizer` (an
exact vocabulary, so each weight has its word) -> :class:`IDF` -> :class:`Normalizer` (unit L2
norm per review, optional) -> :class:`VectorAssembler` (TF-IDF first, then the numeric inputs).
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import (IDF, CountVectorizer, CountVectorizerModel, IDFModel, NGram, Normalizer,
                                RegexTokenizer, SQLTransformer, StopWordsRemover, VectorAssembler)

from batchml import schema as S

TEXT_COL, TOKENS_COL, WORDS_COL, TERMS_COL = "text", "tokens", "words", "terms"
TF_COL, TFIDF_COL, TEXT_VECTOR_COL, FEATURES_COL = "tf", "tfidf", "text_vector", "features"
LABEL_COL, WEIGHT_COL = "label", "weight"
#: numeric inputs derived from the reviews table's columns
LOG_LENGTH, LOG_HELPFUL, LOG_TOTAL, RATING_IN = "log_length", "log_helpful", "log_total", "rating_in"
ITEM_BIAS_COL = "item_bias"
NEGATIONS = ("no", "not", "nor", "never", "don't", "doesn't", "didn't", "isn't", "wasn't", "aren't",
             "weren't", "won't", "wouldn't", "can't", "cannot", "couldn't", "shouldn't", "hasn't",
             "haven't", "hadn't", "against")
TOKEN_PATTERN = r"[^\p{L}\p{N}']+"

_INPUTS = (f"SELECT *, concat_ws(' ', coalesce({S.SUMMARY_COL}, ''), coalesce({S.BODY_COL}, '')) AS {TEXT_COL}, "
           f"log1p(coalesce({S.BODY_LENGTH_COL}, length({S.BODY_COL}), 0)) AS {LOG_LENGTH}, "
           f"log1p(coalesce({S.HELPFUL_COL}, 0)) AS {LOG_HELPFUL}, "
           f"log1p(coalesce({S.TOTAL_VOTES_COL}, {S.HELPFUL_COL}, 0)) AS {LOG_TOTAL}, "
           f"cast({S.RATING_COL} AS double) AS {RATING_IN} FROM __THIS__")


@dataclass(frozen=True)
class TextSpec:
    """How text becomes features: the longest n-gram, the vocabulary size and the least document
    count of a term, IDF on or off, unit L2 norm per review or not, the stop words."""

    ngram: int = 1
    vocab_size: int = 1 << 18
    min_df: float = 2.0
    idf: bool = True
    normalize: bool = False
    stop_words: tuple[str, ...] = ()


def stop_words(keep_negations: bool) -> tuple[str, ...]:
    """MLlib's English stop words, less :data:`NEGATIONS` when ``keep_negations`` (needs Spark)."""
    words = StopWordsRemover.loadDefaultStopWords("english")
    return tuple(w for w in words if not (keep_negations and w in NEGATIONS))


def input_stage() -> SQLTransformer:
    """``text``, ``log_length``, ``log_helpful``, ``log_total``, ``rating_in`` from the reviews
    table's columns (null votes count 0; a missing total falls back to the helpful votes)."""
    return SQLTransformer(statement=_INPUTS)


def text_stages(spec: TextSpec) -> list:
    """``text`` -> ``tokens`` -> ``words`` (stop words out) -> ``terms`` (words and 2..n-grams) ->
    ``tf`` (counts over the vocabulary) -> ``tfidf`` (when ``spec.idf``) -> ``text_vector`` (the
    last one scaled to a unit L2 norm, when ``spec.normalize``)."""
    stages = [RegexTokenizer(inputCol=TEXT_COL, outputCol=TOKENS_COL, pattern=TOKEN_PATTERN, gaps=True,
                             toLowercase=True, minTokenLength=2),
              StopWordsRemover(inputCol=TOKENS_COL, outputCol=WORDS_COL, stopWords=list(spec.stop_words))]
    terms = WORDS_COL
    if spec.ngram > 1:
        grams = [f"ngrams_{n}" for n in range(2, spec.ngram + 1)]
        stages += [NGram(n=n, inputCol=WORDS_COL, outputCol=g) for n, g in zip(range(2, spec.ngram + 1), grams)]
        stages.append(SQLTransformer(statement=f"SELECT *, concat({', '.join([WORDS_COL, *grams])}) AS {TERMS_COL} "
                                               "FROM __THIS__"))
        terms = TERMS_COL
    stages.append(CountVectorizer(inputCol=terms, outputCol=TF_COL, vocabSize=spec.vocab_size, minDF=spec.min_df))
    if spec.idf:
        stages.append(IDF(inputCol=TF_COL, outputCol=TFIDF_COL))
    if spec.normalize:
        stages.append(Normalizer(inputCol=TFIDF_COL if spec.idf else TF_COL, outputCol=TEXT_VECTOR_COL, p=2.0))
    return stages


def text_output(spec: TextSpec) -> str:
    """The column :func:`text_stages` ends in."""
    return TEXT_VECTOR_COL if spec.normalize else TFIDF_COL if spec.idf else TF_COL


def featurizer(spec: TextSpec | None, numeric: list[str]) -> Pipeline:
    """The inputs, the text stages of ``spec`` (None: no text) and the assembler of the text vector
    and the ``numeric`` columns into ``features``."""
    stages = [input_stage()]
    vectors = []
    if spec is not None:
        stages += text_stages(spec)
        vectors = [text_output(spec)]
    stages.append(VectorAssembler(inputCols=[*vectors, *numeric], outputCol=FEATURES_COL, handleInvalid="error"))
    return Pipeline(stages=stages)


def vocabulary(model: PipelineModel) -> tuple[list[str], list[float] | None]:
    """The terms of a fitted featurizer (feature order) and their IDF weights (None without IDF)."""
    cv = next(s for s in model.stages if isinstance(s, CountVectorizerModel))
    idf = next((s for s in model.stages if isinstance(s, IDFModel)), None)
    return list(cv.vocabulary), (idf.idf.toArray().tolist() if idf is not None else None)


def with_more_inputs(features: PipelineModel, numeric: list[str]) -> Pipeline:
    """The fitted stages of ``features`` with ``numeric`` columns added to its assembler: a pipeline
    whose fit needs no pass over the data (every stage is already fitted)."""
    *fitted, assembler = features.stages
    return Pipeline(stages=[*fitted, VectorAssembler(inputCols=[*assembler.getInputCols(), *numeric],
                                                     outputCol=FEATURES_COL, handleInvalid="error")])
