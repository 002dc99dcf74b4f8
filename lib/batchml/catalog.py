"""Read-only answers from job outputs without Spark (pyarrow): the terminal query and the web page
share them.

A :class:`Catalog` holds the paths of a model dir (read through :mod:`batchml.model_dir`), a
dataset dir, a similarity output and a recommendation output, each optional, and answers: a known
user's top-N, a new user's top-N by fold-in, the popular list, an item's similar items, title
look-ups.  What it reads once (titles, candidate arrays, the popular list) it keeps; the ratings
are never held in memory: the popular list streams their record batches
(:func:`batchml.recommend.popular.item_totals`), a user's rated items are read with a filter.
Each answer is a pandas DataFrame; a missing input is an :class:`~batchml.errors.InputError`
naming the flag that supplies it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from batchml.config import RecommendSettings
from batchml.errors import InputError
from batchml.model_dir import ModelMeta, read_items_pandas, read_meta, read_users_pandas
from batchml.recommend.foldin import FoldIn, fold_in
from batchml.recommend.item_lookup import ItemLookup
from batchml.recommend.popular import item_totals, items_by_bias_pandas, popular_items_streamed
from batchml.recommend.scoring import ItemArrays, model_item_arrays, recommend_for_vector
from batchml.schema import (BIAS_COL, CO_COUNT_COL, COUNT_COL, FEATURES_COL, ITEM_COL, ITEM_ID_COL,
                            ITEMS, MEAN_COL, OTHER_COL, POPULAR, RANK_COL, RATING_COL, RATINGS,
                            SHRUNK_COL, SIMILAR_ITEMS, SIMILARITY_COL, TITLE_COL, USER_COL,
                            USER_ID_COL, YEAR_COL)


def table_dir(path: str | None, name: str) -> Path | None:
    """``path/name`` when both exist, else None."""
    if not path:
        return None
    p = Path(path) / name
    return p if p.exists() else None


def read_table(path: Path, columns: Sequence[str] | None = None, filt=None) -> pd.DataFrame:
    """A Parquet table (dir or file) with pyarrow: the asked columns that exist, rows of ``filt``."""
    dataset = ds.dataset(str(path), format="parquet")
    cols = [c for c in columns if c in dataset.schema.names] if columns else None
    return dataset.to_table(columns=cols, filter=filt).to_pandas()


@dataclass(frozen=True)
class UserTop:
    """A known user's list: ``top`` (item_idx, score, rank), the items left out as rated (None
    without a dataset) and whether the model has factors for the user."""

    user_id: str
    top: pd.DataFrame
    seen: np.ndarray | None
    has_factors: bool


@dataclass(frozen=True)
class FoldInTop:
    """A new user's fold-in (b_u, p_u) and their list (item_idx, score, rank)."""

    fit: FoldIn
    top: pd.DataFrame


