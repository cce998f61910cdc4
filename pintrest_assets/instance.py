"""The Dagster instance the commands share: ``$PINTREST_HOME/dagster`` unless DAGSTER_HOME is set.

``pintrest run`` records its runs there and ``pintrest emulate`` its batches, so ``pintrest dev``
shows them all in the UI. Its storage is files under that directory, or PostgreSQL when
``PINTREST_DAGSTER_PG_URL`` is set (runs, event log and schedules, through dagster-postgres), so a
team shares one instance. The URL holds a password: ``dagster.yaml`` names the variable, never
its value, and Dagster reads it when the instance loads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pintrest_assets.settings import Settings

if TYPE_CHECKING:
    import dagster as dg

# The first line marks a dagster.yaml the project wrote, and may rewrite when the settings change.
MARK = "# written by pintrest from the PINTREST_* settings; remove this line to keep your own edits\n"

# Runs that each bring their own Spark JVM (local Spark) go one at a time. Runs that share a
# Spark (the Spark Connect server `pintrest dev` starts, a remote, a cluster) go two at a time: a
# run's process starts (Python, Dagster, the definitions: seconds) while the one before it works.
# The queue is looked at every second (Dagster's default: 5), as a sensor's run should start at once.
INSTANCE_CONFIG = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: {concurrent_runs}
run_queue:
  dequeue_interval_seconds: 1
"""
SHARED_SPARK_CONCURRENT_RUNS = 2
_CONCURRENT_RUNS = re.compile(r"^    max_concurrent_runs: (\d+)$", re.MULTILINE)

POSTGRES_STORAGE = """\
storage:
  postgres:
    postgres_url:
      env: PINTREST_DAGSTER_PG_URL
"""


def runs_share_spark(settings: Settings) -> bool:
    """Whether the runs for ``settings`` use a Spark of their own (local Spark) or a shared one."""
    return settings.spark_remote is not None or not settings.spark_master.startswith("local")


def instance_config(settings: Settings, concurrent_runs: int | None = None) -> str:
    """The dagster.yaml for ``settings``; ``concurrent_runs`` by default from ``runs_share_spark``."""
    if concurrent_runs is None:
        concurrent_runs = SHARED_SPARK_CONCURRENT_RUNS if runs_share_spark(settings) else 1
    return (
        MARK
        + INSTANCE_CONFIG.format(concurrent_runs=concurrent_runs)
        + (POSTGRES_STORAGE if settings.dagster_pg_url else "")
    )


def use_project_instance(settings: Settings, *, concurrent_runs: int | None = None) -> str:
    """Points DAGSTER_HOME at the project's instance (unless set), writes its dagster.yaml and returns it.

    ``concurrent_runs`` is the daemon's: ``pintrest dev`` sets it (two when its runs share the
    Spark Connect server it starts). Other commands (a ``pintrest stream`` or ``emulate`` beside
    it) keep what the file says, so the UI started after them still reads the command's choice.
    """
    os.environ.setdefault("DAGSTER_HOME", str(settings.home / "dagster"))
    if settings.dagster_pg_url:
        # The driver-qualified URL, for this process and the ones it starts (dagster dev, runs).
        os.environ["PINTREST_DAGSTER_PG_URL"] = settings.dagster_pg_url
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if concurrent_runs is None and config.exists() and config.read_text().startswith(MARK):
        found = _CONCURRENT_RUNS.search(config.read_text())
        concurrent_runs = int(found.group(1)) if found else None
    wanted = instance_config(settings, concurrent_runs)
    if not config.exists() or (config.read_text().startswith(MARK) and config.read_text() != wanted):
        config.write_text(wanted)
    return str(home)


def project_instance(settings: Settings) -> dg.DagsterInstance:
    import dagster as dg  # here, not at the top: `pintrest dev` only points DAGSTER_HOME at it

    from filelock import FileLock

    home = Path(use_project_instance(settings))
    # Two processes creating a new SQLite storage at once (a sensor's run and `pintrest run` on a
    # fresh home) may both stamp its schema version, and Dagster then refuses it: the first to
    # open the instance creates its storage while the others wait. Each storage is created on
    # its first use, so each is used once here, under the lock.
    with FileLock(home / ".storage.lock"):
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)
        instance.fetch_materializations(dg.AssetKey("pinterest_data"), limit=1)
        instance.all_instigator_state()
        return instance
