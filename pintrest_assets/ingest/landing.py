"""Checks that acknowledged records landed in the bucket, by offset."""

from __future__ import annotations

from pintrest_assets.bucket import Bucket
from pintrest_assets.sink_layout import parse_object_key, partition_prefix


def landed_offsets(bucket: Bucket, topic: str, partition: int, first: int, last: int) -> set[int]:
    """The offsets in ``first..last`` whose records are in the bucket.

    An object starting at offset s with n lines holds offsets s..s+n-1 (the sink's layout).
    """
    found: set[int] = set()
    for obj in bucket.list(partition_prefix(topic, partition)):
        key = parse_object_key(obj.key)
        if key is None or key.start_offset > last:
            continue
        lines = bucket.get(obj.key).count(b"\n")
        found.update(o for o in range(key.start_offset, key.start_offset + lines) if first <= o <= last)
    return found
