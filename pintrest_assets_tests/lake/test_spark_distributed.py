"""The DataFrame assets on each kind of Spark the settings can name: local, a standalone cluster
(master and worker as separate JVMs) and a Spark Connect server, all started here on loopback."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyspark
import pytest
from pyspark.sql import SparkSession

from pintrest_assets.lake.spark import (
    LOCAL_DRIVER_JAVA_OPTIONS,
    SparkResource,
    build_spark_resource,
    spark_config,
)
from pintrest_assets.settings import ConfigError, Settings
from pintrest_assets.kafka.sink_layout import object_key

SPARK_HOME = Path(pyspark.__file__).parent
# A JVM starts in seconds on an idle machine; the test machines are shared.
READY_TIMEOUT = 180
# Short-lived JVMs with a few rows each: local mode's options, and no optimising JIT compiler
# (local mode keeps it for batches of millions of rows).
QUICK_JVM = f"-XX:TieredStopAtLevel=1 {LOCAL_DRIVER_JAVA_OPTIONS}"


# --- the resource's settings, without Spark -------------------------------------------------------


def test_local_spark_by_default_quiet_and_small():
    config = build_spark_resource(Settings.from_env({})).spark_config
    assert config["spark.master"] == "local[*]"
    assert "spark.remote" not in config
    assert config["spark.ui.showConsoleProgress"] == "false"
    assert config["spark.log.level"] == "WARN"
    assert int(config["spark.sql.shuffle.partitions"]) <= 8
    # Splits small enough that a batch of a few files gives each core several tasks.
    assert int(config["spark.sql.files.maxPartitionBytes"]) <= 32 << 20


def test_a_cluster_master_or_a_connect_server_from_the_settings():
    cluster = build_spark_resource(Settings.from_env({"PINTREST_SPARK_MASTER": "spark://10.0.0.5:7077"}))
    assert cluster.spark_config["spark.master"] == "spark://10.0.0.5:7077"
    assert "spark.sql.shuffle.partitions" not in cluster.spark_config  # the cluster's own default
    assert "spark.sql.files.maxPartitionBytes" not in cluster.spark_config
    assert not cluster.is_local

    remote = build_spark_resource(Settings.from_env({"PINTREST_SPARK_REMOTE": "sc://spark.example:15002"}))
    assert remote.spark_config["spark.remote"] == "sc://spark.example:15002"
    assert "spark.master" not in remote.spark_config
    assert not remote.is_local


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PINTREST_SPARK_MASTER", "spark:/host:7077"),
        ("PINTREST_SPARK_MASTER", "local[two]"),
        ("PINTREST_SPARK_REMOTE", "http://host:15002"),
        ("PINTREST_SPARK_REMOTE", "sc://"),
    ],
)
def test_a_malformed_spark_setting_names_its_variable(variable, value):
    with pytest.raises(ConfigError) as raised:
        build_spark_resource(Settings.from_env({variable: value}))
    assert raised.value.setting == variable
    assert value in str(raised.value)


# --- the same lake on three kinds of Spark --------------------------------------------------------

# Per asset: rows, lines quarantined.
EXPECTED = {"df_pin": (9, 2), "df_geo": (6, 1), "df_user": (7, 0)}


def _land_posts(lake) -> None:
    """Objects in two partitions per topic, with a line that is not JSON and one of the wrong type."""

    def put(name, partition, offset, records):
        key = object_key(lake.topic(name), partition, offset)
        lake.bucket.put(key, "".join(line + "\n" for line in records).encode())

    for partition, offsets in ((0, (0, 3)), (1, (0,))):
        for offset in offsets:
            put("pin", partition, offset, [json.dumps({"index": offset + i, "follower_count": "26k"}) for i in range(3)])
            put("geo", partition, offset, [json.dumps({"ind": offset + i, "latitude": 1.5}) for i in range(2)])
            put("user", partition, offset, [json.dumps({"ind": offset + i, "age": 30 + i}) for i in range(2)])
    put("pin", 0, 6, ['{"index": 6, "title": "cut', json.dumps({"index": "seven"})])
    put("geo", 0, 6, [json.dumps({"ind": 6, "latitude": "north"})])
    put("user", 0, 6, [json.dumps({"ind": 6, "age": 41})])


def _counts(lake, spark: SparkResource) -> dict:
    _land_posts(lake)
    result = lake.refresh(spark=spark)
    assert result.success
    counts = {}
    for asset in EXPECTED:
        metadata = lake.metadata(result, asset)
        counts[asset] = (metadata["rows_read"], metadata["quarantined"])
        assert metadata["dagster/row_count"] == lake.table(asset).state().rows == metadata["rows_read"]
    return counts


def _stop_sessions() -> None:
    """No session left behind: a later test must get a fresh one, on the Spark it asks for."""
    for session in {SparkSession.getActiveSession(), SparkSession._instantiatedSession} - {None}:
        session.stop()
    for variable in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE"):
        os.environ.pop(variable, None)  # set by pyspark once a Connect session was made


class _Jvm:
    """A Spark daemon run in the foreground, in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], log_dir: Path):
        self.log = log_dir / f"{name}.log"
        env = {
            **os.environ,
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_DAEMON_JAVA_OPTS": QUICK_JVM,  # read by spark-class for a master and a worker
        }
        for variable in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE"):
            env.pop(variable, None)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_for(self, pattern: str) -> re.Match:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log.read_text(errors="replace"))
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.25)
        self.stop()
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        pytest.fail(f"{self.log.name}: no {pattern!r} (exit code {self.process.returncode}):\n{tail}")

    def stop(self) -> None:
        """The daemon and everything it started (a worker's executors): the whole process group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def local_counts(tmp_path_factory, spark_lake_factory):
    lake = spark_lake_factory(tmp_path_factory.mktemp("local"), SparkResource(spark_config=spark_config("local[2]")))
    return _counts(lake, lake.spark)


@pytest.fixture
def no_session(local_counts):
    """Each kind of Spark begins with no session in this process and leaves none behind."""
    _stop_sessions()
    yield
    _stop_sessions()


@pytest.mark.slow
def test_local_mode_reads_every_line_once(local_counts):
    assert local_counts == EXPECTED


@pytest.mark.slow
def test_on_a_standalone_cluster(tmp_path, spark_lake_factory, local_counts, no_session, monkeypatch):
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # the driver, as the executors reach it
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    master = _Jvm(
        "master",
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "0", "--webui-port", "0"],
        tmp_path,
    )
    worker = None
    try:
        url = master.wait_for(r"Starting Spark master at (spark://127\.0\.0\.1:\d+)").group(1)
        worker = _Jvm(
            "worker",
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                *("--host", "127.0.0.1", "--port", "0", "--webui-port", "0"),
                *("--cores", "2", "--memory", "1g", "--work-dir", str(tmp_path / "work")),
                url,
            ],
            tmp_path,
        )
        worker.wait_for(r"Successfully registered with master")

        config = build_spark_resource(Settings.from_env({"PINTREST_SPARK_MASTER": url})).spark_config
        spark = SparkResource(spark_config={**config, "spark.executor.extraJavaOptions": QUICK_JVM})
        counts = _counts(spark_lake_factory(tmp_path / "lake", spark), spark)
        # The work ran in the worker's executor, not in this process.
        assert SparkSession.getActiveSession().sparkContext.master == url
        assert list((tmp_path / "work").glob("app-*/*/stderr"))
    finally:
        _stop_sessions()
        for jvm in (worker, master):
            if jvm is not None:
                jvm.stop()
    assert counts == local_counts == EXPECTED


@pytest.mark.slow
def test_on_a_spark_connect_server(tmp_path, spark_lake_factory, local_counts, no_session):
    server = _Jvm(
        "connect",
        [
            str(SPARK_HOME / "bin" / "spark-submit"),
            *("--class", "org.apache.spark.sql.connect.service.SparkConnectServer"),
            *("--name", "pintrest-test-connect", "--master", "local[2]", "--driver-java-options", QUICK_JVM),
            *("--conf", "spark.connect.grpc.binding.address=127.0.0.1"),
            *("--conf", "spark.connect.grpc.binding.port=0"),
            *("--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2"),
        ],
        tmp_path,
    )
    try:
        port = server.wait_for(r"Spark Connect server started at: 127\.0\.0\.1:(\d+)").group(1)
        spark = build_spark_resource(Settings.from_env({"PINTREST_SPARK_REMOTE": f"sc://127.0.0.1:{port}"}))
        counts = _counts(spark_lake_factory(tmp_path / "lake", spark), spark)
        # The run released its session on the server as it ended; the resource's sessions are
        # Connect clients: no JVM of their own in this process.
        assert SparkSession.getActiveSession() is None
        assert type(spark.spark_session).__module__ == "pyspark.sql.connect.session"
    finally:
        _stop_sessions()
        server.stop()
    assert counts == local_counts == EXPECTED


@pytest.mark.slow
def test_on_the_spark_connect_server_pintrest_dev_starts(tmp_path, spark_lake_factory, local_counts, no_session):
    from pintrest_assets.lake.spark_server import local_spark_connect
    from pintrest_assets.ports import listening

    errors: list[str] = []
    with local_spark_connect(tmp_path / "home", on_error=errors.append) as server:
        server.wait_ready(READY_TIMEOUT)
        assert server.url.startswith("sc://127.0.0.1:")
        # The context's own warm-up (a client of its own) ends before the run, as in ``pintrest dev``
        # once the UI has been up a while.
        assert server.warmed.wait(READY_TIMEOUT) and errors == []
        spark = build_spark_resource(Settings.from_env({"PINTREST_SPARK_REMOTE": server.url}))
        try:
            counts = _counts(spark_lake_factory(tmp_path / "lake", spark), spark)
            assert type(spark.spark_session).__module__ == "pyspark.sql.connect.session"
        finally:
            _stop_sessions()
        # Quiet: its log holds errors only, and there were none.
        assert " ERROR " not in (tmp_path / "home" / "spark-connect.log").read_text(errors="replace")
    # Stopped with the context, its Python workers with it.
    assert server.process.poll() is not None and not listening("127.0.0.1", server.port)
    assert counts == local_counts == EXPECTED
