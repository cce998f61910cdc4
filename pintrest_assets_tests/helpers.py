"""Helpers shared by several test folders: landing objects in a local bucket while a reader
lists it, and reading a Kinesis stream whole."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.kafka.sink_layout import object_key, partition_prefix


def land_in_key_order(bucket: LocalBucket, topic: str, count: int) -> tuple[list[str], threading.Thread]:
    """Starts a thread renaming ``count`` staged hidden files to their keys in one partition,
    strictly in key order, as the sink lands a local directory; returns the keys and the thread."""
    keys = [object_key(topic, 0, offset) for offset in range(count)]
    directory = bucket.root / partition_prefix(topic, 0)
    directory.mkdir(parents=True)
    for offset in range(count):
        (directory / f".staged-{offset}").write_bytes(b"{}\n")

    def land() -> None:
        for offset, key in enumerate(keys):
            os.replace(directory / f".staged-{offset}", bucket.root / key)

    return keys, threading.Thread(target=land)


def poll_until_landed(landing: threading.Thread, list_after: Callable[[str | None], list[str]]) -> list[str]:
    """Every key listed by polling ``list_after(last key seen)`` while ``landing`` runs, then until
    a poll finds nothing (a paged listing may need several)."""
    seen: list[str] = []
    landing.start()
    while True:
        done = not landing.is_alive()
        found = list_after(seen[-1] if seen else None)
        seen.extend(found)
        if done and not found:
            return seen


def read_stream(client, stream: str) -> list[dict]:
    """Every record of ``stream``, shard by shard, each in sequence order (boto3 GetRecords)."""
    records = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            answer = client.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend({**r, "ShardId": shard["ShardId"]} for r in answer["Records"])
            if not answer["Records"] and answer.get("MillisBehindLatest", 0) == 0:
                break
            iterator = answer.get("NextShardIterator")
    return records
