"""Choosing the factorize job's hyper-parameters on a validation split: a line search over reg (per
rank) and over rank for ALS with biases, over reg for plain ALS, the best row of a search, and the
overfit warning (training RMSE far below validation RMSE).

A search cannot stop at its own edge (:func:`line_search`): when the best validation score sits on
the border of a grid of two or more values, the grid is extended in that direction by the grid's
own ratio (its outermost two values; at most 2 for ranks) until the score turns (or improves by
less than 0.1 %) or ``extend`` points were added.  The biases' (λ_u, λ_i) grid moves likewise (:func:`search_bias_regs`).  A
one-value grid is a choice, not a search, and is used as given.  Every candidate tried is a row of
the returned path, tagged ``grid`` or ``extend_up`` / ``extend_down``.

A search is cheaper than the fit it chooses for: candidates are scored on validation only (the
chosen model's training RMSE comes from its re-fit on the whole training set), the biases' grid
stops at :data:`SEARCH_TOL_FACTOR` times the final fit's tolerance (the ranking of λ pairs
settles long before the biases do), and each candidate logs its progress with an ETA.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.bias import Biases, BiasGrid, fit_bias_grid, grid_rmse
from batchml.factor_fit import fit_als_biased, fit_plain_als
from batchml.factor_model import evaluate
from batchml.logs import Progress
from batchml.schema import ITEM_COL, RATING_COL, USER_COL

LOG = logging.getLogger("batchml.factorize")

KEY = "val_rmse"
RANK_STEP = 2.0  # a rank past the grid's edge is at most twice (half) the edge rank
MIN_GAIN = 1e-3  # an extension that improves the best by less (relative) ends the extending
SEARCH_TOL_FACTOR = 10.0  # the bias grid's sweeps stop at this multiple of the final fit's bias_tol


# ------------------------------------------------------------------------------ the line search
def _beyond(values: Sequence[float], direction: str, *, integer: bool, minimum: float,
            max_ratio: float | None = None) -> float | None:
    """The next value past the ``direction`` edge of the sorted ``values`` by their edge ratio
    (at most ``max_ratio``); None when there is none (a zero edge, below ``minimum``, or no new
    integer)."""
    lo, hi = (values[0], values[1]) if direction == "down" else (values[-2], values[-1])
    if lo <= 0:
        return None
    ratio = min(hi / lo, max_ratio) if max_ratio else hi / lo
    nxt = values[-1] * ratio if direction == "up" else values[0] / ratio
    if integer:
        nxt = int(round(nxt))
        if nxt in values:
            return None
    return nxt if nxt >= minimum else None


def in_order(fn: Callable, values: Sequence) -> list:
    """``[fn(v) for v in values]``: the default way a search scores its grid."""
    return [fn(v) for v in values]


def thread_map(workers: int) -> Callable[[Callable, Sequence], list]:
    """A map that runs up to ``workers`` calls at once in threads (each submits its own Spark jobs
    to the session) and returns their results in input order; :func:`in_order` for 1 worker.
    On small data most of a fit's wall time is per-job latency, not CPU, so fits overlap well."""
    if workers <= 1:
        return in_order

    def run(fn: Callable, values: Sequence) -> list:
        values = list(values)
        if len(values) < 2:
            return [fn(v) for v in values]
        with ThreadPoolExecutor(max_workers=min(workers, len(values))) as pool:
            return list(pool.map(fn, values))
    return run


