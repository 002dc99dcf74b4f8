"""Ask a trained model questions at a terminal (no Spark: Parquet is read with pyarrow).

    python -m batchml.query --model DIR --dataset DIR recommend USER_ID
    python -m batchml.query --model DIR --dataset DIR foldin my_ratings.csv
    python -m batchml.query --model DIR --dataset DIR popular [--by bias]
    python -m batchml.query --dataset DIR --similar DIR similar "the two towers"

``recommend`` scores every trained item for a known user (μ + b_u + b_i + γ·p_u·q_i) and leaves
out the items the user rated in the dataset; ``foldin`` does the same for a new user described
by a CSV (header ``item,rating``; item = a source id or a title) without re-training; ``popular``
ranks by shrunk mean rating, streaming the dataset's ratings (or reads the ``popular`` table of
``--recs DIR``), or by model item bias; ``similar`` reads the similarity job's
``similar_items`` table.  Titles match case-insensitively; an unknown title or user id is
reported with suggestions, not a traceback.  Exit codes: 0 ok, 1 not found / bad input, 2 usage.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np
import pandas as pd

from batchml.catalog import Catalog, describe_items
from batchml.cli import Flag, fail, load_job_config
from batchml.config import DEFAULT_CONF
from batchml.errors import InputError, UserError
from batchml.recommend.foldin import read_fold_in_csv
from batchml.recommend.item_lookup import ItemLookup
from batchml.schema import (BIAS_COL, CO_COUNT_COL, COUNT_COL, ITEM_ID_COL, MEAN_COL, SCORE_COL,
                            SHRUNK_COL, SIMILARITY_COL, TITLE_COL, YEAR_COL)

APP_NAME = "batchml.query"
TOP_N = Flag("-n", "recommend.top_n", "rows to show", metavar="N")


def _show(lookup: ItemLookup, pdf: pd.DataFrame, score_col: str, extra: Sequence[str] = ()) -> str:
    lines = []
    for k, row in enumerate(describe_items(lookup, pdf).to_dict("records"), 1):
        title = row.get(TITLE_COL) or "(no title)"
        year = row.get(YEAR_COL)
        year = f" ({int(year)})" if year is not None and not pd.isna(year) else ""
        more = "".join(f"  {c}={row[c]}" for c in extra)
        lines.append(f"{k:>3}. {row[score_col]:8.3f}  {title}{year} [{row[ITEM_ID_COL]}]{more}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- commands
def cmd_recommend(cat: Catalog, args) -> str:
    got = cat.recommend_user(args.user_id)
    head = f"top {len(got.top)} for user {args.user_id}"
    head += (f" (excluding {len(got.seen)} rated items)" if got.seen is not None
             else " (no --dataset: rated items not excluded)")
    if not got.has_factors:
        head += " [user has no factors in the model: biases only]"
    return head + "\n" + _show(cat.lookup, got.top, SCORE_COL)


def cmd_foldin(cat: Catalog, args) -> str:
    lookup = cat.lookup
    idx, ratings = read_fold_in_csv(args.file, lookup)
    fi = cat.fold_in(idx, ratings)
    rated = "; ".join(f"{t} = {r:g}" for t, r in zip(lookup.describe(idx)[TITLE_COL], ratings))
    return (f"folded in {len(idx)} ratings ({rated}): b_u = {fi.fit.bias:+.3f}, |p_u| = "
            f"{np.linalg.norm(fi.fit.factors):.3f}\n" + _show(lookup, fi.top, SCORE_COL))


def cmd_popular(cat: Catalog, args) -> str:
    if args.by == "bias":
        top = cat.items_by_bias()
        return (f"top {len(top)} by model item bias b_i\n"
                + _show(cat.lookup, top, BIAS_COL, extra=[c for c in [COUNT_COL] if c in top]))
    top, mu = cat.popular()
    top = top.rename(columns={COUNT_COL: "n", MEAN_COL: "mean"}).round({"mean": 3})
    m = cat.s.prior_strength
    prior = (f"prior strength {m:g} ratings at the mean {mu:.3f}" if mu is not None
             else f"as written by the recommendation job in {cat.recs_dir}")
    return (f"top {len(top)} by shrunk mean ({prior})\n"
            + _show(cat.lookup, top, SHRUNK_COL, extra=["n", "mean"]))


def cmd_similar(cat: Catalog, args) -> str:
    lookup = cat.lookup
    hits = lookup.by_id_or_title(args.title)
    if not hits:
        raise InputError(lookup.not_found_message(args.title))
    out = []
    for item in hits:
        sim = cat.similar(item)
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
    parser.add_argument("--recs", help="output dir of jobs/recommend.py (its popular list)")
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
        cat = Catalog(cfg.recommend, model=args.model, dataset=args.dataset, similar=args.similar,
                      recs=args.recs)
        print(COMMANDS[args.command](cat, args))
    except UserError as exc:
        return fail(exc, APP_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
