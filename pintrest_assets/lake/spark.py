"""Spark for a run: dagster-pyspark's lazy session, configured from the settings.

Three ways to run, chosen by ``Settings``: ``local[*]`` in the run's own process (the default),
a cluster master (``PINTREST_SPARK_MASTER=spark://host:7077``), or a Spark Connect server
(``PINTREST_SPARK_REMOTE=sc://host:15002``). Runs use the in-process executor, so one session,
and locally one JVM, serves every step of a run; it starts on first use, not when the
definitions load.

Unless the command asked for ``--verbose`` (``pintrest_assets.verbosity``), the driver logs
errors only (``log4j2-quiet.properties``) and its start-up notices stay off the terminal.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dagster_pyspark import LazyPySparkResource
from dagster_pyspark.resources import spark_session_from_config
import dagster as dg
from pydantic import PrivateAttr
from pyspark import SparkContext
from pyspark.sql import SparkSession

from pintrest_assets.lake import jvm_archive
from pintrest_assets.lake.worker_python import worker_python
from pintrest_assets.ports import listening
from pintrest_assets.settings import ConfigError, Settings
from pintrest_assets.topics import TOPICS
from pintrest_assets.verbosity import is_verbose

# A handful of shuffle partitions suits the small batches of a laptop; the default 200 would
# make every aggregation schedule 200 tiny tasks.
LOCAL_SHUFFLE_PARTITIONS = 4
LOCAL_DRIVER_JAVA_OPTIONS = "-XX:+UseSerialGC"
# Stream tables' queries (a click, ``pintrest run --stream``, the streaming service) run small
# micro-batches whose Spark work is mostly planning: their local JVM compiles with C1 only. The
# optimising compiler (C2) cost a 300,000-record click some 15 of its 47 CPU seconds, far more
# than its faster code gave back (the tasks' CPU went from 8 to 11 s), and was most of the
# service's start-up CPU under ``pintrest dev``; with C1 only the service still keeps up with the
# emulator at full speed (5,242 records/s into Delta, benchmarks/stream_keep_up.py).
STREAM_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"
LOCAL_MAX_PARTITION_BYTES = str(16 << 20)
# Seconds a run waits for a Spark Connect server on this machine to listen (it may be starting).
LOCAL_SERVER_WAIT = 180

# The driver's log4j2 configuration without --verbose: errors only, on stderr.
QUIET_LOG4J2 = Path(__file__).with_name("log4j2-quiet.properties")
# Printed by the JVM itself (Spark adds the module); no JVM option silences it.
_JVM_START_NOTICES = (b"WARNING: Using incubator modules:",)

# The sink lands many small objects (one record each in the original). Spark would list more
# than 32 paths in a job of one task per path, and give each file a task's worth of work; both
# cost far more than reading the files. Session settings, so they apply on Spark Connect too.
SMALL_FILES_CONFIG = {
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
    "spark.sql.files.openCostInBytes": str(64 * 1024),
}

# Parquet timestamps as Delta Lake stores them (microseconds), not Spark's default INT96, which
# delta-rs and other Delta readers would take for nanoseconds. A session setting: Connect too.
DELTA_PARQUET_CONFIG = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}

# Queries over a few thousand rows (the answers, the cleaning of one row per post), whose time is
# the driver's planning and scheduling, not the rows: one shuffle partition (which also spares a
# sorted result the job that samples its range), no adaptive re-planning (a job per stage), no
# broadcast joins (each broadcast is a job of its own; a sort-merge join of a few thousand rows
# is a stage of the query's job), and no code generated and compiled per query, for whole stages
# or single expressions (interpreted, a few thousand rows cost less than compiling them, above
# all in a JVM that has not compiled Spark's own code yet). Session settings, so they apply on
# Spark Connect too.
SMALL_QUERY_CONFIG = {
    "spark.sql.shuffle.partitions": "1",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.autoBroadcastJoinThreshold": "-1",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}

# The lake's DataFrames: Spark steps that follow the mount's steps in a run.
_SPARK_AFTER_MOUNT = {spec.dataframe for spec in TOPICS}
_STREAM_TABLES = {spec.stream_table_asset for spec in TOPICS}

_MASTER = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://[^/]+|yarn|k8s://.+)$")
_REMOTE = re.compile(r"^sc://[^/]+(/.*)?$")


class SparkResource(LazyPySparkResource):
    """A Spark session for the run, started on first use and shared by every step of the run.

    ``spark_config`` holds the session's Spark settings (``spark.master`` or ``spark.remote``
    among them); ``build_spark_resource`` derives it from the settings.
    """

    # The thread starting the session ahead of its first use (``start_in_background``).
    _starting: threading.Thread | None = PrivateAttr(default=None)
    # The settings this run uses instead of ``spark_config`` (``setup_for_execution``), if any.
    _run_config: dict[str, Any] | None = PrivateAttr(default=None)
    # The driver's JVM starts in a process session of its own (``for_a_service``).
    _jvm_of_its_own: bool = PrivateAttr(default=False)

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """At the start of a run that mounts objects and then reads them (a lake refresh), the
        session starts while the mount works (a local JVM, or a Connect client's modules and
        channel): the first Spark step does not wait for it."""
        run = getattr(context, "run", None)
        selection = {key.to_user_string() for key in (getattr(run, "asset_selection", None) or ())}
        remote = self.spark_config.get("spark.remote")
        if selection & _STREAM_TABLES and remote is not None and _on_this_machine(remote):
            # A stream table's queries run foreachBatch, which a Connect server runs in a Python
            # worker of its own that must connect back within Spark's fixed 10 s: on a loaded
            # laptop it does not, and every query fails. On this machine a local JVM does it.
            self._run_config = spark_config("local[*]")
        if selection and selection <= _STREAM_TABLES:
            self.for_stream_tables_only()
        if context.log is not None and run is not None:
            context.log.info(f"Spark for this run: {self.describe()}")
        if selection & _SPARK_AFTER_MOUNT and selection - _SPARK_AFTER_MOUNT:
            self.start_in_background()

    def for_stream_tables_only(self) -> None:
        """This session runs stream tables' queries and nothing else: a local JVM compiles with
        C1 only (``STREAM_JAVA_OPTIONS``). Called before the session starts."""
        if self.is_local:
            self._run_config = with_driver_java_options(self.run_config, STREAM_JAVA_OPTIONS)

    def for_a_service(self) -> None:
        """This session is a long-running service's (``pintrest stream``): the driver's JVM (any
        but a Spark Connect session's) starts in a process session of its own. A stop signal sent
        to the service's whole process group (a systemd unit's default ``KillMode``, GNU
        ``timeout``) then reaches the service alone, which stops its queries and then the JVM,
        instead of reaching the JVM and its Python workers too, which would end under the queries.
        The JVM still ends with the service however the service ends: it exits when its stdin, a
        pipe from the service, closes."""
        self._jvm_of_its_own = True

    @property
    def streaming_session(self) -> SparkSession:
        """The session for a stream table's queries: the run's, unless that would be a session on
        a Connect server on this machine not opened yet in this run, for which a local JVM's
        (see ``setup_for_execution``)."""
        remote = self.spark_config.get("spark.remote")
        if (
            self._spark_session is None
            and self._starting is None
            and "spark.remote" in self.run_config
            and remote is not None
            and _on_this_machine(remote)
        ):
            self._run_config = spark_config("local[*]")
        return self.spark_session

    @property
    def run_config(self) -> dict[str, Any]:
        """The settings of this run's session: ``spark_config``, or a local JVM's for a stream
        table's queries when the Connect server is on this machine."""
        return self._run_config if self._run_config is not None else self.spark_config

    def _init_session(self) -> None:
        if self._spark_session is None:
            if self._jvm_of_its_own and "spark.remote" not in self.run_config:
                _launch_jvm_in_a_session_of_its_own(self.run_config)
            self._spark_session = spark_session_from_config(self.run_config)

    def describe(self) -> str:
        """Which Spark the session is on, as a run's log says it."""
        remote = self.run_config.get("spark.remote")
        if remote is not None:
            return f"the Spark Connect server at {remote}"
        master = self.run_config.get("spark.master", "local[*]")
        return f"{master}, a JVM in this process" if self.is_local else f"the cluster at {master}"

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """A Spark Connect session is released at the end of the run: the server, which outlives
        the run, drops its state (settings, cached batches) at once. A local session ends with
        the run's process."""
        if "spark.remote" in self.run_config and self._spark_session is not None:
            session, self._spark_session = self._spark_session, None
            release_connect_session(session)

    def start_in_background(self, warm_up: bool = True) -> None:
        """Starts the session in a thread, so that the JVM's start-up overlaps work that needs
        no Spark (a step before the first Spark step); the first use waits for it. ``warm_up``:
        then a parquet write and read, for work that writes parquet with Spark (not the
        streaming service, whose micro-batches pyarrow writes)."""
        if self._starting is None and self._spark_session is None:
            target = self._start_and_warm_up if warm_up else lambda: self.spark_session
            self._starting = threading.Thread(target=target, name="spark-start", daemon=True)
            self._starting.start()

    def _start_and_warm_up(self) -> None:
        """Starts the session, then writes and reads a few rows of parquet: a cold JVM spends
        seconds loading the classes of its first parquet job, here while nothing waits for it.
        A Connect server is warm already: its session only opens (one round trip)."""
        session = self.spark_session
        if not self.is_local:
            session.range(1).collect()
            return
        with tempfile.TemporaryDirectory(prefix="pintrest-spark-warm-up-") as directory:
            rows = session.range(1000).selectExpr("id", "cast(id as string) AS s", "cast(id AS double) AS d")
            rows.write.parquet(f"{directory}/rows")
            session.read.parquet(f"{directory}/rows").agg({"s": "max"}).collect()

    @property
    def is_local(self) -> bool:
        return "spark.remote" not in self.run_config and str(
            self.run_config.get("spark.master", "local[*]")
        ).startswith("local")

    @property
    def spark_session(self) -> SparkSession:
        starting = self._starting
        if starting is not None and starting is not threading.current_thread():
            starting.join()  # then the session is there, or starting failed and is tried again here
        if self.is_local:
            # A local driver talks to itself only: loopback keeps it off the network and
            # silences the "hostname resolves to a loopback address" warning.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            # Python workers (streaming sources, UDFs) run this interpreter, which has the project
            # (through a launcher that spares them compiling Spark's pyspark zip: worker_python.py).
            if "PYSPARK_PYTHON" not in os.environ:
                os.environ["PYSPARK_PYTHON"] = worker_python()
        remote = self.run_config.get("spark.remote")
        if remote is not None and self._spark_session is None:
            _wait_for_local_server(remote)
        starts_jvm = remote is None and getattr(SparkContext, "_gateway", None) is None
        if starts_jvm and not is_verbose():
            with _jvm_notices_dropped():
                return super().spark_session
        return super().spark_session


