"""Fixtures for the stream tests: the session's kinesalite, a user id with its three
streams per test, a small posts database, Spark, and helpers that put records as the proxy does."""

from __future__ import annotations

import random
import uuid

import pytest

from pintrest_assets.kinesis import proxy_contract as kinesis_proxy
from pintrest_assets.kinesis.streams import ensure_streams
from pintrest_assets.database.resource import PostsDatabase
from pintrest_assets.database.seed import seed

# The session's kinesalite and its client, and the module's Spark session.
from pintrest_assets_tests.kinesis.conftest import kinesalite, kinesis, spark  # noqa: F401

SHARDS = 2


@pytest.fixture
def user_id(kinesis) -> str:  # noqa: F811 - the fixture imported above
    """A user id of its own, with its three streams (two shards each) on the session's kinesalite."""
    user = f"t{uuid.uuid4().hex[:10]}"
    ensure_streams(kinesis, user, shard_count=SHARDS, timeout=60)
    return user


@pytest.fixture(scope="module")
def posts_database(tmp_path_factory) -> PostsDatabase:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'posts.db'}"
    seed(url, rows=400)
    return PostsDatabase(url=url)


def draw(database: PostsDatabase, count: int, seed_value: int = 7) -> list[dict]:
    """``count`` posts drawn as the emulation draws them (with replacement)."""
    return database.draw_posts(count, random.Random(seed_value)).posts


def put(client, stream: str, values: list) -> list[tuple[str, str]]:
    """Puts ``values`` as the Kinesis proxy would (each value's JSON text, a uuid4 partition key),
    500 per PutRecords; returns the (shard id, sequence number) of each, in order."""
    acknowledged = []
    for first in range(0, len(values), 500):
        chunk = values[first : first + 500]
        answer = client.put_records(
            StreamName=stream,
            Records=[{"Data": kinesis_proxy.record_bytes(v), "PartitionKey": str(uuid.uuid4())} for v in chunk],
        )
        assert answer["FailedRecordCount"] == 0
        acknowledged += [(r["ShardId"], r["SequenceNumber"]) for r in answer["Records"]]
    return acknowledged


def put_raw(client, stream: str, data: bytes) -> None:
    """One record of arbitrary bytes, put directly (not through the proxy)."""
    client.put_record(StreamName=stream, Data=data, PartitionKey=str(uuid.uuid4()))
