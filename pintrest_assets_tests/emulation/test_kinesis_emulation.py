"""The streaming emulation: posts through the local gateway's Kinesis-proxy routes into kinesalite.

Every record the client saw acknowledged is in its stream exactly once, under the shard and
sequence number it was acknowledged with, and its bytes are the JSON text of the row drawn.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import dagster as dg
import pytest

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.gateway import Gateway
from pintrest_assets.gateway.kinesis import KinesisStack
from pintrest_assets.emulation.emulator import emulate
from pintrest_assets.emulation.batch_metadata import batch_metadata
from pintrest_assets.kinesis.streams import kinesis_client
from pintrest_assets.kinesis.proxy_client import KinesisProxyResource
from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.helpers import read_stream
from pintrest_assets_tests.net import free_port

pytestmark = pytest.mark.kinesis  # kinesalite: Node.js and npm

USER_ID = "streamer"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """kinesalite with the three streams, two shards each."""
    stack = KinesisStack(
        None,
        user_id=USER_ID,
        kinesis_dir=tmp_path_factory.mktemp("home") / "kinesis",
        local_port=free_port(),
        shard_count=2,
    )
    stack.open()
    yield stack
    stack.close()


@pytest.fixture
def kinesis_gateway(tmp_path, stack):
    with Gateway(
        LocalBucket(tmp_path / "bucket"), tmp_path / "gateway", port=0, fsync=False, kinesis=stack.client
    ) as gw:
        yield gw


def stream_records(stack, spec) -> list[dict]:
    return read_stream(kinesis_client(stack.client_endpoint, "us-east-1"), spec.kinesis_stream(USER_ID))


@pytest.mark.parametrize("records_per_request", [500, 1], ids=["PutRecords", "PutRecord"])
def test_every_acknowledged_record_is_in_its_stream_once(database, stack, kinesis_gateway, records_per_request):
    before = {spec.name: len(stream_records(stack, spec)) for spec in TOPICS}
    proxy = KinesisProxyResource(
        url=kinesis_gateway.url, user_id=USER_ID, records_per_request=records_per_request, backoff_seconds=0.01
    )
    posts = 600 if records_per_request > 1 else 60
    report = emulate(database, proxy, posts, rng=random.Random(11), chunk_posts=250)
    assert report.error is None and report.posts == posts and report.missing == 0

    drawn = {}
    for spec in TOPICS:
        tally = report.topics[spec.name]
        assert (tally.topic, tally.kind, tally.sent, tally.failed) == (spec.kinesis_stream(USER_ID), "stream", posts, 0)
        assert set(tally.offsets) == {"shardId-000000000000", "shardId-000000000001"}  # a uuid4 key per record
        acknowledged = Counter((shard, seq) for shard, sequences in tally.offsets.items() for seq in sequences)
        assert sum(acknowledged.values()) == len(acknowledged) == posts  # no sequence number twice

        stored = stream_records(stack, spec)
        in_stream = Counter((r["ShardId"], int(r["SequenceNumber"])) for r in stored)
        assert all(count == 1 for count in in_stream.values())
        assert all(in_stream[key] == 1 for key in acknowledged)  # each acknowledged record is there, once
        assert len(stored) - before[spec.name] == posts  # and nothing else was added
        mine = [r for r in stored if (r["ShardId"], int(r["SequenceNumber"])) in acknowledged]
        for record in mine:
            value = json.loads(record["Data"])
            assert record["Data"] == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        drawn[spec.name] = Counter(json.loads(r["Data"])[spec.index_column] for r in mine)
    # The same posts in the three streams: one pin, its geo and its user row each.
    assert drawn["pin"] == drawn["geo"] == drawn["user"]
    assert sum(drawn["pin"].values()) == posts


def test_the_batch_is_recorded_as_kinesis_stream_materialisations(database, stack, kinesis_gateway):
    proxy = KinesisProxyResource(url=kinesis_gateway.url, user_id=USER_ID)
    report = emulate(database, proxy, 50, rng=random.Random(12))
    instance = dg.DagsterInstance.ephemeral()
    for spec in TOPICS:
        metadata = batch_metadata(report, spec.name)
        assert metadata["stream"] == spec.kinesis_stream(USER_ID) and "topic" not in metadata
        ranges = metadata["offset_ranges"].data
        assert set(ranges) == {"shardId-000000000000", "shardId-000000000001"}
        for first, last in ranges.values():
            assert first.isdigit() and last.isdigit() and int(first) <= int(last) and len(first) > 40
        assert metadata["first_offset"] == min(r[0] for r in ranges.values())
        instance.report_runless_asset_event(dg.AssetMaterialization(spec.kinesis_asset, metadata=metadata))
    event = instance.get_latest_materialization_event(dg.AssetKey(TOPICS[0].kinesis_asset))
    stored = event.asset_materialization.metadata
    assert stored["records_sent"].value == 50
    assert stored["offset_ranges"].data == batch_metadata(report, "pin")["offset_ranges"].data
