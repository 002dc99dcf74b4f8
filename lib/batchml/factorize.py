"""The factorization job: every model of :mod:`batchml.factor_fit` scored once on a held-out test set.

:func:`run_factorize` is a sequence of stages: read the dataset, hold out the test set (checked to be
non-empty and absent from training), choose rank and reg on a validation split carved from training
(:mod:`batchml.factor_search`), re-fit every model on the whole training set, score them and the
item-CF rows once on the test set (and the generating model, the RMSE floor, when the dataset was
generated), write the model dir (:mod:`batchml.model_dir`) and ``metrics.json``.
:func:`format_table` prints the result.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.bias import fit_biases
from batchml.errors import InputError, JobError
from batchml.factor_fit import (BiasedFit, aligned_model, bias_model, fit_als_biased, fit_plain_als,
                                global_mean_model)
from batchml.factor_model import FactorModel, evaluate, with_prediction
from batchml.factor_search import (best_of, centred_grid, overfit_check, search_bias_regs,
                                   search_biased, search_plain, thread_map)
from batchml.io.atomic import atomic_dir, exists, read_json, write_json
from batchml.logs import stage
from batchml.metrics import regression_metrics
from batchml.model_dir import ModelMeta, write_model
from batchml.ratings import holdout_coverage, read_test_split, sample_users, split_random
from batchml.schema import (BIAS_COL, FEATURES_COL, GROUND_TRUTH, ITEM_COL, ITEM_ID_COL, ITEMS, METRICS_FILE,
                            PREDICTION_COL, RATING_COL, RATINGS, STATS_FILE, TRUTH_FILE, TS_COL, USER_COL,
                            USER_ID_COL, USERS)
from batchml.similarity.neighbours import item_cf_sums
from batchml.similarity.pipeline import similar_items
from batchml.spark import maybe_broadcast

LOG = logging.getLogger("batchml.factorize")

ROW_ORDER = ("global_mean", "bias_only", "item_cf", "item_cf_bias", "plain_als", "als_bias",
             "aligned")
ROW_LABELS = {"global_mean": "global mean", "bias_only": "bias only (mu + b_u + b_i)",
              "item_cf": "item-CF (Jaccard)", "item_cf_bias": "item-CF on bias residuals",
              "plain_als": "plain MLlib ALS",
              "als_bias": "ALS + bias", "aligned": "aligned (unit-norm, gamma)",
              "floor": "ground-truth model (floor)"}


# --------------------------------------------------------------------------------- ground truth
def read_ground_truth(spark: SparkSession, gt_dir: str, users_df: DataFrame, items_df: DataFrame,
                      *, rating_min: float, rating_max: float, col_user: str = USER_COL,
                      col_item: str = ITEM_COL) -> FactorModel | None:
    """The generating model saved by :mod:`batchml.synth` (``truth.json``, ``users.parquet``,
    ``items.parquet``; ids ``user_id``/``customer_id`` and ``item_id``/``movie_id``), mapped to
    the dataset's indices through its id maps.  None when ``gt_dir`` holds no ground truth."""
    if not exists(f"{gt_dir}/{TRUTH_FILE}"):
        return None
    truth = read_json(f"{gt_dir}/{TRUTH_FILE}")

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
    return FactorModel(mu=float(truth["mu"]), user_df=u.cache(), item_df=i.cache(),
                       rating_min=rating_min, rating_max=rating_max, kind="ground_truth",
                       rank=int(truth.get("rank", 0)),
                       settings={"noise_sigma": truth.get("noise_sigma")})


# --------------------------------------------------------------------------------------- item-CF
def item_cf_test_sample(train_df: DataFrame, test_df: DataFrame, n_test: int, *, max_test: int,
                        seed: int) -> tuple[DataFrame, DataFrame, float]:
    """(training rows, test rows, fraction of the test users kept) the item-CF rows are scored
    on: the test rows of a seeded user sample of about ``max_test`` rows (of ``n_test``; 0 or
    fewer: all), and only those users' training rows (a broadcast semi-join when few)."""
    if not max_test or n_test <= max_test:
        return train_df, test_df, 1.0
    fraction = max_test / n_test
    sampled = sample_users(test_df, fraction=fraction, seed=seed)
    users = maybe_broadcast(sampled.select(USER_COL).distinct(), values_per_row=1)
    return train_df.join(users, on=USER_COL, how="left_semi"), sampled, fraction


