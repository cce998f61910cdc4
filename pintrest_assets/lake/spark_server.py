"""A Spark Connect server of the project's own: one warm Spark that every run of ``pintrest dev`` uses.

A run started by Dagster is a new Python process. With local Spark it starts a JVM of its own
and loads Spark's classes anew (tens of seconds on a loaded laptop) for a refresh that reads a
few hundred records. ``pintrest dev`` starts this server once instead (``local_spark_connect``):
a JVM running Spark's own ``SparkConnectServer`` (from pyspark's jars, with ``spark-submit``)
on a free loopback port, and hands ``sc://127.0.0.1:<port>`` to the Dagster UI and daemon as
``PINTREST_SPARK_REMOTE``, so that the runs they launch are Spark Connect clients of it: a run
opens a session on a JVM that is already running and warmed up, and releases it when it ends.

The server has the local driver's settings (``spark.py``: a few shuffle partitions, small file
splits, no UI, the serial collector), its Python workers (the Kinesis source, a stream table's
``foreachBatch``) run this interpreter, and without ``--verbose`` it logs errors only, to
``<PINTREST_HOME>/spark-connect.log``. Stopping the context stops it, and its Python workers with
it (its own process group).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pintrest_assets.lake import jvm_archive
from pintrest_assets.lake.spark import (
    DELTA_PARQUET_CONFIG,
    LOCAL_DRIVER_JAVA_OPTIONS,
    LOCAL_MAX_PARTITION_BYTES,
    LOCAL_SHUFFLE_PARTITIONS,
    QUIET_LOG4J2,
    SMALL_FILES_CONFIG,
    release_connect_session,
)
from pintrest_assets.ports import free_port, listening

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
HOST = "127.0.0.1"
LOG_NAME = "spark-connect.log"
# A run releases its session when it ends; a run killed before that leaves one behind, which
# the server drops after this long without a request (Spark's default: an hour).
SESSION_TIMEOUT = "10min"
START_TIMEOUT = 180  # seconds: a JVM starts in a few on an idle laptop, far more on a loaded one
# The server's niceness (0 normal, 19 lowest): its runs are batch work, the streaming service's
# micro-batches are due every second.
NICENESS = 10


def spark_home() -> Path:
    """pyspark's own directory: its ``bin/spark-submit`` and its jars (Spark Connect's among them)."""
    spec = importlib.util.find_spec("pyspark")  # without importing pyspark
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def server_command(port: int, *, verbose: bool = False) -> list[str]:
    """``spark-submit`` of the Connect server on ``HOST:port`` with the local driver's settings."""
    java_options = f"{LOCAL_DRIVER_JAVA_OPTIONS} {jvm_archive.java_options()}".strip()
    if not verbose:
        java_options += f" -Dlog4j2.configurationFile={QUIET_LOG4J2.as_uri()}"
    conf = {
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(port),
        "spark.connect.session.manager.defaultSessionTimeout": SESSION_TIMEOUT,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.debug.maxToStringFields": "200",
        # Defaults of every session a run opens (a session may still set its own).
        "spark.sql.shuffle.partitions": str(LOCAL_SHUFFLE_PARTITIONS),
        "spark.sql.files.maxPartitionBytes": LOCAL_MAX_PARTITION_BYTES,
        **SMALL_FILES_CONFIG,
        **DELTA_PARQUET_CONFIG,
    }
    if not verbose:
        conf["spark.log.level"] = "ERROR"
    return [
        str(spark_home() / "bin" / "spark-submit"),
        *("--class", SERVER_CLASS),
        *("--name", "pintrest-connect", "--master", "local[*]"),
        *("--driver-java-options", java_options),
        *[arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")],
    ]


def server_env() -> dict[str, str]:
    """The server's environment: loopback, this interpreter for its Python workers, and none of
    the variables that would make it a Connect client itself."""
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": HOST}
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    for variable in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE", "PINTREST_SPARK_REMOTE"):
        env.pop(variable, None)
    return env


class SparkConnectServer:
    """The server's process: started by ``start``, ready once ``wait_ready`` returns, ``stop``ped."""

    def __init__(self, home: Path, *, verbose: bool = False, port: int | None = None):
        self.port = port or free_port(HOST)
        self.url = f"sc://{HOST}:{self.port}"
        self.log = home / LOG_NAME
        self.verbose = verbose
        self.process: subprocess.Popen | None = None
        self._warming: subprocess.Popen | None = None  # the warm-up client, while it runs
        self.warmed = threading.Event()  # set once ``local_spark_connect``'s warm-up has ended
        self.ready_after: float | None = None  # seconds from start until it answered

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._started = time.monotonic()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                server_command(self.port, verbose=self.verbose),
                env=server_env(),
                stdin=subprocess.DEVNULL,
                stdout=None if self.verbose else log,
                stderr=None if self.verbose else log,
                # Its own process group: one signal stops the JVM and its Python workers, and a
                # Ctrl-C in the terminal reaches the command, which stops it in order.
                start_new_session=True,
                # Below the streaming service: on a laptop's few cores, its JVM's start and warm-up
                # would hold back the service's (records wait for it); when the cores are free,
                # the niceness changes nothing.
                preexec_fn=lambda: os.nice(NICENESS),
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Returns once the server accepts connections; raises if it exited or took too long."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not listening(HOST, self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"the Spark Connect server exited ({self.process.returncode}); see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Spark Connect server did not listen on {HOST}:{self.port} in {timeout:g} s")
            time.sleep(0.1)
        self.ready_after = time.monotonic() - self._started

    def warm_up(self, timeout: float = START_TIMEOUT) -> None:
        """Runs, in a client process of its own, the kind of work a lake refresh asks for (parquet
        written and read, text lines parsed as JSON, an aggregate): the JVM loads those classes
        and compiles their hot code now, not during the first run. ``stop`` ends it too."""
        self._warming = subprocess.Popen(
            [sys.executable, "-m", "pintrest_assets.lake.spark_server", "warm-up", self.url, str(self.log.parent)],
            env={k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=None if self.verbose else subprocess.DEVNULL,
            preexec_fn=lambda: os.nice(NICENESS),
        )
        try:
            code = self._warming.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._warming.kill()
            self._warming.wait()
            raise
        if code and self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"the warm-up of the Spark Connect server failed (exit code {code})")

    def stop(self, timeout: float = 30) -> None:
        """Stops the JVM (its shutdown hooks stop Spark) and its Python workers; killed if slow.
        A warm-up still running ends with it (its client would retry the server for minutes)."""
        if self._warming is not None and self._warming.poll() is None:
            self._warming.kill()
            self._warming.wait()
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Python workers of its group that outlived it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def local_spark_connect(home: Path, *, verbose: bool = False, on_error=None) -> Iterator[SparkConnectServer]:
    """Starts a Spark Connect server on loopback and yields it at once (its ``url`` is known
    before it listens: a run that comes first waits for it, ``SparkResource``); a thread waits
    for it and warms it up. ``on_error(message)`` hears of a server that failed to start. The
    server stops on leaving."""
    server = SparkConnectServer(home, verbose=verbose)
    server.start()

    def ready() -> None:
        try:
            server.wait_ready()
            server.warm_up()
        except Exception as exc:  # noqa: BLE001 - told, not raised: the UI runs on regardless
            if on_error is not None:
                on_error(f"Spark Connect server on {server.url}: {exc}")
        finally:
            server.warmed.set()

    threading.Thread(target=ready, name="spark-connect-ready", daemon=True).start()
    try:
        yield server
    finally:
        server.stop()


def _warm_up(url: str, home: str) -> None:
    """The warm-up client's work; its files go under the server's home (one killed with
    ``stop`` leaves them there, not in the machine's temporary directory)."""
    import tempfile

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = SparkSession.builder.remote(url).getOrCreate()
    try:
        with tempfile.TemporaryDirectory(prefix="spark-warm-up-", dir=home) as directory:
            for _ in range(2):  # the second round runs what the first compiled
                rows = spark.range(2000).selectExpr("id", "cast(id AS string) AS s", "cast(id AS double) AS d")
                rows.write.mode("overwrite").option("parquet.enable.dictionary", "false").parquet(f"{directory}/rows")
                spark.read.parquet(f"{directory}/rows").agg(F.max("s"), F.count(F.lit(1))).collect()
                lines = rows.select(F.to_json(F.struct("id", "s", "d")).alias("value"))
                lines.write.mode("overwrite").text(f"{directory}/lines")
                parsed = spark.read.text(f"{directory}/lines").select(
                    F.from_json("value", "id BIGINT, s STRING, d DOUBLE").alias("r")
                )
                parsed.select("r.*").groupBy("s").count().agg(F.sum("count")).collect()
    finally:
        release_connect_session(spark)


if __name__ == "__main__":
    if sys.argv[1:2] == ["warm-up"] and len(sys.argv) == 4:
        _warm_up(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"usage: python -m {__spec__.name if __spec__ else 'spark_server'} warm-up sc://host:port HOME")
