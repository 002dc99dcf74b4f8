"""The one family of errors a user can cause, and the only place they are defined.

Every job runs under :func:`batchml.cli.run_job`, which turns a :class:`UserError` into one
``error: <message>`` line on stderr and a non-zero exit code, with no traceback.  Anything else that
escapes a job is a bug in batchml and keeps its traceback.

==================  ===========================================================  =========
class               raised when                                                  exit code
==================  ===========================================================  =========
``ConfigError``     a config file, ``--set`` override or job flag is invalid      2
``InputError``      an input (dataset, model dir, dump, file) is missing,         1
                    unreadable or not in the expected format
``JobError``        the data cannot be processed as asked (too many rejected      1
                    lines, an empty or leaking test set, ...)
==================  ===========================================================  =========
"""
from __future__ import annotations


class UserError(Exception):
    """A failure the user can act on; the message says what is wrong and, where it helps, what to do."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A configuration file, ``--set`` override or job flag is invalid; the message names the setting."""

    exit_code = 2


class InputError(UserError):
    """An input is missing, unreadable or not in the format the job expects."""


class JobError(UserError):
    """The job cannot do what was asked with this data (the message says why)."""