class Catalog:
    """The model, dataset, similarity and recommendation outputs a query runs against (any may be
    None); read lazily, with pyarrow."""

    def __init__(self, settings: RecommendSettings, *, model: str | None = None,
                 dataset: str | None = None, similar: str | None = None, recs: str | None = None):
        self.s = settings
        self.model_dir, self.dataset_dir, self.similar_dir, self.recs_dir = model, dataset, similar, recs
        for flag, path, what in (("--model", model, "model dir {} does not exist (run jobs/factorize.py first)"),
                                 ("--dataset", dataset, "dataset dir {} does not exist"),
                                 ("--recs", recs, "recommendation dir {} does not exist")):
            if path and not Path(path).is_dir():
                raise InputError(what.format(path))

    # -- model
    @property
    def model(self) -> str:
        """The model dir; InputError when the query was given none."""
        if not self.model_dir:
            raise InputError("this command needs --model DIR (a model dir from jobs/factorize.py)")
        return self.model_dir

    @cached_property
    def meta(self) -> ModelMeta:
        return read_meta(self.model)

    def model_items(self) -> pd.DataFrame:
        return read_items_pandas(self.model)

    def model_user(self, user_id: str) -> pd.DataFrame:
        """The model's row of one source user id (empty when unknown)."""
        return read_users_pandas(self.model, [USER_COL, USER_ID_COL, BIAS_COL, FEATURES_COL],
                                 user_ids=[user_id])

    @cached_property
    def _model_items_arrays(self) -> pd.DataFrame:
        return read_items_pandas(self.model, [ITEM_COL, BIAS_COL, FEATURES_COL, COUNT_COL])

    def _arrays(self, min_ratings: int) -> ItemArrays:
        m = self.meta
        return model_item_arrays(self._model_items_arrays, mu=m.mu, gamma=m.gamma, rank=m.rank,
                                 min_ratings=min_ratings)

    @cached_property
    def candidates(self) -> ItemArrays:
        """Trained items with at least ``min_ratings`` ratings: what is recommended."""
        return self._arrays(self.s.min_ratings)

    @cached_property
    def trained(self) -> ItemArrays:
        """Every trained item: what a fold-in is solved against."""
        return self._arrays(0)

    # -- titles
    @cached_property
    def items(self) -> pd.DataFrame:
        """item_idx, item_id, title, year: from the dataset, else from the model."""
        cols = [ITEM_COL, ITEM_ID_COL, TITLE_COL, YEAR_COL]
        src = table_dir(self.dataset_dir, ITEMS)
        if src is not None:
            return read_table(src, cols)
        if self.model_dir:
            return read_items_pandas(self.model_dir, cols)
        raise InputError("need --dataset DIR (or --model DIR) to look up titles")

    @cached_property
    def lookup(self) -> ItemLookup:
        return ItemLookup(self.items)

    # -- answers
    def seen_items(self, user_idx: int) -> np.ndarray | None:
        """The items ``user_idx`` rated in the dataset (None without a dataset)."""
        src = table_dir(self.dataset_dir, RATINGS)
        if src is None:
            return None
        got = read_table(src, [ITEM_COL], ds.field(USER_COL) == pa.scalar(user_idx, pa.int32()))
        return got[ITEM_COL].to_numpy(np.int64)

    def recommend_user(self, user_id: str) -> UserTop:
        """Top-N of a known source user id, leaving out what they rated; InputError when unknown."""
        got = self.model_user(user_id)
        if got.empty:
            raise InputError(f'no such user id "{user_id}" in {self.model_dir}')
        row = got.iloc[0]
        seen = self.seen_items(int(row[USER_COL]))
        feats = row[FEATURES_COL]
        bias = 0.0 if pd.isna(row[BIAS_COL]) else float(row[BIAS_COL])
        top = recommend_for_vector(self.candidates, bias=bias,
                                   factors=None if feats is None else np.asarray(feats, np.float64),
                                   n=self.s.top_n, exclude=() if seen is None else seen)
        return UserTop(user_id=user_id, top=top, seen=seen, has_factors=feats is not None)

    def fold_in(self, item_idx: np.ndarray, ratings: np.ndarray) -> FoldInTop:
        """A new user's b_u, p_u from ``ratings`` of ``item_idx``, and their top-N."""
        s = self.s
        fit = fold_in(item_idx, ratings, self.trained, mu=self.meta.mu, reg=s.fold_in_reg,
                      bias_reg=s.fold_in_bias_reg)
        top = recommend_for_vector(self.candidates, bias=fit.bias, factors=fit.factors, n=s.top_n,
                                   exclude=fit.item_idx)
        return FoldInTop(fit=fit, top=top)

    def items_by_bias(self) -> pd.DataFrame:
        """The model's items in bias order (``min_ratings`` applied), the first ``top_n``."""
        return items_by_bias_pandas(self.model_items(), min_ratings=self.s.min_ratings).head(self.s.top_n)

    @cached_property
    def _popular(self) -> tuple[pd.DataFrame, float | None]:
        table = table_dir(self.recs_dir, POPULAR)
        if table is not None:    # the recommendation job's list, as it wrote it
            pdf = read_table(table, [ITEM_COL, COUNT_COL, MEAN_COL, SHRUNK_COL, RANK_COL])
            return pdf.sort_values(RANK_COL), None
        src = table_dir(self.dataset_dir, RATINGS)
        if src is None:
            raise InputError("popular by shrunk mean needs --dataset DIR (its ratings) or --recs DIR; "
                             "or use --by bias with --model DIR")
        totals = item_totals(ds.dataset(str(src), format="parquet").to_batches(columns=[ITEM_COL, RATING_COL]))
        if totals.n_ratings == 0:
            raise InputError("the dataset has no ratings")
        return popular_items_streamed(totals, prior_strength=self.s.prior_strength,
                                      min_ratings=self.s.min_ratings), totals.mu

    def popular(self) -> tuple[pd.DataFrame, float | None]:
        """(the first ``top_n`` of the popular list, the global mean μ it shrinks toward; None when
        read from ``--recs``): item_idx, n_ratings, mean_rating, shrunk_mean."""
        pdf, mu = self._popular
        return pdf.head(self.s.top_n), mu

    def similar(self, item: int) -> pd.DataFrame:
        """The similarity job's top ``top_n`` neighbours of ``item``: item_idx (the neighbour),
        similarity, co_count, rank; InputError without a similarity output."""
        if not self.similar_dir:
            raise InputError("similar needs --similar DIR: the output dir of jobs/similarity.py "
                             f"(holding {SIMILAR_ITEMS}/)")
        table = table_dir(self.similar_dir, SIMILAR_ITEMS)
        if table is None:
            raise InputError(f"no {SIMILAR_ITEMS} table in {self.similar_dir} (missing dir or not a "
                             "similarity output; run jobs/similarity.py --dataset ... --output "
                             f"{self.similar_dir})")
        sim = read_table(table, [ITEM_COL, OTHER_COL, SIMILARITY_COL, CO_COUNT_COL, RANK_COL],
                         ds.field(ITEM_COL) == pa.scalar(item, pa.int32()))
        return (sim.sort_values(RANK_COL).head(self.s.top_n)
                .drop(columns=[ITEM_COL]).rename(columns={OTHER_COL: ITEM_COL}))


def describe_items(lookup: ItemLookup, pdf: pd.DataFrame) -> pd.DataFrame:
    """``pdf`` (with ``item_idx``) joined with item_id, title and year, in its row order."""
    desc = lookup.describe(pdf[ITEM_COL]).drop(columns=[ITEM_COL])
    base = pdf.drop(columns=[c for c in desc.columns if c in pdf.columns]).reset_index(drop=True)
    return pd.concat([base, desc.reset_index(drop=True)], axis=1)

