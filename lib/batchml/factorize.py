"""Matrix factorization with bias terms: r̂(u,i) = μ + b_u + b_i + γ·p_u·q_i, clipped to the scale.

Training (:func:`fit_als_biased`): regularized biases by alternating aggregations
(:mod:`batchml.bias`), MLlib ALS on the residuals r − μ − b_u − b_i, and optionally further rounds
(biases re-fit on r − p·q, ALS re-fit on the new residuals).  γ is 1 except in the "aligned" model
(:func:`aligned_model`), whose factors are unit-norm and whose γ is a least-squares fit.

Prediction and its fallbacks: :mod:`batchml.factor_model`.  The model dir is written through :mod:`batchml.model_dir`; the model and its scoring live in
:mod:`batchml.factor_model`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.bias import Biases, fit_biases, with_bias_residual
from batchml.errors import JobError
from batchml.factor_model import FactorModel, dot, evaluate, with_prediction
from batchml.io.atomic import exists, read_json, write_json
from batchml.metrics import regression_metrics
from batchml.model_dir import ModelMeta, write_model
from batchml.ratings import read_test_split
from batchml.schema import (BIAS_COL, COUNT_COL, FEATURES_COL, ITEM_COL, ITEMS, PREDICTION_COL,
                            RATING_COL, USER_COL, USER_ID_COL, ITEM_ID_COL, USERS)
from batchml.spark import maybe_broadcast

LOG = logging.getLogger("batchml.factorize")

RESIDUAL_COL = "residual"
_DOT = "_dot"


def _cached(df: DataFrame) -> DataFrame:
    df = df.cache()
    df.count()
    return df


def _combine(biases: Biases | None, user_factors: DataFrame | None, item_factors: DataFrame | None,
             *, col_user: str, col_item: str) -> tuple[DataFrame | None, DataFrame | None]:
    def side(bias_df, fac_df, key):
        if bias_df is None:
            return fac_df
        b = bias_df.select(key, BIAS_COL, COUNT_COL)
        if fac_df is None:
            return b
        return b.join(fac_df.select(key, FEATURES_COL), on=key, how="full")
    if biases is None:
        return user_factors, item_factors
    return (side(biases.user_bias_df, user_factors, col_user),
            side(biases.item_bias_df, item_factors, col_item))


def global_mean_model(train_df: DataFrame, *, rating_min: float, rating_max: float,
                      col_rating: str = RATING_COL) -> FactorModel:
    """The training mean for every pair."""
    mu = float(train_df.agg(F.avg(F.col(col_rating).cast("double"))).first()[0])
    return FactorModel(mu=mu, rating_min=rating_min, rating_max=rating_max, kind="global_mean")


def bias_model(biases: Biases, *, rating_min: float, rating_max: float, col_user: str = USER_COL,
               col_item: str = ITEM_COL) -> FactorModel:
    """μ + b_u + b_i from fitted :class:`Biases`."""
    u, i = _combine(biases, None, None, col_user=col_user, col_item=col_item)
    return FactorModel(mu=biases.mu, user_df=u, item_df=i, rating_min=rating_min,
                       rating_max=rating_max, kind="bias_only",
                       settings={"reg_user": biases.reg_user, "reg_item": biases.reg_item,
                                 "sweeps": biases.sweeps})


# ------------------------------------------------------------------------------------------- ALS
def fit_als(ratings_df: DataFrame, *, rank: int, reg: float, iters: int, seed: int,
            checkpoint_interval: int = 10, blocks: int = 0, col_user: str = USER_COL,
            col_item: str = ITEM_COL, col_target: str = RATING_COL) -> tuple[DataFrame, DataFrame]:
    """MLlib ALS (explicit) on ``col_target``; integer ids used as they are.

    ``checkpoint_interval`` takes effect through the session's checkpoint dir.  Cold start is left
    to :func:`with_prediction`'s fallback (``coldStartStrategy`` is irrelevant: we never call
    ``ALSModel.transform``).

    Returns
    -------
    (user_factors_df, item_factors_df) with columns ``col_user`` / ``col_item`` int and
    ``features`` array<float>, cached.
    """
    from pyspark.ml.recommendation import ALS

    spark = ratings_df.sparkSession
    n_blocks = blocks or max(1, spark.sparkContext.defaultParallelism)
    als = ALS(rank=rank, maxIter=iters, regParam=reg, userCol=col_user, itemCol=col_item,
              ratingCol=col_target, implicitPrefs=False, nonnegative=False, seed=seed,
              checkpointInterval=checkpoint_interval, coldStartStrategy="nan",
              numUserBlocks=n_blocks, numItemBlocks=n_blocks)
    model = als.fit(ratings_df.select(col_user, col_item, col_target))
    uf = _cached(model.userFactors.select(F.col("id").alias(col_user), F.col(FEATURES_COL)))
    itf = _cached(model.itemFactors.select(F.col("id").alias(col_item), F.col(FEATURES_COL)))
    model.userFactors.unpersist()
    model.itemFactors.unpersist()
    return uf, itf


def fit_plain_als(train_df: DataFrame, *, rank: int, reg: float, iters: int, seed: int,
                  rating_min: float, rating_max: float, checkpoint_interval: int = 10,
                  blocks: int = 0, fallback: float | None = None, col_user: str = USER_COL,
                  col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> FactorModel:
    """Plain MLlib ALS on the raw ratings: r̂ = p·q; pairs without factors get ``fallback``
    (default: the training mean)."""
    if fallback is None:
        fallback = float(train_df.agg(F.avg(F.col(col_rating).cast("double"))).first()[0])
    uf, itf = fit_als(train_df, rank=rank, reg=reg, iters=iters, seed=seed,
                      checkpoint_interval=checkpoint_interval, blocks=blocks, col_user=col_user,
                      col_item=col_item, col_target=col_rating)
    return FactorModel(mu=0.0, user_df=uf, item_df=itf, rating_min=rating_min,
                       rating_max=rating_max, kind="plain_als", rank=rank, fallback=fallback,
                       settings={"rank": rank, "reg": reg, "iters": iters})


def with_factor_dot(ratings_df: DataFrame, model: FactorModel, *, col_out: str = _DOT,
                    col_user: str = USER_COL, col_item: str = ITEM_COL) -> DataFrame:
    """Add ``col_out`` = γ·p_u·q_i (0 where a factor is missing).

    Returns the input columns plus ``col_out`` double.
    """
    width = model.rank + 1
    uf = maybe_broadcast(model.user_df.select(col_user, F.col(FEATURES_COL).alias("_pu")),
                         values_per_row=width)
    itf = maybe_broadcast(model.item_df.select(col_item, F.col(FEATURES_COL).alias("_qi")),
                          values_per_row=width)
    scaled = F.lit(float(model.gamma)) * F.coalesce(dot(F.col("_pu"), F.col("_qi")), F.lit(0.0))
    return (ratings_df.join(uf, on=col_user, how="left").join(itf, on=col_item, how="left")
            .select(*ratings_df.columns, scaled.alias(col_out)))


@dataclass
class BiasedFit:
    """Result of :func:`fit_als_biased`: the final model and one entry per round."""

    model: FactorModel
    rounds: list[dict]
    round_models: list[FactorModel]
    biases: Biases


def fit_als_biased(train_df: DataFrame, *, rank: int, reg: float, iters: int, rounds: int,
                   reg_user: float, reg_item: float, sweeps: int, seed: int, rating_min: float,
                   rating_max: float, checkpoint_interval: int = 10, blocks: int = 0,
                   biases: Biases | None = None, eval_df: DataFrame | None = None,
                   col_user: str = USER_COL, col_item: str = ITEM_COL,
                   col_rating: str = RATING_COL) -> BiasedFit:
    """Biases, then ALS on the residuals; rounds > 1 re-fit biases on r − p·q and ALS again.

    Parameters
    ----------
    train_df : training ratings (cache it).
    biases : first-round biases already fitted on ``train_df`` (skips that fit).
    eval_df : optional ratings scored after every round (validation), besides the training set.

    Returns
    -------
    :class:`BiasedFit`; ``rounds`` entries hold ``round``, ``train_rmse``, ``eval_rmse`` (when
    ``eval_df``), ``bias_seconds``, ``als_seconds``.
    """
    keys = dict(col_user=col_user, col_item=col_item)
    history: list[dict] = []
    models: list[FactorModel] = []
    model = None
    first = biases
    for rnd in range(1, rounds + 1):
        t0 = time.perf_counter()
        if rnd == 1 and first is not None:
            b = first
        elif rnd == 1:
            b = fit_biases(train_df, reg_user=reg_user, reg_item=reg_item, sweeps=sweeps,
                           col_rating=col_rating, **keys)
        else:
            offset_df = with_factor_dot(train_df, model, **keys)
            b = fit_biases(offset_df, reg_user=reg_user, reg_item=reg_item, sweeps=sweeps,
                           col_offset=_DOT, col_rating=col_rating, **keys)
        if rnd == 1:
            first = b
        t1 = time.perf_counter()
        # not cached: ALS reads its input once (into its own cached rating blocks)
        resid = with_bias_residual(train_df, b, col_out=RESIDUAL_COL, col_rating=col_rating,
                                   **keys)
        uf, itf = fit_als(resid, rank=rank, reg=reg, iters=iters, seed=seed,
                          checkpoint_interval=checkpoint_interval, blocks=blocks,
                          col_target=RESIDUAL_COL, **keys)
        t2 = time.perf_counter()
        u, i = _combine(b, uf, itf, **keys)
        model = FactorModel(mu=b.mu, user_df=_cached(u), item_df=_cached(i), rating_min=rating_min,
                            rating_max=rating_max, kind="biased", rank=rank,
                            settings={"rank": rank, "reg": reg, "iters": iters, "rounds": rnd,
                                      "reg_user": reg_user, "reg_item": reg_item,
                                      "sweeps": sweeps})
        uf.unpersist()  # the combined tables hold them now
        itf.unpersist()
        entry = {"round": rnd, "train_rmse": evaluate(model, train_df, col_rating=col_rating,
                                                      **keys)["rmse"],
                 "bias_seconds": round(t1 - t0, 3), "als_seconds": round(t2 - t1, 3)}
        if eval_df is not None:
            entry["eval_rmse"] = evaluate(model, eval_df, col_rating=col_rating, **keys)["rmse"]
        LOG.info("ALS+bias rank=%d reg=%g round %d: %s", rank, reg, rnd, entry)
        history.append(entry)
        models.append(model)
    return BiasedFit(model=model, rounds=history, round_models=models, biases=first)


def aligned_model(model: FactorModel, train_df: DataFrame, *, col_user: str = USER_COL,
                  col_item: str = ITEM_COL, col_rating: str = RATING_COL) -> FactorModel:
    """The "alignment" model: r̂ = μ + δ_u + δ_m + γ·α_u·β_m with α, β the unit-norm factors of
    ``model`` and γ the least-squares fit of the training residuals r − μ − δ_u − δ_m on α·β."""

    def unit(df: DataFrame) -> DataFrame:
        norm = F.sqrt(F.aggregate(F.col(FEATURES_COL), F.lit(0.0).cast("double"),
                                  lambda acc, x: acc + x.cast("double") * x.cast("double")))
        unit_vec = F.transform(F.col(FEATURES_COL), lambda x: (x / norm).cast("float"))
        return df.withColumn(FEATURES_COL, F.when(norm > 0, unit_vec))

    unit_model = replace(model, user_df=_cached(unit(model.user_df)),
                         item_df=_cached(unit(model.item_df)), gamma=1.0, kind="aligned")
    keys = dict(col_user=col_user, col_item=col_item)
    base = replace(unit_model, gamma=0.0, rating_min=float("-inf"), rating_max=float("inf"))
    scored = with_factor_dot(with_prediction(train_df.select(col_user, col_item, col_rating), base,
                                             **keys), unit_model, **keys)
    resid = F.col(col_rating).cast("double") - F.col(PREDICTION_COL)
    row = scored.agg(F.sum(resid * F.col(_DOT)).alias("xy"),
                     F.sum(F.col(_DOT) * F.col(_DOT)).alias("xx")).first()
    gamma = float(row["xy"] / row["xx"]) if row["xx"] else 0.0
    LOG.info("aligned model: gamma=%.4f", gamma)
    return replace(unit_model, gamma=gamma,
                   settings={**model.settings, "gamma": gamma, "base": model.kind})


# ----------------------------------------------------------------------------- hyper-parameters
def search_biased(fit_df: DataFrame, val_df: DataFrame, *, ranks, regs, biases: Biases, iters: int,
                  rounds: int, reg_user: float, reg_item: float, sweeps: int, seed: int,
                  rating_min: float, rating_max: float, checkpoint_interval: int = 10,
                  blocks: int = 0, col_user: str = USER_COL, col_item: str = ITEM_COL,
                  col_rating: str = RATING_COL) -> list[dict]:
    """ALS+bias with all its ``rounds`` (:func:`fit_als_biased`) for every (rank, reg) of the grid,
    fitted on ``fit_df`` (round 1 shares ``biases``, which do not depend on the grid) and scored
    on ``val_df``.  The rounds matter to the choice: round-1 biases absorb each user's mean
    affinity to what they rated (large when users rate what they like), which a small rank can
    only fit once later rounds re-fit the biases on r − p·q.

    Returns one dict per candidate: rank, reg, train_rmse, val_rmse (after the last round),
    val_rmse_by_round, seconds.
    """
    keys = dict(col_user=col_user, col_item=col_item, col_rating=col_rating)
    rows = []
    for rank in ranks:
        for reg in regs:
            t0 = time.perf_counter()
            fitted = fit_als_biased(fit_df, rank=rank, reg=reg, iters=iters, rounds=rounds,
                                    reg_user=reg_user, reg_item=reg_item, sweeps=sweeps,
                                    seed=seed, rating_min=rating_min, rating_max=rating_max,
                                    checkpoint_interval=checkpoint_interval, blocks=blocks,
                                    biases=biases, eval_df=val_df, **keys)
            last = fitted.rounds[-1]
            row = {"rank": rank, "reg": reg, "train_rmse": last["train_rmse"],
                   "val_rmse": last["eval_rmse"],
                   "val_rmse_by_round": [r["eval_rmse"] for r in fitted.rounds],
                   "seconds": round(time.perf_counter() - t0, 3)}
            LOG.info("grid ALS+bias: %s", row)
            rows.append(row)
            for m in fitted.round_models:
                m.unpersist()
    return rows


def search_plain(fit_df: DataFrame, val_df: DataFrame, *, rank: int, regs, iters: int, seed: int,
                 rating_min: float, rating_max: float, checkpoint_interval: int = 10,
                 blocks: int = 0, col_user: str = USER_COL, col_item: str = ITEM_COL,
                 col_rating: str = RATING_COL) -> list[dict]:
    """Plain ALS at ``rank`` for every reg of the grid; one dict per candidate (rank, reg,
    train_rmse, val_rmse, seconds)."""
    keys = dict(col_user=col_user, col_item=col_item)
    fallback = float(fit_df.agg(F.avg(F.col(col_rating).cast("double"))).first()[0])
    rows = []
    for reg in regs:
        t0 = time.perf_counter()
        m = fit_plain_als(fit_df, rank=rank, reg=reg, iters=iters, seed=seed,
                          rating_min=rating_min, rating_max=rating_max,
                          checkpoint_interval=checkpoint_interval, blocks=blocks,
                          fallback=fallback, col_rating=col_rating, **keys)
        row = {"rank": rank, "reg": reg,
               "train_rmse": evaluate(m, fit_df, col_rating=col_rating, **keys)["rmse"],
               "val_rmse": evaluate(m, val_df, col_rating=col_rating, **keys)["rmse"],
               "seconds": round(time.perf_counter() - t0, 3)}
        LOG.info("grid plain ALS: %s", row)
        rows.append(row)
        m.unpersist()
    return rows


def best_of(rows: list[dict], key: str = "val_rmse") -> dict:
    """The grid row with the lowest ``key`` (ties: first in grid order)."""
    return min(rows, key=lambda r: (r[key], rows.index(r)))


def overfit_check(train_rmse: float, val_rmse: float, ratio: float, what: str) -> bool:
    """Log a WARNING and return True when ``train_rmse < ratio * val_rmse``."""
    if train_rmse is not None and val_rmse and train_rmse < ratio * val_rmse:
        LOG.warning("%s looks overfit: training RMSE %.4f is far below validation RMSE %.4f "
                    "(ratio %.2f < %.2f); the training RMSE is not a result, the held-out one is",
                    what, train_rmse, val_rmse, train_rmse / val_rmse, ratio)
        return True
    return False


# --------------------------------------------------------------------------------- ground truth
def read_ground_truth(spark: SparkSession, gt_dir: str, users_df: DataFrame, items_df: DataFrame,
                      *, rating_min: float, rating_max: float, col_user: str = USER_COL,
                      col_item: str = ITEM_COL) -> FactorModel | None:
    """The generating model saved by :mod:`batchml.synth` (``truth.json``, ``users.parquet``,
    ``items.parquet``; ids ``user_id``/``customer_id`` and ``item_id``/``movie_id``), mapped to
    the dataset's indices through its id maps.  None when ``gt_dir`` holds no ground truth."""
    if not exists(f"{gt_dir}/truth.json"):
        return None
    truth = read_json(f"{gt_dir}/truth.json")

    def side(name, id_cols, map_df, col_id, col_idx):
        raw = spark.read.parquet(f"{gt_dir}/{name}.parquet")
        src = next(c for c in id_cols if c in raw.columns)
        return (raw.select(F.col(src).cast("string").alias(col_id), F.col("bias").cast("double")
                           .alias(BIAS_COL), F.col("factors").cast("array<double>")
                           .alias(FEATURES_COL))
                .join(map_df.select(col_idx, col_id), on=col_id, how="inner")
                .select(col_idx, BIAS_COL, FEATURES_COL))

    u = side("users", ("user_id", "customer_id"), users_df, USER_ID_COL, col_user)
    i = side("items", ("item_id", "movie_id"), items_df, ITEM_ID_COL, col_item)
    return FactorModel(mu=float(truth["mu"]), user_df=_cached(u), item_df=_cached(i),
                       rating_min=rating_min, rating_max=rating_max, kind="ground_truth",
                       rank=int(truth.get("rank", 0)),
                       settings={"noise_sigma": truth.get("noise_sigma")})


