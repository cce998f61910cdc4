"""A stream-table refresh with no streaming service running, with the runs' Spark set to the Spark
Connect server that `pintrest dev` starts. A query's foreachBatch would run in a Python worker of
that server, which must connect back within Spark's fixed 10 s, and on a loaded machine does not
(every query failed so, at load 12-16): a run refreshing stream tables takes a local session when
the server is on this machine, and the lake's runs keep the server."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from pintrest_assets.kinesis.proxy_client import KinesisProxyResource
from pintrest_assets.lake.spark import build_spark_resource
from pintrest_assets.lake.spark_server import local_spark_connect
from pintrest_assets.lake.warehouse import WarehouseIOManager
from pintrest_assets.settings import Settings
from pintrest_assets.stream.resource import KinesisResource
from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.stream.helpers import emulate, metadata, refresh

pytestmark = [pytest.mark.kinesis, pytest.mark.slow]


def _stop_sessions() -> None:
    for session in {SparkSession.getActiveSession(), SparkSession._instantiatedSession} - {None}:
        session.stop()
    for variable in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE"):
        os.environ.pop(variable, None)  # set by pyspark once a Connect session was made


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    """The server `pintrest dev` starts; no local session in this process meanwhile."""
    _stop_sessions()
    with local_spark_connect(tmp_path_factory.mktemp("home")) as server:
        server.wait_ready()
        yield server
        _stop_sessions()


def test_stream_tables_refresh_on_a_local_session_beside_the_server(
    connect_server, tmp_path, user_id, gateway, kinesalite, posts_database  # noqa: F811 - the fixture
):
    spark = build_spark_resource(Settings.from_env({"PINTREST_SPARK_REMOTE": connect_server.url}))
    resources = {
        "database": posts_database,
        "kinesis_proxy": KinesisProxyResource(url=gateway.url, user_id=user_id),
        "kinesis": KinesisResource(endpoint_url=kinesalite.endpoint_url, region="us-east-1", user_id=user_id),
        "spark": spark,
        "warehouse_io_manager": WarehouseIOManager(base_dir=str(tmp_path / "warehouse"), spark=spark),
    }
    instance = dg.DagsterInstance.ephemeral()
    emulate(instance, resources, 60)
    done = refresh(instance, resources)
    assert done.success
    # Its queries ran on a local JVM of this process.
    assert SparkSession._instantiatedSession is not None
    for spec in TOPICS:
        meta = metadata(done, spec.stream_table_asset)
        assert (meta["rows_appended"], meta["quarantined"], meta["dagster/row_count"]) == (60, 0, 60)
        assert meta["records_behind"] == 0
