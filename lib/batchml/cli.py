"""The command-line shape every job shares: ``--conf``, ``--set``, ``--help``, exit codes."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from batchml.config import DEFAULT_CONF, Config, ConfigError, load_config
from batchml.logs import setup_logging

LOG = logging.getLogger("batchml")


class JobError(RuntimeError):
    """A job failed for a reason the user can act on; the message says what to do."""


def job_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every job has."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--conf", default=str(DEFAULT_CONF), help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set spark.shuffle_partitions=8 (repeatable)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def run_job(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
            run: Callable[[object, Config, argparse.Namespace], int | None],
            app_name: str, needs_spark: bool = True) -> int:
    """Parse flags, load config, build the session, call ``run(spark, cfg, args)``, stop Spark.

    Returns the process exit code: 0 on success, 2 for bad config or flags, 1 for a job error.
    """
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = load_config(args.conf, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    spark = None
    try:
        if needs_spark:
            from batchml.spark import build_session
            spark = build_session(cfg.spark, app_name=app_name)
        code = run(spark, cfg, args)
        return int(code or 0)
    except (JobError, ConfigError) as exc:
        LOG.error("%s failed: %s", app_name, exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if spark is not None:
            spark.stop()