# ------------------------------------------------------------------------------------ pipeline
def item_cf_metrics(train_df: DataFrame, test_df: DataFrame, *, neighbours: int,
                    max_items_per_user: int, seed: int,
                    baseline: FactorModel | None = None) -> dict[str, dict]:
    """Test metrics of Jaccard-weighted item-CF (:func:`batchml.similarity.predict_item_cf` over
    the Jaccard top-``neighbours`` similar items of the training set).

    ``item_cf`` averages u's own ratings of i's neighbours.  With a ``baseline`` (the bias model)
    there is also ``item_cf_bias``, the baseline-adjusted form
    r̂ = b_ui + Σ_j s_ij (r_uj − b_uj) / Σ_j s_ij (b = μ + b_u + b_i; b_ui alone when u rated
    none of i's neighbours), clipped to the baseline's scale.  ``max_items_per_user`` > 0 caps
    the items per user in the co-occurrence counts (deterministic hash sample); 0 is exact.

    Returns
    -------
    {row name: metrics dict (rmse, mae, n, n_missing, neighbours, max_items_per_user)}
    """
    from batchml.similarity import predict_item_cf, similar_items

    similar = _cached(similar_items(train_df, metric="jaccard", top_k=neighbours,
                                    max_items_per_user=max_items_per_user, seed=seed))
    extra = dict(neighbours=neighbours, max_items_per_user=max_items_per_user)
    pairs = test_df.select(USER_COL, ITEM_COL, RATING_COL)
    out = {"item_cf": {**regression_metrics(predict_item_cf(train_df, pairs, similar)), **extra}}
    if baseline is not None:
        base = replace(baseline, rating_min=float("-inf"), rating_max=float("inf"))
        train_res = with_prediction(train_df.select(USER_COL, ITEM_COL, RATING_COL), base,
                                    col_prediction="_base").select(
            USER_COL, ITEM_COL, (F.col(RATING_COL) - F.col("_base")).alias(RATING_COL))
        scored = predict_item_cf(train_res, with_prediction(pairs, base, col_prediction="_base"),
                                 similar, global_mean=0.0)
        pred = F.least(F.greatest(F.col("_base") + F.col(PREDICTION_COL),
                                  F.lit(float(baseline.rating_min))),
                       F.lit(float(baseline.rating_max)))
        out["item_cf_bias"] = {**regression_metrics(
            scored.select(RATING_COL, pred.alias(PREDICTION_COL))), **extra}
    similar.unpersist()
    return out