@contextlib.contextmanager
def small_queries(session: SparkSession) -> Iterator[None]:
    """The session with ``SMALL_QUERY_CONFIG`` while the block runs, its own settings after."""
    saved = {key: session.conf.get(key, None) for key in SMALL_QUERY_CONFIG}
    for key, value in SMALL_QUERY_CONFIG.items():
        session.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                session.conf.unset(key)
            else:
                session.conf.set(key, value)


def release_connect_session(session) -> None:
    """Releases a Spark Connect session on its server and closes the client. The client's
    releases of finished executions go first: ``stop`` would release the session while they are
    still on their way, and the server logs an error for each that comes after."""
    import concurrent.futures

    with contextlib.suppress(Exception):  # a server gone already has nothing to release
        concurrent.futures.wait(list(getattr(session.client, "_release_futures", ())), timeout=10)
        session.stop()


def _launch_jvm_in_a_session_of_its_own(config: dict[str, Any]) -> None:
    """Starts the driver's JVM as pyspark would (``spark-submit`` with ``config``), in a process
    session of its own, unless this process has started a JVM already; the session then uses it.
    It sets what pyspark's ``SparkContext._ensure_initialized`` would (``_gateway``, ``_jvm``,
    under ``_lock``): private to pyspark, so the service's SIGTERM test guards it on an upgrade."""
    from pyspark import SparkConf
    from pyspark.java_gateway import launch_gateway

    with SparkContext._lock:
        if SparkContext._gateway is None:
            conf = SparkConf(loadDefaults=False).setAll([(key, str(value)) for key, value in config.items()])
            SparkContext._gateway = launch_gateway(conf, popen_kwargs={"start_new_session": True})
            SparkContext._jvm = SparkContext._gateway.jvm