def line_search(score_at: Callable[[float], dict], grid: Sequence[float], *, param: str,
                extend: int, integer: bool = False, minimum: float = 0.0,
                max_ratio: float | None = None, key: str = KEY,
                affordable: Callable[[float], bool] | None = None,
                map_fn: Callable[[Callable, Sequence], list] = in_order) -> list[dict]:
    """Score every value of ``grid`` (``score_at(value)`` returns a row holding ``param`` and
    ``key``; ``map_fn`` scores them, e.g. :func:`thread_map`), then, while the best row sits on an
    edge of what was tried, score one value past that edge (at most ``extend`` of them; none for a
    one-value grid, nor a value ``affordable`` rejects), a step of the grid's edge ratio capped at
    ``max_ratio``.  A step that improves the best by less than :data:`MIN_GAIN` (relative: below
    validation noise, not worth a costlier model) is the last one.

    Returns the rows in the order tried, each with ``step``: grid, extend_up or extend_down.
    """
    values = sorted(set(grid))
    rows = [{**row, "step": "grid"} for row in map_fn(score_at, values)]
    if len(rows) < 2:
        return rows
    for _ in range(extend):
        tried = sorted(r[param] for r in rows)
        best = best_of(rows, key)[param]
        direction = "up" if best == tried[-1] else "down" if best == tried[0] else None
        nxt = direction and _beyond(tried, direction, integer=integer, minimum=minimum,
                                    max_ratio=max_ratio)
        if nxt is None:
            break
        if affordable is not None and not affordable(nxt):
            LOG.info("best %s %g is on an edge of %s, but %s %g would cost more than the search "
                     "budget allows: not tried", param, best, tried, param, nxt)
            break
        LOG.info("best %s %g is on the %s edge of %s: trying %g", param, best,
                 "upper" if direction == "up" else "lower", tried, nxt)
        before = best_of(rows, key)[key]
        rows.append({**score_at(nxt), "step": f"extend_{direction}"})
        if rows[-1][key] > before * (1.0 - MIN_GAIN):
            break
    return rows


def centred_grid(grid: Sequence[float], at: float) -> list[float]:
    """Three values around ``at`` spaced by the ratio of ``grid``'s two largest values (``[at]``
    for a one-value grid or a zero ``at``)."""
    values = sorted(set(grid))
    if len(values) < 2 or at <= 0 or values[-2] <= 0:
        return [at]
    ratio = values[-1] / values[-2]
    return [at / ratio, at, at * ratio]


# ------------------------------------------------------------------------------------ candidates
def _bias_pair_rows(fit_df: DataFrame, val_df: DataFrame, users: Sequence[float],
                    items: Sequence[float], *, sweeps: int, tol: float | None, rating_min: float,
                    rating_max: float, local: bool, step: str) -> tuple[list[dict], BiasGrid]:
    """Every (λ_u, λ_i) of ``users`` × ``items`` fitted in the same sweeps and scored on ``val_df``."""
    pairs = [(float(a), float(b)) for a in sorted(set(users)) for b in sorted(set(items))]
    grid = fit_bias_grid(fit_df, regs=pairs, sweeps=sweeps, tol=tol, local=local)
    rmse = grid_rmse(grid, val_df, rating_min=rating_min, rating_max=rating_max)
    return [{"reg_user": a, "reg_item": b, "val_rmse": e, "sweeps": grid.tables.sweeps, "step": step}
            for (a, b), e in zip(pairs, rmse)], grid


def _shifted(values: Sequence[float], best: float) -> list[float] | None:
    """The grid moved one step past the edge ``best`` sits on (None: inside, or no step)."""
    values = sorted(set(values))
    if len(values) < 2 or best not in (values[0], values[-1]):
        return None
    nxt = _beyond(values, "up" if best == values[-1] else "down", integer=False, minimum=0.0)
    return None if nxt is None else sorted({best, nxt} | ({values[-2]} if best == values[-1]
                                                          else {values[1]}))


