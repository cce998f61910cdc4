"""The `pintrest` commands, one module each; `pintrest_assets.cli` picks the one to load.
``run`` keeps its streaming half (``--stream``) in ``run_stream.py``, and what its two halves
share in ``stages.py``.

A command module defines ``command``, built with ``pintrest_command``, and imports anything heavy
(dagster, pyspark, sqlalchemy, requests, the resources) inside its function: ``pintrest <cmd>
--help`` then loads click and the module alone.

Every command takes ``--verbose``. Without it a command prints one line per thing it did and
its errors; Dagster's event stream (kept in the instance all the same), Spark's log and Python's
warnings stay off the terminal. The choice travels in ``PINTREST_VERBOSE``, so the processes a
command starts (the gateway, the Dagster UI, a Spark JVM) follow it too.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable

import click

from pintrest_assets.verbosity import VERBOSE_ENV

VERBOSE_HELP = "Show Dagster's events, Spark's log and Python's warnings on the terminal"


def pintrest_command(
    name: str, *, help: str, short_help: str | None = None, verbose_help: str = VERBOSE_HELP
) -> Callable[[Callable], click.Command]:
    """Makes ``fn(settings, verbose, **options)`` the command ``pintrest <name>``.

    Options are declared on ``fn`` with ``@click.option``; ``--verbose`` is added here. The
    command reads the settings after parsing, returns ``fn``'s exit code, and turns a
    ``ConfigError`` into one line on stderr, ``pintrest <name>: <VARIABLE>: ...``, and exit 2.
    """

    def decorate(fn: Callable) -> click.Command:
        params = list(reversed(getattr(fn, "__click_params__", [])))

        def callback(verbose: bool, **options) -> int:
            from pintrest_assets.settings import ConfigError, Settings

            set_verbosity(verbose)
            try:
                return fn(Settings.from_env(), verbose, **options)
            except ConfigError as exc:
                print(f"pintrest {name}: {exc}", file=sys.stderr)
                return 2

        return click.Command(
            name,
            callback=callback,
            params=[
                *params,
                click.Option(
                    ["--verbose", "-v"],
                    is_flag=True,
                    envvar=VERBOSE_ENV,
                    help=f"{verbose_help} (or set {VERBOSE_ENV}=1).",
                ),
            ],
            help=help,
            short_help=short_help,
        )

    return decorate


def set_verbosity(verbose: bool) -> None:
    """Quiet or verbose, for this process and the ones it starts."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if verbose:
        return
    # Dagster's beta and preview notices, and any other warning, are for whoever develops the
    # pipeline; `--verbose` shows them.
    warnings.simplefilter("ignore")
    os.environ["PYTHONWARNINGS"] = "ignore"
    for logger in ("dagster", "py4j"):
        logging.getLogger(logger).setLevel(logging.ERROR)


def seconds(value: float) -> str:
    """A stage's duration as a person reads it: ``0.6 s``, ``14 s``."""
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
