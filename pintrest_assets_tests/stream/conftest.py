"""Fixtures for the stream tests: a user id with its three streams per test on the session's
kinesalite, a small posts database, the local gateway in front of kinesalite, and the resources
of the stream group (Spark, the warehouse, the Kinesis endpoint and proxy)."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.database.resource import PostsDatabase
from pintrest_assets.database.seed import seed
from pintrest_assets.gateway import Gateway
from pintrest_assets.kinesis.proxy_client import KinesisProxyResource
from pintrest_assets.kinesis.streams import ensure_streams, kinesis_client
from pintrest_assets.lake.spark import SparkResource, spark_config
from pintrest_assets.lake.warehouse import WarehouseIOManager
from pintrest_assets.stream.resource import KinesisResource
from pintrest_assets_tests.stream.helpers import SHARDS


@pytest.fixture
def user_id(kinesis) -> str:
    """A user id of its own, with its three streams (two shards each) on the session's kinesalite."""
    user = f"t{uuid.uuid4().hex[:10]}"
    ensure_streams(kinesis, user, shard_count=SHARDS, timeout=60)
    return user


@pytest.fixture(scope="module")
def posts_database(tmp_path_factory) -> PostsDatabase:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'posts.db'}"
    seed(url, rows=400)
    return PostsDatabase(url=url)


@pytest.fixture
def gateway(tmp_path, kinesalite):
    """The local gateway with its Kinesis-proxy routes in front of the module's kinesalite."""
    client = kinesis_client(kinesalite.endpoint_url, "us-east-1", max_attempts=1, read_timeout=29)
    gateway = Gateway(LocalBucket(tmp_path / "bucket"), tmp_path / "state", port=0, fsync=False, kinesis=client)
    gateway.start()
    yield gateway
    gateway.shutdown()


@pytest.fixture
def resources(tmp_path, user_id, gateway, kinesalite, posts_database, spark) -> dict:
    session = SparkResource(spark_config={**spark_config("local[2]"), "spark.sql.shuffle.partitions": "2"})
    return {
        "database": posts_database,
        "kinesis_proxy": KinesisProxyResource(url=gateway.url, user_id=user_id),
        "kinesis": KinesisResource(endpoint_url=kinesalite.endpoint_url, region="us-east-1", user_id=user_id),
        "spark": session,
        "warehouse_io_manager": WarehouseIOManager(base_dir=str(tmp_path / "warehouse"), spark=session),
    }


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()