def search_bias_regs(fit_df: DataFrame, val_df: DataFrame, *, regs_user, regs_item, sweeps: int,
                     tol: float | None, rating_min: float, rating_max: float, extend: int,
                     local: bool = False) -> tuple[list[dict], Biases]:
    """λ_u and λ_i of the biases: every pair of ``regs_user`` × ``regs_item`` fitted on ``fit_df``
    in the same sweeps (:func:`batchml.bias.fit_bias_grid`) and scored on ``val_df`` as the
    bias-only model; while the best pair sits on an edge of a grid of two or more values, that
    grid moves one step past it (at most ``extend`` times; one more grid fit each).  The sweeps
    stop at ``tol`` × :data:`SEARCH_TOL_FACTOR`: the re-fit of the chosen pair converges to ``tol``.
    ``local``: the sweeps run on the driver (:func:`batchml.bias.fit_bias_grid`).

    Returns (one row per pair tried: reg_user, reg_item, val_rmse, sweeps, step; the
    :class:`Biases` of the best pair).
    """
    search_tol = None if tol is None else tol * SEARCH_TOL_FACTOR
    args = dict(sweeps=sweeps, tol=search_tol, rating_min=rating_min, rating_max=rating_max,
                local=local)
    users, items = list(regs_user), list(regs_item)
    rows, grid = _bias_pair_rows(fit_df, val_df, users, items, step="grid", **args)
    path, best_grid = list(rows), (grid, rows)
    for _ in range(extend):
        best = best_of(path)
        moved_u, moved_i = _shifted(users, best["reg_user"]), _shifted(items, best["reg_item"])
        if moved_u is None and moved_i is None:
            break
        users, items = moved_u or [best["reg_user"]], moved_i or [best["reg_item"]]
        LOG.info("best bias regs %s on a grid edge: trying %s x %s", best, users, items)
        rows, grid = _bias_pair_rows(fit_df, val_df, users, items, step="extend", **args)
        path.extend(rows)
        if best_of(path) in rows:
            best_grid[0].unpersist()
            best_grid = (grid, rows)
        else:
            grid.unpersist()
    grid, rows = best_grid
    best = best_of(rows)
    LOG.info("bias regs: best of %d pairs %s", len(path), best)
    biases = grid.pick(rows.index(best))
    grid.unpersist()
    return path, biases


def biased_candidate(fit_df: DataFrame, val_df: DataFrame, *, rank: int, reg: float, biases: Biases,
                     fit_args: dict) -> dict:
    """ALS+bias with all its rounds (:func:`fit_als_biased`) at (rank, reg) on ``fit_df`` (round 1
    shares ``biases``, which do not depend on rank or reg), scored on ``val_df`` only: rank, reg,
    rounds (the round with the best validation RMSE: later rounds can fit worse), its val_rmse,
    val_rmse_by_round, seconds."""
    t0 = time.perf_counter()
    fitted = fit_als_biased(fit_df, rank=rank, reg=reg, biases=biases, eval_df=val_df,
                            **fit_args)
    by_round = [r["eval_rmse"] for r in fitted.rounds]
    best = fitted.rounds[by_round.index(min(by_round))]
    row = {"rank": rank, "reg": reg, "rounds": best["round"], "val_rmse": best["eval_rmse"],
           "val_rmse_by_round": by_round, "seconds": round(time.perf_counter() - t0, 3)}
    for m in fitted.round_models:
        m.unpersist()
    return row


def rank_cost(rank: float) -> float:
    """The relative cost of an ALS fit at ``rank``: rank², the work per rating per iteration of the
    normal equations (which dominates while the ratings per user or item exceed the rank)."""
    return float(rank) ** 2


