"""The Dagster instance the commands share: ``$PINTREST_HOME/dagster`` unless DAGSTER_HOME is set.

``pintrest run`` records its runs there and ``pintrest emulate`` its batches, so ``pintrest dev``
shows them all in the UI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pintrest_assets.settings import Settings

if TYPE_CHECKING:
    import dagster as dg

# Storage defaults to files under DAGSTER_HOME. Runs go one at a time: on one machine each run
# brings its own Spark JVM, and a sensor refresh and a manual run must not append to the same
# tables at once (the warehouse refuses the second commit rather than double-count).
INSTANCE_CONFIG = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 1
"""


def use_project_instance(settings: Settings) -> str:
    """Points DAGSTER_HOME at the project's instance (unless set) and returns it."""
    os.environ.setdefault("DAGSTER_HOME", str(settings.home / "dagster"))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_CONFIG)
    return str(home)


def project_instance(settings: Settings) -> dg.DagsterInstance:
    import dagster as dg  # here, not at the top: `pintrest dev` only points DAGSTER_HOME at it

    use_project_instance(settings)
    return dg.DagsterInstance.get()
