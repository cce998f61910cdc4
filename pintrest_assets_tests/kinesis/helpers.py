"""Putting records into a Kinesis stream, for the Kinesis and stream tests."""

from __future__ import annotations

import json
import uuid

from pintrest_assets.kinesis import proxy_contract as kinesis_proxy


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
