"""Whether the `pintrest` command running asked for ``--verbose``, for this process and the ones it starts.

The command sets ``PINTREST_VERBOSE`` (``1`` or ``0``); a process it starts (the gateway, the
Dagster UI and its runs, a Spark JVM) inherits it. Unset, as under a plain ``dagster dev``,
means quiet: Spark's start-up banner and log warnings stay off the terminal.
"""

from __future__ import annotations

import os

VERBOSE_ENV = "PINTREST_VERBOSE"


def is_verbose(environ: dict[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(VERBOSE_ENV, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}
