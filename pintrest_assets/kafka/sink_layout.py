"""The S3 sink connector's object layout, shared by the gateway that writes it and the lake that reads it.

``topics/<topic>/partition=<p>/<topic>+<p>+<start offset, 10 digits>.json``; each object holds
the record values of consecutive offsets, one JSON document per line. Zero-padding makes key
order equal offset order within a partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"^topics/(?P<topic>[^/]+)/partition=(?P<partition>\d+)/(?P=topic)\+(?P=partition)\+(?P<offset>\d{10,})\.json$")


@dataclass(frozen=True)
class SinkKey:
    topic: str
    partition: int
    start_offset: int


def topic_prefix(topic: str) -> str:
    return f"topics/{topic}/"


def partition_prefix(topic: str, partition: int) -> str:
    return f"{topic_prefix(topic)}partition={partition}/"


def partition_of(key: str) -> str:
    """The partition prefix of an object key: the unit a per-partition cursor moves in."""
    return key.rsplit("/", 1)[0] + "/"


def count_records(data: bytes) -> int:
    """Records in a sink object: one JSON document per non-blank line."""
    return sum(1 for line in data.splitlines() if line.strip())


def object_key(topic: str, partition: int, start_offset: int) -> str:
    return f"{partition_prefix(topic, partition)}{topic}+{partition}+{start_offset:010d}.json"


def parse_object_key(key: str) -> SinkKey | None:
    """The topic, partition and start offset of a sink key; None for any other key."""
    m = _KEY.match(key)
    if not m:
        return None
    return SinkKey(m["topic"], int(m["partition"]), int(m["offset"]))
