"""The factor model directory: the only code that writes it or reads it (factorize writes; recommend,
query and the web page read).

Layout::

    model.json   {"format": "batchml.factorize/2", "kind": "biased" | "aligned" | ..., "mu": float,
                  "gamma": float, "rank": int, "rating_min": float, "rating_max": float,
                  "fallback": float | null,
                  "split": {"test": "random:0.1" | "probe" | DIR | ..., "seed": int},
                  "settings": {...training settings...}}
    users/       Parquet: user_idx int, user_id string, bias double null, features array<float> null,
                 n_ratings long null      (every user of the dataset's id map; null = not trained)
    items/       Parquet: item_idx int, item_id string, title string null, year int null,
                 bias double null, features array<float> null, n_ratings long null
    metrics.json (written beside them by the factorize job: the RMSE table, timings, settings)

Score for (u, i) = clip(μ + coalesce(b_u, 0) + coalesce(b_i, 0) + γ·coalesce(p_u·q_i, 0))
(:func:`batchml.factor_model.with_prediction`).  γ is whatever the fit produced (1 for the biased
model, a least-squares fit for the aligned one) and is read back as written, by every reader.
Format 1 dirs (older batchml) read the same, without the split they were trained with.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow.dataset as ds
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.errors import InputError
from batchml.factor_model import FactorModel, with_prediction
from batchml.io.atomic import exists, read_json, write_json
from batchml.schema import (BIAS_COL, COUNT_COL, FEATURES_COL, ITEM_COL, ITEM_ID_COL, ITEMS,
                            PREDICTION_COL, TITLE_COL, USER_COL, USER_ID_COL, USERS, YEAR_COL)

MODEL_FILE = "model.json"
MODEL_FORMAT = "batchml.factorize/2"
READABLE_FORMATS = ("batchml.factorize/1", MODEL_FORMAT)
USER_COLUMNS = (USER_COL, USER_ID_COL, BIAS_COL, FEATURES_COL, COUNT_COL)
ITEM_COLUMNS = (ITEM_COL, ITEM_ID_COL, TITLE_COL, YEAR_COL, BIAS_COL, FEATURES_COL, COUNT_COL)


@dataclass(frozen=True)
class ModelMeta:
    """``model.json``: the scalars of a model and the split it was trained on."""

    kind: str
    mu: float
    gamma: float
    rank: int
    rating_min: float
    rating_max: float
    fallback: float | None = None
    split_test: str | None = None   # the --test spec the model was trained with
    split_seed: int | None = None   # the seed of that split (random:/temporal: specs)
    settings: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model: FactorModel, *, split_test: str | None, split_seed: int | None,
           settings: dict | None = None) -> "ModelMeta":
        return cls(kind=model.kind, mu=float(model.mu), gamma=float(model.gamma), rank=int(model.rank),
                   rating_min=float(model.rating_min), rating_max=float(model.rating_max),
                   fallback=model.fallback, split_test=split_test, split_seed=split_seed,
                   settings={**model.settings, **(settings or {})})

    def to_json(self) -> dict:
        return {"format": MODEL_FORMAT, "kind": self.kind, "mu": self.mu, "gamma": self.gamma,
                "rank": self.rank, "rating_min": self.rating_min, "rating_max": self.rating_max,
                "fallback": self.fallback, "split": {"test": self.split_test, "seed": self.split_seed},
                "settings": self.settings}

    @classmethod
    def from_json(cls, data: dict, where: str) -> "ModelMeta":
        if data.get("format") not in READABLE_FORMATS:
            raise InputError(f"{where} is not a batchml factor model (format {data.get('format')!r}, "
                             f"expected {MODEL_FORMAT})")
        missing = [k for k in ("kind", "mu", "gamma", "rank", "rating_min", "rating_max") if k not in data]
        if missing:
            raise InputError(f"{where} lacks {', '.join(missing)}: re-run jobs/factorize.py")
        split = data.get("split") or {}
        return cls(kind=str(data["kind"]), mu=float(data["mu"]), gamma=float(data["gamma"]),
                   rank=int(data["rank"]), rating_min=float(data["rating_min"]),
                   rating_max=float(data["rating_max"]), fallback=data.get("fallback"),
                   split_test=split.get("test"), split_seed=split.get("seed"),
                   settings=data.get("settings") or {})


# ----------------------------------------------------------------------------------------- write
def _side_table(map_df: DataFrame, fac_df: DataFrame | None, key: str, keep: Sequence[str]) -> DataFrame:
    cols = [c for c in keep if c in map_df.columns]

    def col(name: str, typ: str) -> F.Column:
        present = fac_df is not None and name in fac_df.columns
        return (F.col(name) if present else F.lit(None)).cast(typ).alias(name)

    fac = (fac_df.select(key, col(BIAS_COL, "double"), col(FEATURES_COL, "array<float>"),
                         col(COUNT_COL, "long"))
           if fac_df is not None else None)
    base = map_df.select(*cols)
    joined = base.join(fac, on=key, how="left") if fac is not None else base.select(
        *cols, col(BIAS_COL, "double"), col(FEATURES_COL, "array<float>"), col(COUNT_COL, "long"))
    return joined.select(*cols, BIAS_COL, FEATURES_COL, COUNT_COL).orderBy(key)


def write_model(path: str, model: FactorModel, meta: ModelMeta, *, users_df: DataFrame,
                items_df: DataFrame) -> None:
    """Write ``model`` into ``path`` (an existing empty dir, e.g. the temporary dir of
    :func:`batchml.io.atomic.atomic_dir`); ``users_df`` / ``items_df`` are the dataset's id maps."""
    _side_table(users_df, model.user_df, USER_COL, [USER_COL, USER_ID_COL]) \
        .write.mode("overwrite").parquet(f"{path}/{USERS}")
    _side_table(items_df, model.item_df, ITEM_COL, [ITEM_COL, ITEM_ID_COL, TITLE_COL, YEAR_COL]) \
        .write.mode("overwrite").parquet(f"{path}/{ITEMS}")
    write_json(f"{path}/{MODEL_FILE}", meta.to_json())


