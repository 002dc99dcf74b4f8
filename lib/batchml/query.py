"""Ask a trained model questions at a terminal (no Spark: Parquet is read with pyarrow).

    python -m batchml.query --model DIR --dataset DIR recommend USER_ID
    python -m batchml.query --model DIR --dataset DIR foldin my_ratings.csv
    python -m batchml.query --model DIR --dataset DIR popular [--by bias]
    python -m batchml.query --dataset DIR --similar DIR similar "the two towers"

``recommend`` scores every trained item for a known user (μ + b_u + b_i + γ·p_u·q_i) and leaves
out the items the user rated in the dataset; ``foldin`` does the same for a new user described
by a CSV (header ``item,rating``; item = a source id or a title) without re-training; ``popular``
ranks by shrunk mean rating (or by model item bias); ``similar`` reads the similarity job's
``similar_items`` table.  Titles match case-insensitively; an unknown title or user id is
reported with suggestions, not a traceback.  Exit codes: 0 ok, 1 not found / bad input, 2 usage.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from batchml.cli import Flag, fail, load_job_config
from batchml.config import DEFAULT_CONF
from batchml.errors import InputError, UserError
from batchml.model_dir import ModelMeta, read_items_pandas, read_meta, read_users_pandas
from batchml.recommend.foldin import fold_in, read_fold_in_csv
from batchml.recommend.item_lookup import ItemLookup
from batchml.recommend.popular import items_by_bias_pandas, popular_items_pandas
from batchml.recommend.scoring import ItemArrays, model_item_arrays, recommend_for_vector
from batchml.schema import (BIAS_COL, CO_COUNT_COL, COUNT_COL, FEATURES_COL, ITEM_COL, ITEM_ID_COL,
                            ITEMS, MEAN_COL, OTHER_COL, RANK_COL, RATING_COL, RATINGS, SCORE_COL,
                            SHRUNK_COL, SIMILAR_ITEMS, SIMILARITY_COL, TITLE_COL, USER_COL,
                            USER_ID_COL, YEAR_COL)

APP_NAME = "batchml.query"
TOP_N = Flag("-n", "recommend.top_n", "rows to show", metavar="N")


def _table_dir(path: str | None, name: str) -> Path | None:
    if not path:
        return None
    p = Path(path) / name
    return p if p.exists() else None


def _read(path: Path, columns: Sequence[str] | None = None, filt=None) -> pd.DataFrame:
    dataset = ds.dataset(str(path), format="parquet")
    cols = [c for c in columns if c in dataset.schema.names] if columns else None
    return dataset.to_table(columns=cols, filter=filt).to_pandas()


class Catalog:
    """The model and dataset a query runs against, read lazily (the model through
    :mod:`batchml.model_dir`, the dataset's tables with pyarrow)."""

    def __init__(self, model: str | None, dataset: str | None, cfg):
        self.model_dir, self.dataset_dir, self.cfg = model, dataset, cfg.recommend
        if model and not Path(model).is_dir():
            raise InputError(f"model dir {model} does not exist (run jobs/factorize.py first)")
        if dataset and not Path(dataset).is_dir():
            raise InputError(f"dataset dir {dataset} does not exist")
        self._items: pd.DataFrame | None = None
        self._meta: ModelMeta | None = None

    # -- model
    @property
    def model(self) -> str:
        """The model dir; InputError when the query was given none."""
        if not self.model_dir:
            raise InputError("this command needs --model DIR (a model dir from jobs/factorize.py)")
        return self.model_dir

    @property
    def meta(self) -> ModelMeta:
        if self._meta is None:
            self._meta = read_meta(self.model)
        return self._meta

    def model_items(self) -> pd.DataFrame:
        return read_items_pandas(self.model)

    def model_user(self, user_id: str) -> pd.DataFrame:
        """The model's row of one source user id (empty when unknown)."""
        return read_users_pandas(self.model, [USER_COL, USER_ID_COL, BIAS_COL, FEATURES_COL],
                                 user_ids=[user_id])

    def arrays(self, min_ratings: int | None = None) -> ItemArrays:
        m = self.meta
        return model_item_arrays(self.model_items(), mu=m.mu, gamma=m.gamma, rank=m.rank,
                                 min_ratings=self.cfg.min_ratings if min_ratings is None else min_ratings)

    # -- titles
    def items(self) -> pd.DataFrame:
        """item_idx, item_id, title, year: from the dataset, else from the model."""
        if self._items is None:
            cols = [ITEM_COL, ITEM_ID_COL, TITLE_COL, YEAR_COL]
            src = _table_dir(self.dataset_dir, ITEMS)
            if src is not None:
                self._items = _read(src, cols)
            elif self.model_dir:
                self._items = read_items_pandas(self.model_dir, cols)
            else:
                raise InputError("need --dataset DIR (or --model DIR) to look up titles")
        return self._items

    def lookup(self) -> ItemLookup:
        return ItemLookup(self.items())

    # -- dataset
    def seen_items(self, user_idx: int) -> np.ndarray | None:
        src = _table_dir(self.dataset_dir, RATINGS)
        if src is None:
            return None
        got = _read(src, [ITEM_COL], ds.field(USER_COL) == pa.scalar(user_idx, pa.int32()))
        return got[ITEM_COL].to_numpy(np.int64)

    def ratings(self) -> pd.DataFrame:
        src = _table_dir(self.dataset_dir, RATINGS)
        if src is None:
            raise InputError("popular by shrunk mean needs --dataset DIR (its ratings); "
                             "or use --by bias with --model DIR")
        return _read(src, [ITEM_COL, RATING_COL])


def _show(lookup: ItemLookup, pdf: pd.DataFrame, score_col: str, extra: Sequence[str] = ()) -> str:
    desc = lookup.describe(pdf[ITEM_COL])
    lines = []
    for k, (row, d) in enumerate(zip(pdf.itertuples(index=False), desc.itertuples(index=False)), 1):
        title = getattr(d, TITLE_COL, None) or "(no title)"
        year = getattr(d, YEAR_COL, None)
        year = f" ({int(year)})" if year is not None and not pd.isna(year) else ""
        more = "".join(f"  {c}={getattr(row, c)}" for c in extra)
        lines.append(f"{k:>3}. {getattr(row, score_col):8.3f}  {title}{year} [{getattr(d, ITEM_ID_COL)}]{more}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- commands
def cmd_recommend(cat: Catalog, args) -> str:
    got = cat.model_user(args.user_id)
    if got.empty:
        raise InputError(f'no such user id "{args.user_id}" in {cat.model_dir}')
    row = got.iloc[0]
    seen = cat.seen_items(int(row[USER_COL]))
    feats = row[FEATURES_COL]
    top = recommend_for_vector(cat.arrays(), bias=0.0 if pd.isna(row[BIAS_COL]) else float(row[BIAS_COL]),
                               factors=None if feats is None else np.asarray(feats, np.float64),
                               n=cat.cfg.top_n, exclude=() if seen is None else seen)
    head = f"top {len(top)} for user {args.user_id}"
    head += (f" (excluding {len(seen)} rated items)" if seen is not None
             else " (no --dataset: rated items not excluded)")
    if feats is None:
        head += " [user has no factors in the model: biases only]"
    return head + "\n" + _show(cat.lookup(), top, SCORE_COL)


def cmd_foldin(cat: Catalog, args) -> str:
    lookup = cat.lookup()
    idx, ratings = read_fold_in_csv(args.file, lookup)
    s = cat.cfg
    fi = fold_in(idx, ratings, cat.arrays(min_ratings=0), mu=cat.meta.mu,
                 reg=s.fold_in_reg, bias_reg=s.fold_in_bias_reg)
    top = recommend_for_vector(cat.arrays(), bias=fi.bias, factors=fi.factors, n=s.top_n,
                               exclude=idx)
    rated = "; ".join(f"{t} = {r:g}" for t, r in zip(lookup.describe(idx)[TITLE_COL], ratings))
    return (f"folded in {len(idx)} ratings ({rated}): b_u = {fi.bias:+.3f}, |p_u| = "
            f"{np.linalg.norm(fi.factors):.3f}\n" + _show(lookup, top, SCORE_COL))


def cmd_popular(cat: Catalog, args) -> str:
    s = cat.cfg
    if args.by == "bias":
        top = items_by_bias_pandas(cat.model_items(), min_ratings=s.min_ratings).head(s.top_n)
        return (f"top {len(top)} by model item bias b_i\n"
                + _show(cat.lookup(), top, BIAS_COL, extra=[c for c in [COUNT_COL] if c in top]))
    r = cat.ratings()
    if r.empty:
        raise InputError("the dataset has no ratings")
    mu = float(r[RATING_COL].astype(np.float64).mean())
    m = s.prior_strength
    top = (popular_items_pandas(r, prior_strength=m, mu=mu, min_ratings=s.min_ratings)
           .head(s.top_n).rename(columns={COUNT_COL: "n", MEAN_COL: "mean"}).round({"mean": 3}))
    return (f"top {len(top)} by shrunk mean (prior strength {m:g} ratings at the mean {mu:.3f})\n"
            + _show(cat.lookup(), top, SHRUNK_COL, extra=["n", "mean"]))


def cmd_similar(cat: Catalog, args) -> str:
    lookup = cat.lookup()
    hits = lookup.by_id_or_title(args.title)
    if not hits:
        raise InputError(lookup.not_found_message(args.title))
    if not args.similar:
        raise InputError("similar needs --similar DIR: the output dir of jobs/similarity.py "
                         f"(holding {SIMILAR_ITEMS}/)")
    table = _table_dir(args.similar, SIMILAR_ITEMS)
    if table is None:
        raise InputError(f"no {SIMILAR_ITEMS} table in {args.similar} (missing dir or not a "
                         "similarity output; run jobs/similarity.py --dataset ... --output "
                         f"{args.similar})")
    out = []
    for item in hits:
        sim = _read(table, [ITEM_COL, OTHER_COL, SIMILARITY_COL, CO_COUNT_COL, RANK_COL],
                    ds.field(ITEM_COL) == pa.scalar(item, pa.int32()))
        sim = sim.sort_values(RANK_COL).head(cat.cfg.top_n).rename(columns={ITEM_COL: "_of",
                                                                          OTHER_COL: ITEM_COL})
        name = lookup.describe([item]).iloc[0]
        if sim.empty:
            out.append(f'no similar items stored for "{name[TITLE_COL]}" [{name[ITEM_ID_COL]}]')
            continue
        out.append(f'most similar to "{name[TITLE_COL]}" [{name[ITEM_ID_COL]}]\n'
                   + _show(lookup, sim, SIMILARITY_COL, extra=[CO_COUNT_COL]))
    return "\n".join(out)


COMMANDS = {"recommend": cmd_recommend, "foldin": cmd_foldin, "popular": cmd_popular,
            "similar": cmd_similar}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {APP_NAME}",
                                     description=__doc__.strip().splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.strip().splitlines()[2:7]))
    parser.add_argument("--model", help="model dir written by jobs/factorize.py")
    parser.add_argument("--dataset", help="dataset dir (titles; rated items to leave out; ratings)")
    parser.add_argument("--similar", help="output dir of jobs/similarity.py (for 'similar')")
    TOP_N.add_to(parser)
    parser.set_defaults(setting_flags=(TOP_N,))
    parser.add_argument("--conf", default=str(DEFAULT_CONF), help="YAML config (recommend section)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set recommend.prior_strength=50")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("recommend", help="top-N for a known user (source user id)")
    p.add_argument("user_id")
    p = sub.add_parser("foldin", help="top-N for a new user from a CSV of item,rating")
    p.add_argument("file")
    p = sub.add_parser("popular", help="popular items for new users")
    p.add_argument("--by", choices=("shrunk", "bias"), default="shrunk",
                   help="shrunk mean rating (needs --dataset) or model item bias (needs --model)")
    p = sub.add_parser("similar", help="items most similar to a title (or source item id)")
    p.add_argument("title")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one query; print the answer (stdout) or one ``error:`` line (stderr).

    Exit codes: 0 ok, 1 not found / bad input, 2 usage or a bad setting (``-n`` is
    ``recommend.top_n``, checked as every setting is)."""
    args = build_parser().parse_args(argv)
    try:
        cfg = load_job_config(args)
        print(COMMANDS[args.command](Catalog(args.model, args.dataset, cfg), args))
    except UserError as exc:
        return fail(exc, APP_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
