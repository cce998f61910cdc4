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


def partition_prefix(topic: str, partition: int) -> str:
    return f"topics/{topic}/partition={partition}/"


def object_key(topic: str, partition: int, start_offset: int) -> str:
    return f"{partition_prefix(topic, partition)}{topic}+{partition}+{start_offset:010d}.json"


def parse_object_key(key: str) -> SinkKey | None:
    """The topic, partition and start offset of a sink key; None for any other key."""
    m = _KEY.match(key)
    if not m:
        return None
    return SinkKey(m["topic"], int(m["partition"]), int(m["offset"]))