# ------------------------------------------------------------------------------------------ read
def read_meta(path: str) -> ModelMeta:
    """``model.json`` of a model dir; :class:`InputError` when ``path`` is not one."""
    where = f"{path}/{MODEL_FILE}"
    if not exists(where):
        raise InputError(f"{path} is not a model dir (no {MODEL_FILE}; run jobs/factorize.py)")
    try:
        data = read_json(where)
    except ValueError as exc:
        raise InputError(f"{where} is not valid JSON: {exc}") from None
    return ModelMeta.from_json(data, where)


@dataclass
class LoadedModel:
    """A model dir read with Spark: the :class:`FactorModel` and the full user / item tables
    (``users_df``: :data:`USER_COLUMNS`, ``items_df``: :data:`ITEM_COLUMNS` as present)."""

    model: FactorModel
    meta: ModelMeta
    users_df: DataFrame
    items_df: DataFrame

    def predict(self, pairs_df: DataFrame, *, col_user_id: str = USER_ID_COL,
                col_item_id: str = ITEM_ID_COL, col_prediction: str = PREDICTION_COL) -> DataFrame:
        """Score pairs of source ids; unknown ids fall back (unknown user → μ + b_i, ...).

        Returns the input columns plus ``col_prediction`` double.
        """
        u = self.users_df.select(F.col(USER_ID_COL).alias(col_user_id), USER_COL)
        i = self.items_df.select(F.col(ITEM_ID_COL).alias(col_item_id), ITEM_COL)
        indexed = pairs_df.join(u, on=col_user_id, how="left").join(i, on=col_item_id, how="left")
        scored = with_prediction(indexed, self.model, col_prediction=col_prediction)
        return scored.select(*pairs_df.columns, col_prediction)


def load_model(spark: SparkSession, path: str) -> LoadedModel:
    """Read a model dir (layout in the module docstring) with Spark."""
    meta = read_meta(path)
    tables = {}
    for name, key in ((USERS, USER_COL), (ITEMS, ITEM_COL)):
        if not exists(f"{path}/{name}"):
            raise InputError(f"{path} has no {name}/ table: re-run jobs/factorize.py")
        df = spark.read.parquet(f"{path}/{name}")
        absent = {key, BIAS_COL, FEATURES_COL} - set(df.columns)
        if absent:
            raise InputError(f"{path}/{name} lacks columns {sorted(absent)}")
        tables[name] = df
    users, items = tables[USERS], tables[ITEMS]
    model = FactorModel(mu=meta.mu, gamma=meta.gamma, rating_min=meta.rating_min,
                        rating_max=meta.rating_max, kind=meta.kind, rank=meta.rank,
                        fallback=meta.fallback, settings=meta.settings,
                        user_df=users.select(USER_COL, BIAS_COL, FEATURES_COL),
                        item_df=items.select(ITEM_COL, BIAS_COL, FEATURES_COL))
    return LoadedModel(model=model, meta=meta, users_df=users, items_df=items)


def _read_table_pandas(path: str, name: str, columns: Sequence[str],
                       where: ds.Expression | None = None) -> pd.DataFrame:
    read_meta(path)
    table = Path(path) / name
    if not table.exists():
        raise InputError(f"{path} has no {name}/ table: re-run jobs/factorize.py")
    dataset = ds.dataset(str(table), format="parquet")
    return dataset.to_table(columns=[c for c in columns if c in dataset.schema.names],
                            filter=where).to_pandas()


def read_items_pandas(path: str, columns: Sequence[str] = ITEM_COLUMNS) -> pd.DataFrame:
    """The model's item table with pyarrow (no Spark), the asked columns that exist."""
    return _read_table_pandas(path, ITEMS, columns)


def read_users_pandas(path: str, columns: Sequence[str] = USER_COLUMNS, *,
                      user_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The model's user table with pyarrow (no Spark), the asked columns that exist; only the
    rows of ``user_ids`` (source ids) when given."""
    where = ds.field(USER_ID_COL).isin([str(u) for u in user_ids]) if user_ids is not None else None
    return _read_table_pandas(path, USERS, columns, where)