def _on_this_machine(remote: str) -> bool:
    """Whether a Spark Connect URL names a server on loopback (with its port)."""
    url = urlparse(remote.replace("sc://", "http://", 1))
    return url.hostname in ("127.0.0.1", "localhost", "::1") and url.port is not None


def _wait_for_local_server(remote: str, timeout: float = LOCAL_SERVER_WAIT) -> None:
    """Waits until a Connect server on this machine (``pintrest dev`` starts one) accepts
    connections: a run launched while its JVM still starts would otherwise back off for up to a
    minute between the client's retries. A server elsewhere is left to the client's retries."""
    if not _on_this_machine(remote):
        return
    url = urlparse(remote.replace("sc://", "http://", 1))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not listening(url.hostname, url.port):
        time.sleep(0.1)


def spark_config(master: str = "local[*]", remote: str | None = None, *, verbose: bool | None = None) -> dict[str, Any]:
    """Spark settings for a local or cluster master, or for a Spark Connect server (``remote``).

    ``verbose`` (default: as the command asked) keeps Spark's own log4j profile for the driver.
    """
    if remote is not None:
        if not _REMOTE.match(remote):
            raise ConfigError("PINTREST_SPARK_REMOTE", f"expected sc://host:port, got {remote!r}")
        # The server owns its static settings (UI, logging, parallelism).
        return {"spark.remote": remote, **SMALL_FILES_CONFIG, **DELTA_PARQUET_CONFIG}
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
        **DELTA_PARQUET_CONFIG,
    }
    if master.startswith("local"):
        config["spark.sql.shuffle.partitions"] = str(LOCAL_SHUFFLE_PARTITIONS)
        # A few cores: splits of 16 MB give each core several tasks of a batch of a few files,
        # where the default 128 MB would leave one core idle behind the last big file.
        config["spark.sql.files.maxPartitionBytes"] = LOCAL_MAX_PARTITION_BYTES
        # Several local runs at once would each probe for a free UI port; nobody watches it.
        config["spark.ui.enabled"] = "false"
        # A local JVM lives for one run: a concurrent collector costs more CPU than it saves.
        # The optimising JIT compiler stays: without it Spark's generated code reads and writes
        # a million rows three times slower. Its classes come from the machine's class archive
        # once built (jvm_archive.py).
        config["spark.driver.extraJavaOptions"] = f"{LOCAL_DRIVER_JAVA_OPTIONS} {jvm_archive.java_options()}".strip()
    if not (is_verbose() if verbose is None else verbose):
        # The driver runs in this process's JVM whatever the master (client mode).
        # A file: URI, so a path with spaces stays one option.
        quiet = f"-Dlog4j2.configurationFile={QUIET_LOG4J2.as_uri()}"
        config["spark.driver.extraJavaOptions"] = " ".join(
            filter(None, [config.get("spark.driver.extraJavaOptions"), quiet])
        )
    return config


def with_driver_java_options(config: dict[str, Any], options: str) -> dict[str, Any]:
    """``config`` with ``options`` added to the driver's JVM options."""
    given = config.get("spark.driver.extraJavaOptions")
    return {**config, "spark.driver.extraJavaOptions": " ".join(filter(None, [given, options]))}


@contextlib.contextmanager
def _jvm_notices_dropped() -> Iterator[None]:
    """While a JVM starts, gives it a stderr that drops the JVM's start-up notices and passes the rest on.

    The JVM keeps that stderr for its life; a thread copies its lines to this process's stderr.
    """
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    terminal = os.dup(2)
    threading.Thread(target=_pass_on, args=(read_end, terminal), name="spark-stderr", daemon=True).start()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _pass_on(read_end: int, terminal: int) -> None:
    with open(read_end, "rb") as lines, open(terminal, "wb", buffering=0) as out:
        for line in lines:
            if not line.startswith(_JVM_START_NOTICES):
                out.write(line)


def build_spark_resource(settings: Settings) -> SparkResource:
    """The ``spark`` resource for ``settings``: Spark Connect if a remote is set, else the master."""
    return SparkResource(spark_config=spark_config(settings.spark_master, settings.spark_remote))
