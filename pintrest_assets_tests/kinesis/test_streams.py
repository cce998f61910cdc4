"""The three streams of the pipeline, named and created from the topics' spec table."""

from __future__ import annotations

import uuid

import pytest

from pintrest_assets.kinesis.streams import ensure_streams, stream_name, stream_names, stream_status
from pintrest_assets.topics import TOPICS, TOPICS_BY_NAME

# Tests marked kinesis run kinesalite (Node.js and npm); the others need neither.


def test_one_stream_per_topic_named_as_the_original():
    assert stream_names("0a1b2c3d4e5f") == {
        "pin": "streaming-0a1b2c3d4e5f-pin",
        "geo": "streaming-0a1b2c3d4e5f-geo",
        "user": "streaming-0a1b2c3d4e5f-user",
    }
    assert list(stream_names("u")) == [spec.name for spec in TOPICS]
    assert stream_name("u", TOPICS_BY_NAME["geo"]) == "streaming-u-geo"


def _shard_count(client, name: str) -> int:
    return client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["OpenShardCount"]


@pytest.mark.kinesis
def test_streams_are_created_once_and_active(kinesis):
    user_id = uuid.uuid4().hex[:12]
    names = ensure_streams(kinesis, user_id, shard_count=2)
    assert names == stream_names(user_id)
    for name in names.values():
        assert stream_status(kinesis, name) == "ACTIVE"
        assert _shard_count(kinesis, name) == 2
    kinesis.put_record(StreamName=names["pin"], Data=b"{}", PartitionKey="k")

    # Again, even asking for other shard counts: nothing is created, nothing changes.
    assert ensure_streams(kinesis, user_id, shard_count=3) == names
    assert all(_shard_count(kinesis, name) == 2 for name in names.values())
    listed = kinesis.list_streams(Limit=10_000)["StreamNames"]
    assert sorted(n for n in listed if user_id in n) == sorted(names.values())
    assert sum(1 for _ in _records(kinesis, names["pin"])) == 1


@pytest.mark.kinesis
def test_missing_streams_are_created_beside_existing_ones(kinesis):
    user_id = uuid.uuid4().hex[:12]
    kinesis.create_stream(StreamName=f"streaming-{user_id}-geo", ShardCount=4)
    names = ensure_streams(kinesis, user_id)
    assert [_shard_count(kinesis, names[t]) for t in ("pin", "geo", "user")] == [1, 4, 1]
    assert stream_status(kinesis, f"streaming-{user_id}-nothing") == "MISSING"


def _records(client, name: str):
    for shard in client.list_shards(StreamName=name)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        yield from client.get_records(ShardIterator=iterator)["Records"]