def item_cf_metrics(train_df: DataFrame, test_df: DataFrame, *, neighbours: int,
                    max_items_per_user: int, seed: int, baseline: FactorModel | None = None,
                    broadcast: bool = False, n_test: int = 0, max_test: int = 0) -> dict[str, dict]:
    """Test metrics of Jaccard-weighted item-CF
    (:func:`batchml.similarity.neighbours.predict_item_cf`'s prediction over the Jaccard
    top-``neighbours`` similar items of the training set; both rows from one
    :func:`~batchml.similarity.neighbours.item_cf_sums` join).

    ``item_cf`` averages u's own ratings of i's neighbours.  With a ``baseline`` (the bias model)
    there is also ``item_cf_bias``, the baseline-adjusted form
    r̂ = b_ui + Σ_j s_ij (r_uj − b_uj) / Σ_j s_ij (b = μ + b_u + b_i; b_ui alone when u rated
    none of i's neighbours), clipped to the baseline's scale.  ``max_items_per_user`` > 0 caps
    the items per user in the co-occurrence counts (deterministic hash sample); 0 is exact.
    ``broadcast``: the similarity's broadcast path (small training sets; the same table).
    ``max_test``: the rows are scored on :func:`item_cf_test_sample` of the ``n_test`` test rows
    (the similarity still comes from every training rating).

    Returns
    -------
    {row name: metrics dict (rmse, mae, n, n_missing, neighbours, max_items_per_user,
    test_users_fraction)}
    """
    similar = similar_items(train_df, metric="jaccard", top_k=neighbours,
                            max_items_per_user=max_items_per_user, seed=seed,
                            broadcast=broadcast).cache()
    similar.count()  # computed once, not by each job below
    cols = [USER_COL, ITEM_COL, RATING_COL]
    mu = float(train_df.agg(F.avg(F.col(RATING_COL).cast("double"))).first()[0])
    train_df, test_df, fraction = item_cf_test_sample(train_df, test_df, n_test, max_test=max_test,
                                                      seed=seed + 4)
    pairs, rated = test_df.select(*cols), train_df.select(*cols)
    values = {"_num": RATING_COL}
    if baseline is not None:   # both rows from one join of the training set
        base = replace(baseline, rating_min=float("-inf"), rating_max=float("inf"))
        rated = with_prediction(rated, base, col_prediction="_base").withColumn(
            "_res", F.col(RATING_COL) - F.col("_base"))
        pairs = with_prediction(pairs, base, col_prediction="_base")
        values["_num_res"] = "_res"
    scored = pairs.join(item_cf_sums(rated, pairs, similar, values=values),
                        on=[USER_COL, ITEM_COL], how="left").cache()
    predictions = {"item_cf": F.coalesce(F.col("_num") / F.col("_den"), F.lit(mu))}
    if baseline is not None:
        predictions["item_cf_bias"] = F.least(F.greatest(
            F.col("_base") + F.coalesce(F.col("_num_res") / F.col("_den"), F.lit(0.0)),
            F.lit(float(baseline.rating_min))), F.lit(float(baseline.rating_max)))
    extra = dict(neighbours=neighbours, max_items_per_user=max_items_per_user,
                 test_users_fraction=round(fraction, 4))
    out = {name: {**regression_metrics(scored.select(RATING_COL, pred.cast("double").alias(PREDICTION_COL))),
                  **extra}
           for name, pred in predictions.items()}
    scored.unpersist()
    similar.unpersist()
    return out


# ------------------------------------------------------------------------------ pipeline stages
@dataclass
class HeldOut:
    """The training and test rows of the ``--test`` spec (cached), their counts and how much of
    the test set training knows (:func:`batchml.ratings.holdout_coverage`)."""

    train: DataFrame
    test: DataFrame
    n_train: int
    n_test: int
    coverage: dict


