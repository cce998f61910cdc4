"""Fixtures for the lake tests: an S3 HTTP API (moto's server) and sink objects with real content."""

import collections
import json
import logging
import uuid

import boto3
import pytest
from dagster_aws.s3 import S3Resource
from moto.server import ThreadedMotoServer

from pintrest_assets.bucket import Bucket, S3Bucket
from pintrest_assets.sink_layout import object_key

# S3 requests sent by CountingS3Resource clients, by operation ("ListObjectsV2", "GetObject", ...),
# plus "keys listed": the keys ListObjectsV2 answers returned.
_S3_REQUESTS: collections.Counter = collections.Counter()


def _count_request(model, parsed=None, **_):
    _S3_REQUESTS[model.name] += 1
    if model.name == "ListObjectsV2" and isinstance(parsed, dict):
        _S3_REQUESTS["keys listed"] += len(parsed.get("Contents", []))


class CountingS3Resource(S3Resource):
    """An S3Resource whose clients count the requests they send."""

    def get_client(self):
        client = super().get_client()
        client.meta.events.register("after-call.s3.*", _count_request)
        return client


@pytest.fixture(scope="session")
def moto_endpoint_url():
    """A moto S3 server on a free loopback port, for the whole session (each test makes its own bucket)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_requests():
    """The S3 requests sent by ``s3_resource`` clients since the test began (reset with ``.clear()``)."""
    _S3_REQUESTS.clear()
    return _S3_REQUESTS


@pytest.fixture
def s3_resource(moto_endpoint_url, s3_requests):
    return CountingS3Resource(
        endpoint_url=moto_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        max_attempts=1,
    )


@pytest.fixture
def s3_bucket(moto_endpoint_url) -> S3Bucket:
    """A new, empty bucket on the moto server, written through a client that is not counted."""
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = f"lake-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return S3Bucket(client, name)


def _record(topic: str, index: int) -> dict:
    """A record value as the emulator sends it, for the topic's kind (pin, geo or user)."""
    kind = topic.rsplit(".", 1)[-1]
    if kind == "pin":
        return {
            "index": index,
            "unique_id": str(uuid.UUID(int=index)),
            "title": "No Title Data Available",
            "description": "Ideas for a \u2728 sparkly \u2728 living room",
            "poster_name": "Home Decor Ideas ",
            "follower_count": "26k",
            "tag_list": "Living Room,Decor,Ideas",
            "is_image_or_video": "image",
            "image_src": "https://i.pinimg.com/originals/aa/bb/cc.jpg",
            "downloaded": 1,
            "save_location": "Local save in /data/home-decor",
            "category": "home-decor",
        }
    if kind == "geo":
        return {
            "ind": index,
            "timestamp": "2019-03-04 05:06:07",
            "latitude": -12.5,
            "longitude": 130.25,
            "country": "Cote d'Ivoire",
        }
    return {"ind": index, "first_name": "Ada", "last_name": "Lovelace", "age": 36, "date_joined": "2016-01-02 03:04:05"}


@pytest.fixture
def bucket_land():
    """``land(bucket, topic, start_offset, records=1, partition=0) -> key``: one sink object of
    ``records`` NDJSON lines (offsets start_offset.. of the partition), as the S3 sink writes it."""

    def land(bucket: Bucket, topic: str, start_offset: int, records: int = 1, partition: int = 0) -> str:
        key = object_key(topic, partition, start_offset)
        lines = (json.dumps(_record(topic, start_offset + i)) + "\n" for i in range(records))
        bucket.put(key, "".join(lines).encode())
        return key

    return land