def rank_reg_search(score_at: Callable[[int, float], dict], ranks: Sequence[int],
                    regs: Sequence[float], *, extend: int, budget: float | None = None,
                    map_fn: Callable[[Callable, Sequence], list] = in_order,
                    progress: Progress | None = None, probe_ranks: bool = False) -> list[dict]:
    """Reg at every rank of ``ranks`` (a :func:`line_search` each), then rank: a rank past the
    edge is first probed at the best reg so far, and only when that beats the best by
    :data:`MIN_GAIN` does it get a reg line centred there (a larger rank costs more per fit, and
    on real data its gain is often below validation noise).  ``probe_ranks``: every rank of
    ``ranks`` after the smallest is probed so too, instead of scoring its whole reg grid with the
    smallest's (for fits run one at a time: 100M Prize-shaped, the rank-50 line cost 190 s of a
    245 s search and lost by 3.9 %; on MovieLens folds rank 50 at rank 10's reg gains 0.25 %, so
    gets its line); a probed grid rank that gains scores its own reg grid (plus the probe's reg),
    so the search, and the budget below, are what they were without the probe.
    ``score_at(rank, reg)`` returns a row holding rank, reg and ``val_rmse``; ``progress`` hears
    of the steps added to the plan.

    ``budget``: a rank past the grid is tried only when its :func:`rank_cost` is at most
    ``budget`` times the summed cost of every candidate scored so far (None: no limit), so one
    probe never costs more than the search it extends.  ``map_fn`` scores the grid's
    (rank, reg) pairs (e.g. concurrently: :func:`thread_map`); the rows are the same as in order.

    Returns every row tried, in order, each with ``step`` (grid, extend_*, or probe for a rank
    that was only probed: ``eligible`` False, as its gain does not pay for the larger rank, so
    :func:`best_of` passes over it).
    """
    path: list[dict] = []
    more = progress.plan_more if progress is not None else (lambda n=1: None)
    gridded = sorted(set(ranks))[:1] if probe_ranks else sorted(set(ranks))
    pairs = [(int(k), float(g)) for k in gridded for g in sorted(set(regs))]
    spent = [sum(rank_cost(k) for k, _ in pairs)]
    grid_rows = dict(zip(pairs, map_fn(lambda pair: score_at(*pair), pairs)))

    def cached(rank: int, reg: float) -> dict:
        row = grid_rows.pop((rank, float(reg)), None)
        if row is None:
            spent[0] += rank_cost(rank)
            row = score_at(rank, reg)
        return row

    def best_at_rank(rank: float) -> dict:
        rank, known = int(rank), {}
        grid = regs
        if rank not in gridded and path:  # past the grid (or probe_ranks): the best reg first
            best = best_of(path)
            more(1)
            probe = cached(rank, best["reg"])
            if probe[KEY] > best[KEY] * (1.0 - MIN_GAIN):
                LOG.info("rank %d at reg %g gains < %.1f%% on %.4f: its reg line is skipped", rank,
                         best["reg"], 100 * MIN_GAIN, best[KEY])
                rejected = {**probe, "step": "probe", "eligible": False}
                path.append(rejected)
                return rejected
            # a grid rank scores its own reg grid (so the search costs what it did unprobed), a
            # rank past the grid a line centred on the probe
            line = sorted(set(regs) | {best["reg"]}) if rank in ranks else centred_grid(regs, best["reg"])
            grid, known = line, {best["reg"]: probe}
            more(len(set(grid)) - 1)

        def at_reg(reg: float) -> dict:
            if reg in known:
                return known.pop(reg)
            more(0 if reg in grid else 1)
            return cached(rank, reg)

        rows = line_search(at_reg, grid, param="reg", extend=extend)
        path.extend(rows)
        return best_of(rows)

    def affordable(rank: float) -> bool:
        return budget is None or rank_cost(rank) <= budget * spent[0]

    line_search(best_at_rank, ranks, param="rank", extend=extend, integer=True, minimum=1,
                max_ratio=RANK_STEP, affordable=affordable)
    return path


