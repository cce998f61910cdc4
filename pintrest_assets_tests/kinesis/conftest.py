"""Fixtures for the Kinesis tests: one kinesalite server for the session, streams on it, and Spark."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from pintrest_assets.kinesis.local_server import LocalKinesis
from pintrest_assets.kinesis.streams import create_stream, kinesis_client, wait_until_active
from pintrest_assets_tests.net import free_port


@pytest.fixture(scope="session")
def kinesalite(tmp_path_factory) -> LocalKinesis:
    """A kinesalite server on a free loopback port, its LevelDB in a temporary directory."""
    server = LocalKinesis(tmp_path_factory.mktemp("kinesalite") / "data", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kinesis(kinesalite):
    """A boto3 Kinesis client of the session's kinesalite."""
    return kinesis_client(kinesalite.endpoint_url, "us-east-1")


@pytest.fixture
def new_stream(kinesis):
    """``new_stream(shards=1) -> name``: a new ACTIVE stream on the session's kinesalite."""

    def make(shards: int = 1) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        create_stream(kinesis, name, shards)
        wait_until_active(kinesis, [name], timeout=30)
        return name

    return make


def put_posts(client, stream: str, start: int, count: int, partition_key=None) -> list[dict]:
    """Put posts ``{"index": start..start+count-1, ...}`` as JSON records, 500 per PutRecords, each
    under a random partition key (or ``partition_key(index)``); returns the posts."""
    posts = [{"index": i, "title": f"post {i}", "follower_count": f"{i}k"} for i in range(start, start + count)]
    for first in range(0, count, 500):
        batch = posts[first : first + 500]
        answer = client.put_records(
            StreamName=stream,
            Records=[
                {
                    "Data": json.dumps(post).encode(),
                    "PartitionKey": partition_key(post["index"]) if partition_key else str(uuid.uuid4()),
                }
                for post in batch
            ],
        )
        assert answer["FailedRecordCount"] == 0
    return posts


@pytest.fixture(scope="module")
def spark():
    """A local Spark session for one test module (started here unless one is running already).

    The source's Python workers must run this interpreter (the project's Spark settings do not
    say which one); ``register`` also sees to it for a session started without it. They run it
    through the launcher the project's sessions use (``worker_python``), which spares each of
    them compiling Spark's pyspark zip.
    """
    from pyspark.sql import SparkSession

    from pintrest_assets.resources.worker_python import worker_python

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", worker_python())
    running = SparkSession.getActiveSession() or SparkSession._instantiatedSession
    session = running or (
        SparkSession.builder.master("local[2]")
        .appName("pintrest-kinesis-tests")
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "ERROR")
        .getOrCreate()
    )
    yield session
    if running is None:
        session.stop()
