"""The bucket mounted for Spark: the ``dbutils.fs.mount`` of the original, as a resource.

A sync lists the topic's new objects (``mount.listing``), reads each once (from S3, several at a
time; from a local-directory bucket, in place) to count its records, and gathers them into a few
batch files under ``<mount_dir>/topics/<topic>/`` (``mount.batch_files``): the records parsed
with the topic's schema as parquet, the lines left for Spark's parser as text. Spark reads them
instead of one file per object. The ledger (``mount.ledger``) records which batch holds which
objects, so a reader with its own cursor finds the new objects' files, and ``release`` deletes
the batches a reader has committed: the mount keeps what is not read yet. A reader behind what
was released (its table deleted) gets the topic mounted again from the bucket.

Syncs are incremental: the manifest keeps, per partition, the last key mounted, and a sync lists
each partition after that key, so its cost grows with what is new, not with the bucket. The
batch files must be where Spark runs: on a cluster, ``mount_dir`` is a directory the cluster
and Dagster both reach.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from pintrest_assets.bucket import Bucket, LocalBucket, ObjectInfo, S3Bucket, open_bucket
from pintrest_assets.lake.mount.batch_files import BatchObject, BatchWriter
from pintrest_assets.lake.mount.ledger import MountedSelection, TopicLedger
from pintrest_assets.lake.mount.listing import NewObjects, list_new_objects
from pintrest_assets.settings import ConfigError, redact_url
from pintrest_assets.kafka.sink_layout import partition_of, topic_prefix
from pintrest_assets.topics import TOPICS, TopicSpec, is_valid_topic_name

__all__ = ["MountedSelection", "NewObjects", "S3MountResource", "TopicMount"]

# S3 GETs are latency-bound: several in flight at once. botocore keeps 10 connections per
# client, so more threads would only wait for one.
S3_FETCH_THREADS = 10
# Objects fetched before their lines go to the batch writer: bounds the memory of a big sync.
_FETCH_CHUNK = 2000


@dataclass(frozen=True)
class TopicMount:
    """A topic's objects as Spark reads them, after a sync."""

    topic: str
    root: str  # the directory of the topic's batch files
    new: tuple[BatchObject, ...]  # mounted by this sync
    new_batch_files: int  # written by this sync
    objects: int  # totals over everything mounted so far
    records: int
    bytes: int
    newest_key: str | None  # the last key mounted (in key order, by the latest sync that found any)
    fetch_threads: int  # objects fetched at once by this sync (1: a local directory, read in place)

    @property
    def new_records(self) -> int:
        return sum(o.records for o in self.new)

    @property
    def new_bytes(self) -> int:
        return sum(o.size for o in self.new)


