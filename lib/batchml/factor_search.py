"""Choosing the factorize job's hyper-parameters on a validation split: grid searches over (rank,
reg) for ALS with biases and over reg for plain ALS, the best row of a grid, and the overfit warning
(training RMSE far below validation RMSE)."""
from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.bias import Biases
from batchml.factor_fit import fit_als_biased, fit_plain_als
from batchml.factor_model import evaluate
from batchml.schema import ITEM_COL, RATING_COL, USER_COL

LOG = logging.getLogger("batchml.factorize")


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