def search_biased(fit_df: DataFrame, val_df: DataFrame, *, ranks, regs, biases: Biases, extend: int,
                  iters: int, rounds: int, sweeps: int, seed: int, rating_min: float,
                  rating_max: float, tol: float | None = None, checkpoint_interval: int = 10,
                  blocks: int = 0, budget: float | None = None, local_biases: bool = False,
                  map_fn: Callable[[Callable, Sequence], list] = in_order, probe_ranks: bool = False,
                  col_user: str = USER_COL, col_item: str = ITEM_COL,
                  col_rating: str = RATING_COL) -> list[dict]:
    """ALS+bias over rank and reg (:func:`rank_reg_search`); λ_u and λ_i are those of ``biases``
    (fitted on ``fit_df``).  The rounds matter to the choice: round-1 biases absorb each user's
    mean affinity to what they rated, which a small rank can only fit once later rounds re-fit
    the biases on r − p·q.  ``budget``, ``map_fn`` and ``probe_ranks``: see :func:`rank_reg_search`;
    ``local_biases``: later rounds fit their biases on the driver (:func:`batchml.bias.fit_biases`).

    Returns every candidate tried, in order (see :func:`biased_candidate`), each with ``step``.
    """
    fit_args = dict(iters=iters, rounds=rounds, reg_user=biases.reg_user, reg_item=biases.reg_item,
                    sweeps=sweeps, tol=tol, seed=seed, rating_min=rating_min, rating_max=rating_max,
                    checkpoint_interval=checkpoint_interval, blocks=blocks, local_biases=local_biases,
                    col_user=col_user, col_item=col_item, col_rating=col_rating)
    gridded = 1 if probe_ranks else len(set(ranks))
    progress = Progress("search ALS+bias candidate", gridded * len(set(regs)), LOG)

    def candidate(rank: int, reg: float) -> dict:
        row = biased_candidate(fit_df, val_df, rank=rank, reg=reg, biases=biases, fit_args=fit_args)
        progress.step(f"rank={rank} reg={reg:g} val_rmse={row['val_rmse']:.4f}")
        return row

    return rank_reg_search(candidate, ranks, regs, extend=extend, budget=budget, map_fn=map_fn,
                           progress=progress, probe_ranks=probe_ranks)


def search_plain(fit_df: DataFrame, val_df: DataFrame, *, rank: int, regs, extend: int, iters: int,
                 seed: int, rating_min: float, rating_max: float, checkpoint_interval: int = 10,
                 blocks: int = 0, map_fn: Callable[[Callable, Sequence], list] = in_order,
                 col_user: str = USER_COL, col_item: str = ITEM_COL,
                 col_rating: str = RATING_COL) -> list[dict]:
    """Plain ALS at ``rank`` over reg (a :func:`line_search`; ``map_fn`` scores the grid); one row
    per candidate (rank, reg, val_rmse, seconds, step)."""
    keys = dict(col_user=col_user, col_item=col_item)
    fallback = float(fit_df.agg(F.avg(F.col(col_rating).cast("double"))).first()[0])
    progress = Progress("search plain ALS candidate", len(set(regs)), LOG)

    def score_at(reg: float) -> dict:
        progress.plan_more(0 if reg in regs else 1)
        t0 = time.perf_counter()
        m = fit_plain_als(fit_df, rank=rank, reg=reg, iters=iters, seed=seed, rating_min=rating_min,
                          rating_max=rating_max, checkpoint_interval=checkpoint_interval,
                          blocks=blocks, fallback=fallback, col_rating=col_rating, **keys)
        row = {"rank": rank, "reg": reg,
               "val_rmse": evaluate(m, val_df, col_rating=col_rating, **keys)["rmse"],
               "seconds": round(time.perf_counter() - t0, 3)}
        progress.step(f"rank={rank} reg={reg:g} val_rmse={row['val_rmse']:.4f}")
        m.unpersist()
        return row

    return line_search(score_at, regs, param="reg", extend=extend, map_fn=map_fn)


def best_of(rows: list[dict], key: str = KEY) -> dict:
    """The row with the lowest ``key`` (ties: the first tried) of those not marked
    ``eligible: False`` (a rank probe whose gain was too small to pay for it)."""
    pool = [r for r in rows if r.get("eligible", True)] or rows
    return min(pool, key=lambda r: (r[key], rows.index(r)))


def overfit_check(train_rmse: float, val_rmse: float, ratio: float, what: str) -> bool:
    """Log a WARNING and return True when ``train_rmse < ratio * val_rmse``."""
    if train_rmse is not None and val_rmse and train_rmse < ratio * val_rmse:
        LOG.warning("%s looks overfit: training RMSE %.4f is far below validation RMSE %.4f "
                    "(ratio %.2f < %.2f); the training RMSE is not a result, the held-out one is",
                    what, train_rmse, val_rmse, train_rmse / val_rmse, ratio)
        return True
    return False