@dataclass
class Chosen:
    """What validation chose: λ_u and λ_i of the biases, the rank, the regs and the ALS+bias rounds,
    their validation RMSEs, the search paths they came from and the shares of the users searched and
    refined on (None: no refine)."""

    bias_reg_user: float
    bias_reg_item: float
    rank: int
    als_bias_reg: float
    rounds: int
    plain_als_reg: float
    bias_grid: list[dict]
    grid: list[dict]
    plain_grid: list[dict]
    val_rmse: dict[str, float]
    search_users_fraction: float
    refine_users_fraction: float | None = None


@dataclass
class Fitted:
    """The models re-fit on the whole training set, by table row, the ALS+bias rounds, and the
    overfit flags (training RMSE of the re-fit against the chosen setting's validation RMSE)."""

    models: dict[str, FactorModel]
    biased: BiasedFit
    overfit: dict[str, bool]


@dataclass
class TestScores:
    """The test-set RMSE table, the ground-truth floor (None without one) and notes."""

    table: dict[str, dict]
    floor: dict | None
    notes: list[str]


def als_blocks(s, n_ratings: int, parallelism: int) -> int:
    """MLlib ALS user (and item) blocks for ``n_ratings``: ``s.als_blocks``, or one per core and at
    least one per ``s.als_block_ratings`` ratings.  A block's rating arrays are built by one task
    outside Spark's memory accounting: 88.7M ratings in 9 blocks ran a 6 GB driver out of heap."""
    if s.als_blocks:
        return s.als_blocks
    per_block = max(1, s.als_block_ratings)
    return max(1, parallelism, -(-int(n_ratings) // per_block))


def _als_args(s, spark: SparkSession, n_ratings: int) -> dict:
    """The ALS arguments every fit of the job shares (the blocks from :func:`als_blocks`)."""
    blocks = als_blocks(s, n_ratings, spark.sparkContext.defaultParallelism)
    return dict(iters=s.iters, seed=s.seed, checkpoint_interval=s.checkpoint_interval,
                blocks=blocks, rating_min=s.rating_min, rating_max=s.rating_max)


def search_iters(s) -> int:
    """ALS iterations of a search candidate: ``s.search_iters`` (0: ``s.iters``), at most ``s.iters``."""
    return min(s.search_iters, s.iters) if s.search_iters else s.iters


def with_rating_scale(s, train: DataFrame):
    """``s`` with ``rating_min`` / ``rating_max`` set: as configured, else the training ratings'."""
    if s.rating_min is not None and s.rating_max is not None:
        return s
    lo, hi = train.agg(F.min(RATING_COL), F.max(RATING_COL)).first()
    return replace(s, rating_min=float(lo if s.rating_min is None else s.rating_min),
                   rating_max=float(hi if s.rating_max is None else s.rating_max))


def check_dataset(dataset: str) -> None:
    """:class:`InputError` unless ``dataset`` holds the ratings and both id maps."""
    for name in (RATINGS, USERS, ITEMS):
        if not exists(f"{dataset}/{name}"):
            raise InputError(f"{dataset} is not a dataset dir: it has no {name}/ table "
                             "(write one with jobs/ingest.py)")


def read_dataset(spark: SparkSession, dataset: str,
                 timings: dict) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(ratings with a float rating, users id map, items id map) of ``dataset``."""
    with stage("read", spark, timings) as st:
        raw = spark.read.parquet(f"{dataset}/{RATINGS}")
        cols = [USER_COL, ITEM_COL, F.col(RATING_COL).cast("float").alias(RATING_COL)]
        cols += [TS_COL] if TS_COL in raw.columns else []
        ratings = raw.select(*cols)
        users_df = spark.read.parquet(f"{dataset}/{USERS}")
        items_df = spark.read.parquet(f"{dataset}/{ITEMS}")
        st.set_rows(ratings.count())
    return ratings, users_df, items_df


def _empty_test_error(dataset: str, spec: str) -> JobError:
    hint = ""
    if spec == "probe" and exists(f"{dataset}/{STATS_FILE}") and read_json(
            f"{dataset}/{STATS_FILE}").get("probe_removed_from_ratings"):
        hint = (": the ingest removed the probe rows from the ratings (--remove-probe), so "
                "their ratings are gone; ingest without --remove-probe (this job removes "
                "them from training itself) or use --test random:0.1")
    return JobError(f"test set {spec!r} has no rated rows{hint}")


def hold_out_test(spark: SparkSession, ratings: DataFrame, s, *, dataset: str,
                  timings: dict) -> HeldOut:
    """The ``--test`` split, cached; :class:`JobError` when the test set is empty or leaks (a
    semi-join of training with the test pairs, broadcast when they are few: the probe's 1.4M
    against 98.6M training ratings took 38 s as a shuffle join, 7 s broadcast)."""
    with stage("split_test", spark, timings) as st:
        split = read_test_split(spark, ratings, dataset=dataset, spec=s.test, seed=s.seed)
        train, test = split.train.cache(), split.test.cache()
        n_train, n_test = train.count(), test.count()
        keys = [USER_COL, ITEM_COL]
        leaked = train.join(maybe_broadcast(test.select(*keys), values_per_row=2, n_rows=n_test),
                            on=keys, how="left_semi").count()
        st.set_rows(n_train)
        st.info.update(test=n_test, leaked=leaked)
        if n_test == 0:
            raise _empty_test_error(dataset, s.test)
        if leaked:
            raise JobError(f"{leaked} test rows are also in the training set")
        if n_train == 0:
            raise JobError(f"test set {s.test!r} leaves no rows to train on")
        coverage = holdout_coverage(train, test)
        st.info.update(coverage)
    return HeldOut(train=train, test=test, n_train=n_train, n_test=n_test, coverage=coverage)


def _validation_split(spark: SparkSession, train: DataFrame, n_train: int, s, timings: dict, *,
                      limit: int, name: str) -> tuple[DataFrame, DataFrame, int, float]:
    """(fit, validation, fit rows, fraction of the users kept) carved from ``train`` (``n_train`` rows),
    cached: both sides keep the ratings of a user sample when the fit side would hold more than
    ``limit`` ratings (0: all of them)."""
    with stage(name, spark, timings) as st:
        n_fit = n_train * (1.0 - s.validation_fraction)
        fraction = min(1.0, limit / n_fit) if limit and n_fit > 0 else 1.0
        sampled = sample_users(train, fraction=fraction, seed=s.seed + 2)
        fit_df, val_df = split_random(sampled, fraction=s.validation_fraction, seed=s.seed + 1)
        fit_df, val_df = fit_df.cache(), val_df.cache()
        n_fit = fit_df.count()
        st.set_rows(n_fit)
        st.info.update(validation=val_df.count(), users_fraction=round(fraction, 4),
                       sample_limit=limit)
    return fit_df, val_df, n_fit, fraction


@dataclass(frozen=True)
class SampleLimits:
    """The fit ratings the search's user sample and the refine's aim at (0: every rating)."""

    search: int
    refine: int


def search_sample_limit(s, n_items: int) -> int:
    """The fit ratings a search's user sample aims at for ``n_items`` training items:
    ``s.search_sample_ratings``, and at least ``s.search_sample_item_ratings`` per item (0: no
    sample)."""
    if not s.search_sample_ratings:
        return 0
    return max(s.search_sample_ratings, s.search_sample_item_ratings * int(n_items))


def refine_sample_limit(s, n_items: int) -> int:
    """The fit ratings the refine's user sample aims at for ``n_items`` training items: at least
    ``s.search_refine_item_ratings`` per item, and never fewer than the search's sample (0: all)."""
    if not s.search_refine_item_ratings:
        return 0
    return max(search_sample_limit(s, n_items), s.search_refine_item_ratings * int(n_items))


def sample_limits(train: DataFrame, n_train: int, s) -> SampleLimits:
    """:class:`SampleLimits` for ``train`` (``n_train`` rows); its items are counted only when the
    fit side exceeds ``s.search_sample_ratings`` (a sample is possible) and a per-item floor is set."""
    n_fit = n_train * (1.0 - s.validation_fraction)
    if not s.search_sample_ratings or n_fit <= s.search_sample_ratings:
        return SampleLimits(search=s.search_sample_ratings, refine=0)
    n_items = 0
    if s.search_sample_item_ratings or s.search_refine_item_ratings:
        n_items = train.agg(F.countDistinct(ITEM_COL)).first()[0]
    return SampleLimits(search=search_sample_limit(s, n_items), refine=refine_sample_limit(s, n_items))


def _parallel(s, n_ratings: int) -> bool:
    """Whether a search on ``n_ratings`` fit ratings runs its fits ``s.parallel_fits`` at a time
    (at most ``s.parallel_max_ratings`` of them, and more than one thread)."""
    return n_ratings <= s.parallel_max_ratings and s.parallel_fits > 1


def _fit_map(s, n_ratings: int):
    """How a search scores its grid: :func:`batchml.factor_search.thread_map` of
    ``s.parallel_fits`` threads when :func:`_parallel`, else one fit at a time."""
    return thread_map(s.parallel_fits if _parallel(s, n_ratings) else 1)


@dataclass(frozen=True)
class _Grids:
    """The candidates of one search pass: ranks, ALS+bias regs, the biases' λ_u and λ_i, and plain
    ALS's regs given the ALS+bias reg chosen; ``tag`` prefixes the stage names."""

    ranks: Sequence[int]
    regs: Sequence[float]
    bias_user: Sequence[float]
    bias_item: Sequence[float]
    plain_regs: Callable[[float], list[float]]
    tag: str = "search"


def choose_hyperparameters(spark: SparkSession, train: DataFrame, n_train: int, s,
                           timings: dict) -> Chosen:
    """On a validation split of ``train`` (of a user sample when it is large): λ_u and λ_i of the
    biases, then rank, reg and rounds of ALS+bias (line searches that extend past a grid edge),
    then plain ALS's reg at that rank (a line centred on ALS+bias's reg).  After a sampled search
    (and with ``s.search_refine``) both regs are searched again on a larger user sample
    (:func:`refine_sample_limit`; all training ratings when it holds fewer), from one grid step
    below the sample's choice (a sample favours a larger reg)."""
    first = _Grids(s.ranks, s.regs, s.bias_reg_user, s.bias_reg_item,
                   plain_regs=lambda reg: centred_grid(s.regs, reg))
    with stage("sample_size", spark, timings) as st:
        limits = sample_limits(train, n_train, s)
        st.info.update(search=limits.search, refine=limits.refine)
    fit_df, val_df, n_fit, users_fraction = _validation_split(
        spark, train, n_train, s, timings, limit=limits.search, name="split_validation")
    chosen = _search_pass(spark, fit_df, val_df, n_fit, s, first, timings)
    if users_fraction >= 1.0 or not s.search_refine:
        return replace(chosen, search_users_fraction=users_fraction)
    step_down = lambda reg: [centred_grid(s.regs, reg)[0], reg]  # noqa: E731
    again = _Grids([chosen.rank], step_down(chosen.als_bias_reg), [chosen.bias_reg_user],
                   [chosen.bias_reg_item], plain_regs=lambda _: step_down(chosen.plain_als_reg),
                   tag="refine")
    fit_df, val_df, n_fit, refine_fraction = _validation_split(
        spark, train, n_train, s, timings, limit=limits.refine, name="refine_split_validation")
    refined = _search_pass(spark, fit_df, val_df, n_fit, s, again, timings)
    return replace(refined, search_users_fraction=users_fraction,
                   refine_users_fraction=refine_fraction,
                   bias_grid=chosen.bias_grid + _tagged(refined.bias_grid, "refine"),
                   grid=chosen.grid + _tagged(refined.grid, "refine"),
                   plain_grid=chosen.plain_grid + _tagged(refined.plain_grid, "refine"))


def _tagged(rows: list[dict], tag: str) -> list[dict]:
    return [{**r, "step": f"{tag}_{r.get('step', 'grid')}"} for r in rows]


def _search_pass(spark: SparkSession, fit_df: DataFrame, val_df: DataFrame, n_fit: int, s,
                 g: _Grids, timings: dict) -> Chosen:
    """One search over ``g`` on (``fit_df``, ``val_df``), which it unpersists."""
    common = {**_als_args(s, spark, n_fit), "iters": search_iters(s)}
    local = n_fit <= s.local_bias_max_ratings
    with stage(f"{g.tag}_bias_regs", spark, timings) as st:
        bias_grid, biases = search_bias_regs(
            fit_df, val_df, regs_user=g.bias_user, regs_item=g.bias_item,
            sweeps=s.bias_sweeps, tol=s.bias_tol, rating_min=s.rating_min, rating_max=s.rating_max,
            extend=s.search_extend, local=local)
        st.info.update(reg_user=biases.reg_user, reg_item=biases.reg_item, local=local)
    with stage(f"{g.tag}_als_bias", spark, timings) as st:
        grid = search_biased(fit_df, val_df, ranks=g.ranks, regs=g.regs, biases=biases,
                             extend=s.search_extend, rounds=s.rounds, sweeps=s.bias_sweeps,
                             tol=s.bias_tol, budget=s.search_rank_budget, local_biases=local,
                             map_fn=_fit_map(s, n_fit), probe_ranks=not _parallel(s, n_fit),
                             **common)
        biases.unpersist()
        chosen = best_of(grid)
        st.info.update(rank=chosen["rank"], reg=chosen["reg"], rounds=chosen["rounds"],
                       val_rmse=round(chosen["val_rmse"], 4), candidates=len(grid))
    with stage(f"{g.tag}_plain_als", spark, timings) as st:
        plain_grid = search_plain(fit_df, val_df, rank=chosen["rank"], regs=g.plain_regs(chosen["reg"]),
                                  extend=s.search_extend, map_fn=_fit_map(s, n_fit), **common)
        chosen_plain = best_of(plain_grid)
        st.info.update(rank=chosen["rank"], reg=chosen_plain["reg"])
    fit_df.unpersist()
    val_df.unpersist()
    return Chosen(bias_reg_user=biases.reg_user, bias_reg_item=biases.reg_item,
                  rank=chosen["rank"], als_bias_reg=chosen["reg"], rounds=chosen["rounds"],
                  plain_als_reg=chosen_plain["reg"], bias_grid=bias_grid, grid=grid,
                  plain_grid=plain_grid,
                  val_rmse={"als_bias": chosen["val_rmse"], "plain_als": chosen_plain["val_rmse"]},
                  search_users_fraction=1.0)


def train_sample(train: DataFrame, n_train: int, s) -> DataFrame:
    """The training ratings single-figure passes score (:attr:`train_score_ratings`): a seeded
    random sample of about that many (all of them when as few), cached."""
    cap = s.train_score_ratings
    return train.sample(fraction=cap / n_train, seed=s.seed + 3).cache() if cap and n_train > cap else train


def fit_models(spark: SparkSession, train: DataFrame, n_train: int, s, chosen: Chosen,
               timings: dict) -> Fitted:
    """Every model of the table re-fit on the whole training set (``n_train`` rows) at the chosen
    settings (ALS+bias runs all ``s.rounds`` rounds, for the report; its model is the chosen
    round's)."""
    common = _als_args(s, spark, n_train)
    lo, hi = s.rating_min, s.rating_max
    bias_args = dict(reg_user=chosen.bias_reg_user, reg_item=chosen.bias_reg_item,
                     sweeps=s.bias_sweeps, tol=s.bias_tol)
    local = n_train <= s.local_bias_max_ratings
    scored = train_sample(train, n_train, s)
    models: dict[str, FactorModel] = {}
    with stage("fit_global_mean", spark, timings):
        models["global_mean"] = global_mean_model(train, rating_min=lo, rating_max=hi)
    with stage("fit_biases", spark, timings) as st:
        biases = fit_biases(train, local=local, **bias_args)
        models["bias_only"] = bias_model(biases, rating_min=lo, rating_max=hi)
        st.set_rows(biases.user_bias_df.count())
    with stage("fit_plain_als", spark, timings):
        models["plain_als"] = fit_plain_als(train, rank=chosen.rank, reg=chosen.plain_als_reg,
                                            **common)
    with stage("train_rmse_plain_als", spark, timings) as st:  # the fit's own time stays apart
        plain_train_rmse = evaluate(models["plain_als"], scored)["rmse"]
        st.info["train_rmse"] = round(plain_train_rmse, 4)
    with stage("fit_als_bias", spark, timings) as st:
        fitted = fit_als_biased(train, rank=chosen.rank, reg=chosen.als_bias_reg, rounds=s.rounds,
                                biases=biases, local_biases=local, score_df=scored, **bias_args,
                                **common)
        models["als_bias"] = fitted.round_models[chosen.rounds - 1]
        st.info["train_rmse"] = round(fitted.rounds[chosen.rounds - 1]["train_rmse"], 4)
    with stage("fit_aligned", spark, timings):
        models["aligned"] = aligned_model(models["als_bias"], scored)
    if scored is not train:
        scored.unpersist()
    train_rmse = {"als_bias": fitted.rounds[chosen.rounds - 1]["train_rmse"],
                  "plain_als": plain_train_rmse}
    overfit = {name: overfit_check(train_rmse[name], chosen.val_rmse[name], s.overfit_ratio, label)
               for name, label in (("als_bias", "ALS+bias"), ("plain_als", "plain ALS"))}
    return Fitted(models=models, biased=fitted, overfit=overfit)


def _ground_truth_floor(spark: SparkSession, test: DataFrame, s, *, dataset: str,
                        ground_truth: str | None, users_df: DataFrame, items_df: DataFrame,
                        notes: list[str]) -> dict | None:
    """Test metrics of the generating model, when there is one (a note when asked for and absent)."""
    gt_dir = ground_truth or f"{dataset}/{GROUND_TRUTH}"
    truth = read_ground_truth(spark, gt_dir, users_df, items_df, rating_min=s.rating_min,
                              rating_max=s.rating_max)
    if truth is None and ground_truth:
        notes.append(f"no ground truth found in {ground_truth}")
    return evaluate(truth, test) if truth is not None else None


def score_test(spark: SparkSession, held: HeldOut, fitted: Fitted, s, *, dataset: str,
               ground_truth: str | None, users_df: DataFrame, items_df: DataFrame,
               timings: dict, similar_broadcast: bool = False) -> TestScores:
    """The test set, touched once: every model, the item-CF rows (``similar_broadcast``: see
    :func:`item_cf_metrics`), each ALS+bias round (the chosen one is the ALS+bias row), the floor."""
    table: dict[str, dict] = {}
    notes: list[str] = []
    with stage("evaluate_test", spark, timings) as st:
        for name, m in fitted.models.items():
            table[name] = evaluate(m, held.test)
        table.update(item_cf_metrics(held.train, held.test, neighbours=s.item_cf_neighbours,
                                     max_items_per_user=s.item_cf_max_items_per_user, seed=s.seed,
                                     baseline=fitted.models["bias_only"],
                                     broadcast=similar_broadcast, n_test=held.n_test,
                                     max_test=s.item_cf_test_ratings))
        if table["item_cf"]["n"] < held.n_test:
            notes.append(f"item-CF rows scored on {table['item_cf']['n']:,} of the {held.n_test:,} "
                         f"test rows (a {table['item_cf']['test_users_fraction']:.1%} user sample; "
                         "factorize.item_cf_test_ratings)")
        for entry, m in zip(fitted.biased.rounds, fitted.biased.round_models):
            entry["test_rmse"] = (table["als_bias"] if m is fitted.models["als_bias"]
                                  else evaluate(m, held.test))["rmse"]
        st.set_rows(held.n_test)
        floor = _ground_truth_floor(spark, held.test, s, dataset=dataset, ground_truth=ground_truth,
                                    users_df=users_df, items_df=items_df, notes=notes)
    return TestScores(table=table, floor=floor, notes=notes)


def metrics_dict(s, *, dataset: str, held: HeldOut, chosen: Chosen, fitted: Fitted,
                 scores: TestScores, timings: dict) -> dict:
    """The content of ``metrics.json`` (``timings`` is kept by reference: later stages add to it)."""
    rounds = fitted.biased.rounds
    return {
        "dataset": dataset, "test": s.test, "n_train": held.n_train, "n_test": held.n_test,
        **held.coverage,
        "table": scores.table, "order": [k for k in ROW_ORDER if k in scores.table],
        "floor": scores.floor, "notes": scores.notes,
        "chosen": {"rank": chosen.rank, "als_bias_reg": chosen.als_bias_reg,
                   "plain_als_reg": chosen.plain_als_reg,
                   "bias_reg_user": chosen.bias_reg_user, "bias_reg_item": chosen.bias_reg_item,
                   "iters": s.iters, "search_iters": search_iters(s),
                   "rounds": chosen.rounds, "max_rounds": s.rounds,
                   "rating_scale": [s.rating_min, s.rating_max],
                   "aligned_gamma": fitted.models["aligned"].gamma, "saved_model": s.model},
        "validation": {"bias_reg_grid": chosen.bias_grid, "als_bias_grid": chosen.grid,
                       "plain_als_grid": chosen.plain_grid, "val_rmse": chosen.val_rmse,
                       "search_users_fraction": chosen.search_users_fraction,
                       "refine_users_fraction": chosen.refine_users_fraction,
                       "overfit_warning": fitted.overfit},
        "rounds": rounds,
        "fit_seconds": {
            "plain_als": timings["fit_plain_als"],
            "als_bias_round1": round(timings["fit_biases"] + rounds[0]["als_seconds"], 3),
            "als_bias_all_rounds": round(timings["fit_biases"] + timings["fit_als_bias"], 3)},
        "timings_seconds": timings,
    }


def write_output(spark: SparkSession, output: str, saved: FactorModel, s, *, dataset: str,
                 users_df: DataFrame, items_df: DataFrame, metrics: dict, timings: dict) -> None:
    """The model dir of ``saved`` (with the test split it was trained on) and ``metrics.json``,
    replacing ``output`` atomically."""
    with stage("write", spark, timings):
        with atomic_dir(output) as tmp:
            meta = ModelMeta.of(saved, split_test=s.test, split_seed=s.seed,
                                settings={"dataset": dataset, "test": s.test})
            write_model(tmp, saved, meta, users_df=users_df, items_df=items_df)
            write_json(f"{tmp}/{METRICS_FILE}", metrics)


def run_factorize(spark: SparkSession, cfg, *, dataset: str, output: str,
                  ground_truth: str | None = None) -> dict:
    """The factorization job: split, choose hyper-parameters on validation, fit every model on the
    training set, score them once on the test set, write the model dir and ``metrics.json``.

    Returns the metrics dict written to ``metrics.json`` (its timings include the write).
    """
    s = cfg.factorize
    timings: dict = {}
    check_dataset(dataset)
    ratings, users_df, items_df = read_dataset(spark, dataset, timings)
    held = hold_out_test(spark, ratings, s, dataset=dataset, timings=timings)
    s = with_rating_scale(s, held.train)
    chosen = choose_hyperparameters(spark, held.train, held.n_train, s, timings)
    fitted = fit_models(spark, held.train, held.n_train, s, chosen, timings)
    scores = score_test(spark, held, fitted, s, dataset=dataset, ground_truth=ground_truth,
                        users_df=users_df, items_df=items_df, timings=timings,
                        similar_broadcast=held.n_train <= cfg.similarity.broadcast_max_ratings)
    metrics = metrics_dict(s, dataset=dataset, held=held, chosen=chosen, fitted=fitted,
                           scores=scores, timings=timings)
    saved = fitted.models["aligned" if s.model == "aligned" else "als_bias"]
    write_output(spark, output, saved, s, dataset=dataset, users_df=users_df, items_df=items_df,
                 metrics=metrics, timings=timings)
    return metrics


# ---------------------------------------------------------------------------------------- report
def format_table(metrics: dict) -> str:
    """The RMSE table of a :func:`run_factorize` result as text."""
    floor = (metrics.get("floor") or {}).get("rmse")
    lines = [f"test: {metrics['test']}  ({metrics['n_test']:,} rows; train {metrics['n_train']:,}; "
             f"unknown to training: {metrics.get('unknown_users', 0):,} users, "
             f"{metrics.get('unknown_items', 0):,} items, scored by the fallbacks)",
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
