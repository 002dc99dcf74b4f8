"""The command-line shape every job shares: ``--conf``, ``--set``, job flags, ``--help``, exit codes.

A job flag is a named alias of one setting (:class:`Flag`): its text goes through the same path as
``--set section.key=TEXT`` (typed by the dataclass field, range-checked), applied after the
``--set`` overrides.  Errors a user can cause (:class:`batchml.errors.UserError`) end as one
``error: …`` line on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from batchml.config import DEFAULT_CONF, Config, load_config
from batchml.errors import ConfigError, UserError
from batchml.io.job_paths import check_job_paths
from batchml.logs import setup_logging

LOG = logging.getLogger("batchml")


@dataclass(frozen=True)
class Flag:
    """A job flag that sets one setting: ``Flag("--rank", "factorize.ranks", "rank grid")``.

    ``const`` makes it a switch that stores that text (``Flag("--no-evaluate", "recommend.evaluate",
    "...", const="false")``).
    """

    name: str
    setting: str
    help: str
    const: str | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return "setting_" + self.name.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        text = f"{self.help} ({self.setting})"
        if self.const is not None:
            parser.add_argument(self.name, dest=self.dest, action="store_const", const=self.const,
                                default=None, help=text)
        else:
            parser.add_argument(self.name, dest=self.dest, default=None, choices=self.choices,
                                metavar=self.metavar, help=text)


def job_parser(description: str, flags: Sequence[Flag] = ()) -> argparse.ArgumentParser:
    """An argument parser with the flags every job has, plus the job's setting flags."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--conf", default=str(DEFAULT_CONF), help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set spark.shuffle_partitions=8 (repeatable)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    for flag in flags:
        flag.add_to(parser)
    parser.set_defaults(setting_flags=tuple(flags))
    return parser


def setting_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides followed by the ``key=value`` of every setting flag given."""
    given = [f"{f.setting}={getattr(args, f.dest)}" for f in getattr(args, "setting_flags", ())
             if getattr(args, f.dest) is not None]
    return list(args.overrides) + given


def load_job_config(args: argparse.Namespace) -> Config:
    """The config of a run: ``--conf`` file, then ``--set`` overrides, then setting flags."""
    return load_config(args.conf, setting_overrides(args))


def fail(exc: UserError, app_name: str) -> int:
    """Report a user error as one ``error:`` line on stderr; return its exit code."""
    LOG.debug("%s failed", app_name, exc_info=exc)
    print(f"error: {exc}", file=sys.stderr, flush=True)
    return exc.exit_code


def _flag_paths(args: argparse.Namespace, dests: Sequence[str]) -> dict[str, str | None]:
    return {"--" + d.replace("_", "-"): getattr(args, d) for d in dests}


def run_job(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
            run: Callable[[object, Config, argparse.Namespace], int | None],
            app_name: str, needs_spark: bool = True, inputs: Sequence[str] = (),
            outputs: Sequence[str] = (), local_outputs: Sequence[str] = ()) -> int:
    """Parse flags, load config, check paths, build the session, call ``run(spark, cfg, args)``,
    stop Spark.

    ``inputs`` / ``outputs`` name the flags (argparse dests) holding the job's input and output
    paths: before Spark starts, inputs must exist and no output may overlap an input
    (:func:`batchml.io.job_paths.check_job_paths`); ``local_outputs`` are outputs that must be local
    or shared-mount paths.

    Returns the process exit code: 0 on success, 2 for bad config or flags, 1 for another user error.
    """
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    spark = None
    try:
        cfg = load_job_config(args)
        check_job_paths(_flag_paths(args, inputs), _flag_paths(args, outputs),
                        _flag_paths(args, local_outputs))
        if needs_spark:
            from batchml.spark import build_session
            spark = build_session(cfg.spark, app_name=app_name)
        return int(run(spark, cfg, args) or 0)
    except UserError as exc:
        return fail(exc, app_name)
    finally:
        if spark is not None:
            spark.stop()


__all__ = ["ConfigError", "Flag", "UserError", "job_parser", "load_job_config", "run_job",
           "setting_overrides"]