class S3MountResource(dg.ConfigurableResource):
    """The bucket the S3 sink writes, mounted where Spark can read it.

    ``bucket_url`` is a directory or ``s3://bucket[/prefix]`` (read through ``s3``, whose
    ``endpoint_url`` points at S3-compatible stores). New objects are gathered into batch files
    in ``mount_dir``.
    """

    bucket_url: str = Field(description="A directory, or s3://bucket[/prefix].")
    mount_dir: str = Field(description="Directory of the batch files Spark reads, and of the mount's ledger.")
    user_id: str = Field(description="The user id of the topics: '<user_id>.pin' and so on.")
    s3: S3Resource | None = Field(default=None, description="S3 client settings; None uses boto3's defaults.")

    # One client per resource instance: creating a boto3 client costs more than a listing.
    _bucket: Bucket | None = PrivateAttr(default=None)

    def topic_for(self, spec: TopicSpec) -> str:
        """The topic's Kafka name for this user, e.g. ``<user_id>.pin``."""
        return spec.topic(self.user_id)

    def bucket(self) -> Bucket:
        if self._bucket is None:
            if self.bucket_url.startswith("s3://"):
                client = (self.s3 or S3Resource()).get_client()
                self._bucket = open_bucket(self.bucket_url, s3_client=client)
            else:
                self._bucket = LocalBucket(self.bucket_url)
        return self._bucket

    def topic_root(self, topic: str) -> str:
        """The directory of the topic's batch files."""
        return str(Path(self.mount_dir).resolve() / topic_prefix(_checked(topic))).rstrip("/")

    def new_objects(self, topic: str, since: Mapping[str, str], limit: int | None = None) -> NewObjects:
        """Objects of ``topic`` after ``since`` (partition prefix -> last key seen), at most ``limit``."""
        with self._s3_errors():
            return list_new_objects(self.bucket(), _checked(topic), since, limit)

    def mount_topic(self, topic: str) -> TopicMount:
        """Bring the topic's new objects into the mount's batch files; return what is mounted."""
        bucket = self.bucket()
        ledger = TopicLedger(self.mount_dir, _checked(topic))
        root = self.topic_root(topic)
        with self._s3_errors(), ledger.locked():
            manifest = ledger.load_manifest()
            if manifest is None or (manifest["bucket"], manifest["location"]) != (bucket.url, root):
                # Never mounted, mounted by an earlier version, or from another bucket or to
                # another directory: mounted from scratch.
                ledger.reset(root)
                manifest = ledger.empty_manifest(bucket.url, root)
            new, batches = self._sync(ledger, manifest, topic)

        return TopicMount(
            topic=topic,
            root=root,
            new=new,
            new_batch_files=len(batches),
            objects=manifest["objects"],
            records=manifest["records"],
            bytes=manifest["bytes"],
            newest_key=manifest["newest_key"],
            fetch_threads=self._threads(bucket),
        )

    def _sync(
        self, ledger: TopicLedger, manifest: dict, topic: str, through: Mapping[str, str] | None = None
    ) -> tuple[tuple[BatchObject, ...], list]:
        """Mounts the objects after the manifest's last keys (only those up to ``through``, when
        given) and saves the manifest; returns the objects mounted and the batches written."""
        bucket = self.bucket()
        root = manifest["location"]
        ledger.drop_uncommitted(manifest)
        listed = list_new_objects(bucket, topic, since=manifest["last_keys"])
        objects = listed.objects
        last_keys = listed.last_keys
        if through is not None:
            objects = tuple(o for o in objects if o.key <= through.get(partition_of(o.key), ""))
            last_keys = {partition_of(o.key): o.key for o in objects}  # in key order within a partition
        writer = BatchWriter(root, sequence=manifest["batch_files"], **self._parsing(topic))
        threads = self._threads(bucket)
        for start in range(0, len(objects), _FETCH_CHUNK):
            chunk = objects[start : start + _FETCH_CHUNK]
            for info, data in zip(chunk, _fetch(bucket, chunk, threads)):
                writer.add(info.key, info.etag, data)
        batches = writer.close()
        ledger.append(batches)

        new = tuple(o for batch in batches for o in batch.objects)
        manifest["last_keys"].update(last_keys)
        manifest["objects"] += len(new)
        manifest["records"] += sum(o.records for o in new)
        manifest["bytes"] += sum(o.size for o in new)
        if objects:
            manifest["newest_key"] = objects[-1].key
        manifest["batch_files"] += len(batches)
        ledger.save_manifest(manifest)
        return new, batches

    def _parsing(self, topic: str) -> dict:
        """How the topic's records are parsed on mount: its schema and index column, if known."""
        for spec in TOPICS:
            if spec.topic(self.user_id) == topic:
                from pintrest_assets.lake.schemas import arrow_schema

                return {"schema": arrow_schema(spec.name), "key_column": spec.index_column}
        return {}

    @staticmethod
    def _threads(bucket: Bucket) -> int:
        return S3_FETCH_THREADS if isinstance(bucket, S3Bucket) else 1

    def select(self, topic: str, after: Mapping[str, str] | None = None) -> MountedSelection:
        """What is mounted for ``topic``, as batch files: everything, or only the objects whose
        key sorts after ``after`` (partition prefix -> key) in their partition.

        With ``after``, the ledger is read from its end and only as far back as ``after`` reaches:
        a reader that keeps its own cursor pays for the batch files that are new, not for the
        history, nor for each object in them. A reader behind what was released (its table was
        deleted, and reads from the start) gets the topic mounted again from the bucket, as far
        as it was mounted: the same objects, read once more.
        """
        ledger = TopicLedger(self.mount_dir, _checked(topic))
        root = self.topic_root(topic)
        with self._s3_errors(), ledger.locked():
            manifest = ledger.load_manifest()
            if manifest is None or (manifest["bucket"], manifest["location"]) != (self.bucket().url, root):
                return MountedSelection()
            if ledger.behind(manifest, after or {}):
                mounted_through = dict(manifest["last_keys"])
                ledger.reset(root)
                manifest = ledger.empty_manifest(self.bucket().url, root)
                self._sync(ledger, manifest, topic, through=mounted_through)
            return ledger.select_after(manifest, after or {}, location=root)

    def release(self, topic: str, through: Mapping[str, str]) -> int:
        """Deletes the batch files of the objects at or before ``through`` (partition prefix ->
        key): call it once a reader's commit of them is durable. Returns the batches deleted."""
        ledger = TopicLedger(self.mount_dir, _checked(topic))
        root = self.topic_root(topic)
        with ledger.locked():
            manifest = ledger.load_manifest()
            if manifest is None or manifest["location"] != root:
                return 0
            return ledger.release(manifest, through, location=root)

    @contextlib.contextmanager
    def _s3_errors(self) -> Iterator[None]:
        """S3 failures that a setting can fix, as a ``ConfigError`` naming that setting."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        endpoint = self.s3.endpoint_url if self.s3 else None
        where = redact_url(endpoint) if endpoint else "AWS S3"
        try:
            yield
        except (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError) as exc:
            # botocore's message repeats the request URL: the setting's own value, redacted, says enough.
            if endpoint:
                raise ConfigError("PINTREST_S3_ENDPOINT_URL", f"cannot reach {where} ({type(exc).__name__})") from None
            raise ConfigError(
                "PINTREST_BUCKET", f"cannot reach S3 for {self.bucket_url} ({type(exc).__name__})"
            ) from None
        except NoCredentialsError:
            raise ConfigError(
                "PINTREST_BUCKET", f"no AWS credentials for {self.bucket_url} (set AWS_PROFILE or AWS_ACCESS_KEY_ID)"
            ) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise ConfigError("PINTREST_BUCKET", f"{self.bucket_url}: no such bucket at {where}") from None
            if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}:
                raise ConfigError("PINTREST_BUCKET", f"{self.bucket_url}: {where} refused access ({code})") from None
            raise


def _fetch(bucket: Bucket, objects: Sequence[ObjectInfo], threads: int) -> Iterator[bytes]:
    """Each object's bytes, in order: several GETs in flight from S3, one read at a time from a
    directory (a local read is faster than handing it to a thread)."""
    if isinstance(bucket, LocalBucket):
        # The keys come from the directory's own listing: read them in place without the
        # per-key path resolution of ``LocalBucket.get`` (most of a 50,000-object sync's time).
        root = str(bucket.root)
        return (_read(os.path.join(root, o.key), o.size) for o in objects)
    if threads <= 1 or len(objects) <= 1:
        return (bucket.get(o.key) for o in objects)
    with ThreadPoolExecutor(max_workers=min(threads, len(objects))) as pool:
        return iter(list(pool.map(lambda o: bucket.get(o.key), objects)))


def _read(path: str, size: int) -> bytes:
    """A file's bytes, ``size`` as listed: one read call and no file object for a small file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        chunks = [data]  # it grew since it was listed
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _checked(topic: str) -> str:
    # The topic names files in the mount: nothing but a Kafka topic name may get there.
    if not is_valid_topic_name(topic):
        raise ValueError(f"{topic!r} is not a Kafka topic name")
    return topic