def run_factorize(spark: SparkSession, cfg, *, dataset: str, output: str,
                  ground_truth: str | None = None) -> dict:
    """The factorization job: split, choose hyper-parameters on validation, fit every model on the
    training set, score them once on the test set, write the model dir and ``metrics.json``.

    Returns the metrics dict written to ``metrics.json``.
    """
    from batchml.io.atomic import atomic_dir
    from batchml.logs import stage
    from batchml.ratings import split_random
    from batchml.schema import RATINGS, STATS_FILE, TS_COL

    s = cfg.factorize
    lo, hi = s.rating_min, s.rating_max
    timings: dict = {}
    common = dict(iters=s.iters, seed=s.seed, checkpoint_interval=s.checkpoint_interval,
                  blocks=s.als_blocks, rating_min=lo, rating_max=hi)

    with stage("read", spark, timings) as st:
        raw = spark.read.parquet(f"{dataset}/{RATINGS}")
        cols = [USER_COL, ITEM_COL, F.col(RATING_COL).cast("float").alias(RATING_COL)]
        cols += [TS_COL] if TS_COL in raw.columns else []
        ratings = raw.select(*cols)
        users_df = spark.read.parquet(f"{dataset}/{USERS}")
        items_df = spark.read.parquet(f"{dataset}/{ITEMS}")
        st.set_rows(ratings.count())

    with stage("split_test", spark, timings) as st:
        split = read_test_split(spark, ratings, dataset=dataset, spec=s.test, seed=s.seed)
        train, test = split.train, split.test
        train, test = _cached(train), _cached(test)
        n_train, n_test = train.count(), test.count()
        leaked = train.join(test.select(USER_COL, ITEM_COL), on=[USER_COL, ITEM_COL],
                            how="left_semi").count()
        st.set_rows(n_train)
        st.info.update(test=n_test, leaked=leaked)
        if n_test == 0:
            hint = ""
            if s.test == "probe" and exists(f"{dataset}/{STATS_FILE}") and read_json(
                    f"{dataset}/{STATS_FILE}").get("probe_removed_from_ratings"):
                hint = (": the ingest removed the probe rows from the ratings (--remove-probe), so "
                        "their ratings are gone; ingest without --remove-probe (this job removes "
                        "them from training itself) or use --test random:0.1")
            raise JobError(f"test set {s.test!r} has no rated rows{hint}")
        if leaked:
            raise JobError(f"{leaked} test rows are also in the training set")

    with stage("split_validation", spark, timings) as st:
        fit_df, val_df = split_random(train, fraction=s.validation_fraction, seed=s.seed + 1)
        fit_df, val_df = _cached(fit_df), _cached(val_df)
        st.set_rows(fit_df.count())
        st.info["validation"] = val_df.count()

    with stage("grid_als_bias", spark, timings) as st:
        fit_biases_ = fit_biases(fit_df, reg_user=s.bias_reg_user, reg_item=s.bias_reg_item,
                                 sweeps=s.bias_sweeps)
        grid = search_biased(fit_df, val_df, ranks=s.ranks, regs=s.regs, biases=fit_biases_,
                             rounds=s.rounds, reg_user=s.bias_reg_user,
                             reg_item=s.bias_reg_item, sweeps=s.bias_sweeps, **common)
        fit_biases_.unpersist()
        chosen = best_of(grid)
        st.info.update(rank=chosen["rank"], reg=chosen["reg"], val_rmse=round(chosen["val_rmse"], 4))
    rank = chosen["rank"]
    with stage("grid_plain_als", spark, timings) as st:
        plain_grid = search_plain(fit_df, val_df, rank=rank, regs=s.regs, **common)
        chosen_plain = best_of(plain_grid)
        st.info.update(rank=rank, reg=chosen_plain["reg"])
    overfit = {
        "als_bias": overfit_check(chosen["train_rmse"], chosen["val_rmse"], s.overfit_ratio,
                                  "ALS+bias"),
        "plain_als": overfit_check(chosen_plain["train_rmse"], chosen_plain["val_rmse"],
                                   s.overfit_ratio, "plain ALS"),
    }
    fit_df.unpersist()
    val_df.unpersist()

    models: dict[str, FactorModel] = {}
    with stage("fit_global_mean", spark, timings):
        models["global_mean"] = global_mean_model(train, rating_min=lo, rating_max=hi)
    with stage("fit_biases", spark, timings) as st:
        biases = fit_biases(train, reg_user=s.bias_reg_user, reg_item=s.bias_reg_item,
                            sweeps=s.bias_sweeps)
        models["bias_only"] = bias_model(biases, rating_min=lo, rating_max=hi)
        st.set_rows(biases.user_bias_df.count())
    with stage("fit_plain_als", spark, timings):
        models["plain_als"] = fit_plain_als(train, rank=rank, reg=chosen_plain["reg"], **common)
    with stage("fit_als_bias", spark, timings) as st:
        fitted = fit_als_biased(train, rank=rank, reg=chosen["reg"], rounds=s.rounds,
                                reg_user=s.bias_reg_user, reg_item=s.bias_reg_item,
                                sweeps=s.bias_sweeps, biases=biases, **common)
        models["als_bias"] = fitted.model
        st.info["train_rmse"] = round(fitted.rounds[-1]["train_rmse"], 4)
    with stage("fit_aligned", spark, timings):
        models["aligned"] = aligned_model(fitted.model, train)

    # ---- the test set, touched once
    table: dict[str, dict] = {}
    notes: list[str] = []
    with stage("evaluate_test", spark, timings) as st:
        for name, m in models.items():
            table[name] = evaluate(m, test)
        table.update(item_cf_metrics(train, test, neighbours=s.item_cf_neighbours,
                                     max_items_per_user=s.item_cf_max_items_per_user, seed=s.seed,
                                     baseline=models["bias_only"]))
        for entry, m in zip(fitted.rounds, fitted.round_models):
            entry["test_rmse"] = evaluate(m, test)["rmse"]
        st.set_rows(n_test)
        gt_dir = ground_truth or f"{dataset}/ground_truth"
        truth = read_ground_truth(spark, gt_dir, users_df, items_df, rating_min=lo, rating_max=hi)
        floor = evaluate(truth, test) if truth is not None else None
        if truth is None and ground_truth:
            notes.append(f"no ground truth found in {ground_truth}")
    saved = models["aligned" if s.model == "aligned" else "als_bias"]
    metrics = {
        "dataset": dataset, "test": s.test, "n_train": n_train, "n_test": n_test,
        "table": table, "order": [k for k in ROW_ORDER if k in table],
        "floor": floor, "notes": notes,
        "chosen": {"rank": rank, "als_bias_reg": chosen["reg"], "plain_als_reg": chosen_plain["reg"],
                   "bias_reg_user": s.bias_reg_user, "bias_reg_item": s.bias_reg_item,
                   "iters": s.iters, "rounds": s.rounds, "aligned_gamma": models["aligned"].gamma,
                   "saved_model": s.model},
        "validation": {"als_bias_grid": grid, "plain_als_grid": plain_grid,
                       "overfit_warning": overfit},
        "rounds": fitted.rounds,
        "fit_seconds": {
            "plain_als": timings["fit_plain_als"],
            "als_bias_round1": round(timings["fit_biases"] + fitted.rounds[0]["als_seconds"], 3),
            "als_bias_all_rounds": round(timings["fit_biases"] + timings["fit_als_bias"], 3)},
        "timings_seconds": timings,
    }
    with stage("write", spark, timings):
        with atomic_dir(output) as tmp:
            meta = ModelMeta.of(saved, split_test=s.test, split_seed=s.seed,
                                settings={"dataset": dataset, "test": s.test})
            write_model(tmp, saved, meta, users_df=users_df, items_df=items_df)
            write_json(f"{tmp}/metrics.json", metrics)
    metrics["timings_seconds"] = timings
    return metrics


