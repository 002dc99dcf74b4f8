"""``python -m batchml.web``: flags, config and the WSGI server.

The page is served by waitress (a production WSGI server) on every address, loopback included;
Flask's debug server is never used.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from waitress import serve

from batchml.catalog import Catalog
from batchml.cli import Flag, fail, load_job_config
from batchml.config import DEFAULT_CONF
from batchml.errors import UserError
from batchml.logs import setup_logging
from batchml.web.app import create_app, warm_up

APP_NAME = "batchml.web"
LOG = logging.getLogger(__name__)
TOP_N = Flag("--top-n", "recommend.top_n", "list length", metavar="N")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {APP_NAME}", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--dataset", help="dataset dir (titles; the ratings for the popular list)")
    parser.add_argument("--model", help="model dir written by jobs/factorize.py (user lists, fold-in)")
    parser.add_argument("--similar", help="output dir of jobs/similarity.py (similar titles)")
    parser.add_argument("--recs", help="output dir of jobs/recommend.py (its popular list)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    parser.add_argument("--threads", type=int, default=4, help="request threads (default 4)")
    TOP_N.add_to(parser)
    parser.set_defaults(setting_flags=(TOP_N,))
    parser.add_argument("--conf", default=str(DEFAULT_CONF), help="YAML config (recommend section)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set recommend.prior_strength=50")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Read the outputs once, then serve until interrupted; one ``error:`` line on bad input."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = load_job_config(args)
        cat = Catalog(cfg.recommend, model=args.model, dataset=args.dataset, similar=args.similar,
                      recs=args.recs)
        warm_up(cat)
    except UserError as exc:
        return fail(exc, APP_NAME)
    where = "" if args.host in LOOPBACK else " (beyond loopback: anyone who can reach it may use it)"
    LOG.info("serving on http://%s:%d/ with waitress%s", args.host, args.port, where)
    print(f"serving on http://{args.host}:{args.port}/", flush=True)
    serve(create_app(cat), host=args.host, port=args.port, threads=args.threads, ident=APP_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
