"""The Dagster instance the commands share: ``$PINTREST_HOME/dagster`` unless DAGSTER_HOME is set.

``pintrest run`` records its runs there and ``pintrest emulate`` its batches, so ``pintrest dev``
shows them all in the UI. Its storage is files under that directory, or PostgreSQL when
``PINTREST_DAGSTER_PG_URL`` is set (runs, event log and schedules, through dagster-postgres), so a
team shares one instance. The URL holds a password: ``dagster.yaml`` names the variable, never
its value, and Dagster reads it when the instance loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pintrest_assets.settings import Settings

if TYPE_CHECKING:
    import dagster as dg

# The first line marks a dagster.yaml the project wrote, and may rewrite when the settings change.
MARK = "# written by pintrest from the PINTREST_* settings; remove this line to keep your own edits\n"

# Runs go one at a time: on one machine each run brings its own Spark JVM. The queue is looked
# at every second (Dagster's default: 5), as a sensor's run should start at once.
INSTANCE_CONFIG = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 1
run_queue:
  dequeue_interval_seconds: 1
"""

POSTGRES_STORAGE = """\
storage:
  postgres:
    postgres_url:
      env: PINTREST_DAGSTER_PG_URL
"""


def instance_config(settings: Settings) -> str:
    """The dagster.yaml for ``settings``."""
    return MARK + INSTANCE_CONFIG + (POSTGRES_STORAGE if settings.dagster_pg_url else "")


def use_project_instance(settings: Settings) -> str:
    """Points DAGSTER_HOME at the project's instance (unless set), writes its dagster.yaml and returns it."""
    os.environ.setdefault("DAGSTER_HOME", str(settings.home / "dagster"))
    if settings.dagster_pg_url:
        # The driver-qualified URL, for this process and the ones it starts (dagster dev, runs).
        os.environ["PINTREST_DAGSTER_PG_URL"] = settings.dagster_pg_url
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = instance_config(settings)
    if not config.exists() or (config.read_text().startswith(MARK) and config.read_text() != wanted):
        config.write_text(wanted)
    return str(home)


def project_instance(settings: Settings) -> dg.DagsterInstance:
    import dagster as dg  # here, not at the top: `pintrest dev` only points DAGSTER_HOME at it

    from filelock import FileLock

    home = Path(use_project_instance(settings))
    # Two processes creating a new SQLite storage at once (a sensor's run and `pintrest run` on a
    # fresh home) may both stamp its schema version, and Dagster then refuses it: the first to
    # open the instance creates its storage while the others wait.
    with FileLock(home / ".storage.lock"):
        return dg.DagsterInstance.get()