ROW_ORDER = ("global_mean", "bias_only", "item_cf", "item_cf_bias", "plain_als", "als_bias",
             "aligned")
ROW_LABELS = {"global_mean": "global mean", "bias_only": "bias only (mu + b_u + b_i)",
              "item_cf": "item-CF (Jaccard)", "item_cf_bias": "item-CF on bias residuals",
              "plain_als": "plain MLlib ALS",
              "als_bias": "ALS + bias", "aligned": "aligned (unit-norm, gamma)",
              "floor": "ground-truth model (floor)"}


def format_table(metrics: dict) -> str:
    """The RMSE table of a :func:`run_factorize` result as text."""
    floor = (metrics.get("floor") or {}).get("rmse")
    lines = [f"test: {metrics['test']}  ({metrics['n_test']:,} rows; train {metrics['n_train']:,})",
             f"{'model':<30} {'RMSE':>8} {'MAE':>8} {'/floor':>8}"]
    rows = [(k, metrics["table"][k]) for k in metrics["order"]]
    if metrics.get("floor"):
        rows.append(("floor", metrics["floor"]))
    for key, m in rows:
        ratio = f"{m['rmse'] / floor:8.4f}" if floor else f"{'':>8}"
        lines.append(f"{ROW_LABELS.get(key, key):<30} {m['rmse']:8.4f} {m['mae']:8.4f} {ratio}")
    c = metrics["chosen"]
    lines.append(f"chosen: rank={c['rank']} reg(ALS+bias)={c['als_bias_reg']:g} "
                 f"reg(plain)={c['plain_als_reg']:g} lambda_u={c['bias_reg_user']:g} "
                 f"lambda_i={c['bias_reg_item']:g} iters={c['iters']} rounds={c['rounds']} "
                 f"gamma={c['aligned_gamma']:.3f}")
    for r in metrics["rounds"]:
        lines.append(f"round {r['round']}: train RMSE {r['train_rmse']:.4f}, "
                     f"test RMSE {r.get('test_rmse', float('nan')):.4f}")
    for note in metrics.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("timings (s): " + ", ".join(f"{k}={v}" for k, v in metrics["timings_seconds"].items()))
    return "\n".join(lines)
