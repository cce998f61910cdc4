"""Helpers for the gateway tests: media types, producing through the v2 API, reading what landed,
and waiting for a condition."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from pintrest_assets.bucket import Bucket
from pintrest_assets.sink_layout import parse_object_key, partition_prefix

JSON_V2 = "application/vnd.kafka.json.v2+json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"
REPO = Path(__file__).resolve().parents[2]


def produce(url: str, topic: str, values: list, content_type: str = JSON_V2, session=None) -> requests.Response:
    """POST the values as one v2 produce request."""
    body = json.dumps({"records": [{"value": v} for v in values]})
    return (session or requests).post(f"{url}/topics/{topic}", data=body, headers={"Content-Type": content_type})


def landed_objects(bucket: Bucket, topic: str) -> list[tuple[int, list]]:
    """The topic's objects in key order: (start offset, the JSON values of its lines)."""
    objects = []
    for info in bucket.list(partition_prefix(topic, 0)):
        key = parse_object_key(info.key)
        assert key is not None and key.topic == topic, info.key
        data = bucket.get(info.key)
        assert data.endswith(b"\n"), info.key
        objects.append((key.start_offset, [json.loads(line) for line in data.decode().splitlines()]))
    return objects


def wait_until(condition, timeout: float = 10.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {condition}")
        time.sleep(interval)
    return result
