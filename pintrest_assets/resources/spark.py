"""Spark for a run: dagster-pyspark's lazy session, configured from the settings.

Three ways to run, chosen by ``Settings``: ``local[*]`` in the run's own process (the default),
a cluster master (``PINTREST_SPARK_MASTER=spark://host:7077``), or a Spark Connect server
(``PINTREST_SPARK_REMOTE=sc://host:15002``). Runs use the in-process executor, so one session,
and locally one JVM, serves every step of a run; it starts on first use, not when the
definitions load.
"""

from __future__ import annotations

import os
import re
from typing import Any

from dagster_pyspark import LazyPySparkResource
from pyspark.sql import SparkSession

from pintrest_assets.settings import ConfigError, Settings

# A handful of shuffle partitions suits the small batches of a laptop; the default 200 would
# make every aggregation schedule 200 tiny tasks.
LOCAL_SHUFFLE_PARTITIONS = 4
LOCAL_DRIVER_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

# The sink lands many small objects (one record each in the original). Spark would list more
# than 32 paths in a job of one task per path, and give each file a task's worth of work; both
# cost far more than reading the files. Session settings, so they apply on Spark Connect too.
SMALL_FILES_CONFIG = {
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
    "spark.sql.files.openCostInBytes": str(64 * 1024),
}

_MASTER = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://[^/]+|yarn|k8s://.+)$")
_REMOTE = re.compile(r"^sc://[^/]+(/.*)?$")


class SparkResource(LazyPySparkResource):
    """A Spark session for the run, started on first use and shared by every step of the run.

    ``spark_config`` holds the session's Spark settings (``spark.master`` or ``spark.remote``
    among them); ``build_spark_resource`` derives it from the settings.
    """

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    @property
    def is_local(self) -> bool:
        return "spark.remote" not in self.spark_config and str(
            self.spark_config.get("spark.master", "local[*]")
        ).startswith("local")

    @property
    def spark_session(self) -> SparkSession:
        if self.is_local:
            # A local driver talks to itself only: loopback keeps it off the network and
            # silences the "hostname resolves to a loopback address" warning.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        return super().spark_session


def spark_config(master: str = "local[*]", remote: str | None = None) -> dict[str, Any]:
    """Spark settings for a local or cluster master, or for a Spark Connect server (``remote``)."""
    if remote is not None:
        if not _REMOTE.match(remote):
            raise ConfigError("PINTREST_SPARK_REMOTE", f"expected sc://host:port, got {remote!r}")
        # The server owns its static settings (UI, logging, parallelism).
        return {"spark.remote": remote, **SMALL_FILES_CONFIG}
    if not _MASTER.match(master):
        raise ConfigError(
            "PINTREST_SPARK_MASTER", f"expected local[*], local[N], spark://host:port, yarn or k8s://..., got {master!r}"
        )
    config: dict[str, Any] = {
        "spark.master": master,
        "spark.app.name": "pintrest",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "WARN",
        # Plans with many columns would otherwise log a warning about their truncated text.
        "spark.sql.debug.maxToStringFields": "200",
        **SMALL_FILES_CONFIG,
    }
    if master.startswith("local"):
        config["spark.sql.shuffle.partitions"] = str(LOCAL_SHUFFLE_PARTITIONS)
        # Several local runs at once would each probe for a free UI port; nobody watches it.
        config["spark.ui.enabled"] = "false"
        # A local JVM lives for one run: the optimising JIT compiler and a concurrent collector
        # cost more CPU than they save (about half of a first refresh's CPU on two cores).
        config["spark.driver.extraJavaOptions"] = LOCAL_DRIVER_JAVA_OPTIONS
    return config


def build_spark_resource(settings: Settings) -> SparkResource:
    """The ``spark`` resource for ``settings``: Spark Connect if a remote is set, else the master."""
    return SparkResource(spark_config=spark_config(settings.spark_master, settings.spark_remote))
