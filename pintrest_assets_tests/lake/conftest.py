"""Fixtures for the lake tests: an S3 HTTP API (moto's server) and sink objects with real content."""

import collections
import json
import uuid

import boto3
import pytest
from dagster_aws.s3 import S3Resource

from pintrest_assets.bucket import Bucket, S3Bucket
from pintrest_assets.kafka.sink_layout import object_key
from pintrest_assets_tests.net import free_port

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
def unreachable_s3_resource() -> S3Resource:
    """An S3Resource whose endpoint is a loopback port nothing listens on."""
    return S3Resource(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
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


# --- Spark: a local session and a lake stack on local files -------------------------------------

import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

import dagster as dg  # noqa: E402

from pintrest_assets.bucket import LocalBucket  # noqa: E402
from pintrest_assets.defs.lake.dataframes import dataframe_assets  # noqa: E402
from pintrest_assets.defs.lake.raw_json import raw_json_assets  # noqa: E402
from pintrest_assets.lake.mount.resource import S3MountResource  # noqa: E402
from pintrest_assets.lake.spark import SparkResource, spark_config  # noqa: E402
from pintrest_assets.lake.warehouse import WarehouseIOManager, WarehouseTable  # noqa: E402
from pintrest_assets.topics import TOPICS_BY_NAME  # noqa: E402

SPARK_USER_ID = "u"


@pytest.fixture
def spark_resource() -> SparkResource:
    """A local ``spark`` resource. Its session is the test process's one session (getOrCreate):
    the first test that uses Spark starts the JVM, every later test reuses it."""
    return SparkResource(spark_config={**spark_config("local[2]"), "spark.sql.shuffle.partitions": "2"})


@dataclasses.dataclass
class SparkLake:
    """A local-directory bucket, its mount, a warehouse and Spark: the lake as a run sees it."""

    bucket: LocalBucket
    s3_mount: S3MountResource
    warehouse: WarehouseIOManager
    spark: SparkResource
    instance: dg.DagsterInstance

    def topic(self, name: str) -> str:
        return self.s3_mount.topic_for(TOPICS_BY_NAME[name])

    def table(self, asset_name: str) -> WarehouseTable:
        return self.warehouse.table(asset_name)

    def resources(self, spark: SparkResource | None = None) -> dict:
        spark = spark or self.spark
        return {
            "s3_mount": self.s3_mount,
            "spark": spark,
            "warehouse_io_manager": WarehouseIOManager(base_dir=self.warehouse.base_dir, spark=spark),
        }

    def refresh(self, *names: str, spark: SparkResource | None = None, raise_on_error: bool = True):
        """Materialise the raw JSON and DataFrame assets of the named topics (all three by default),
        as a sensor-triggered run does; returns the run's result."""
        specs = [TOPICS_BY_NAME[name] for name in names or TOPICS_BY_NAME]
        wanted = {dg.AssetKey(key) for spec in specs for key in (spec.raw_asset, spec.dataframe)}
        assets = [a for a in [*raw_json_assets, *dataframe_assets] if a.key in wanted]
        return dg.materialize(
            assets, resources=self.resources(spark), instance=self.instance, raise_on_error=raise_on_error
        )

    @staticmethod
    def metadata(result, asset_name: str) -> dict:
        """The plain values of an asset's materialisation metadata in a run result."""
        [materialization] = result.asset_materializations_for_node(asset_name)
        return {k: v.value for k, v in materialization.metadata.items()}


def _make_spark_lake(root: Path, spark: SparkResource) -> SparkLake:
    # A bucket path with a space, a percent escape and a plus: Spark reports file paths
    # URI-encoded, and each rejected line must still find its object's key.
    bucket_dir = root / "the bucket %41+1"
    bucket_dir.mkdir(parents=True)
    return SparkLake(
        bucket=LocalBucket(bucket_dir),
        s3_mount=S3MountResource(bucket_url=str(bucket_dir), mount_dir=str(root / "mnt"), user_id=SPARK_USER_ID),
        warehouse=WarehouseIOManager(base_dir=str(root / "warehouse"), spark=spark),
        spark=spark,
        instance=dg.DagsterInstance.ephemeral(),
    )


@pytest.fixture(scope="session")
def spark_lake_factory():
    """``make(root, spark) -> SparkLake``: a lake stack in directory ``root`` on the given Spark."""
    return _make_spark_lake


@pytest.fixture
def spark_lake(tmp_path, spark_resource) -> SparkLake:
    """A lake stack in ``tmp_path`` on the local test Spark."""
    return _make_spark_lake(tmp_path, spark_resource)
