"""The bucket mounted for Spark: the ``dbutils.fs.mount`` of the original, as a resource.

A local-directory bucket is read in place. An S3 bucket is synced into ``mount_dir``, keys kept
as paths (``<mount_dir>/topics/<topic>/partition=0/<topic>+0+0000000042.json``), because Spark
here cannot read ``s3a://``. On a cluster that can, ``mode="direct"`` hands Spark the bucket
URL instead (``s3a://bucket/prefix/topics/<topic>/...``): new objects are still read once, to
count their records, but nothing is copied.

Syncs are incremental. The sink's keys grow with the offset within a topic-partition, so a
per-topic manifest (``<mount_dir>/.mount/<topic>.json``) keeps, per partition, the last key
mounted, and a sync lists each partition with ``StartAfter`` that key: its cost grows with what
is new, not with the bucket. Every mounted object (key, size, ETag, records) is appended to a
ledger next to it (``<topic>.objects.jsonl``), which a full check compares ETags against.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from pintrest_assets.bucket import Bucket, LocalBucket, ObjectInfo, S3Bucket, open_bucket
from pintrest_assets.files import write_atomically
from pintrest_assets.settings import ConfigError, redact_url
from pintrest_assets.sink_layout import count_records, partition_of, topic_prefix
from pintrest_assets.topics import TopicSpec, is_valid_topic_name

# The partition "directories" the sink writes under ``topics/<topic>/``.
_PARTITION_DIR = re.compile(r"/partition=\d+/$")

# S3 answers one ListObjectsV2 page with at most 1,000 keys.
_MAX_PAGE = 1000

# Downloads are latency-bound: a few in flight at once, without crowding a 2-core machine.
_DOWNLOAD_THREADS = 8

_MANIFEST_VERSION = 1


@dataclass(frozen=True)
class MountedObject:
    key: str
    path: str  # where Spark reads it: a local path, or an s3a:// URL in direct mode
    size: int
    etag: str
    records: int  # non-blank lines: one JSON record value per line


@dataclass(frozen=True)
class NewObjects:
    """Objects listed after a per-partition cursor, in key order within each partition (partitions
    in key order), possibly cut short by a limit."""

    objects: tuple[ObjectInfo, ...]
    last_keys: dict[str, str]  # partition prefix -> last key listed, for partitions with new objects

    @property
    def newest_key(self) -> str | None:
        return self.objects[-1].key if self.objects else None


@dataclass(frozen=True)
class TopicMount:
    """A topic's objects as Spark reads them, after a sync."""

    topic: str
    root: str  # the topic's directory (or s3a:// URL): ``.../topics/<topic>``
    new: tuple[MountedObject, ...]  # mounted by this sync
    objects: int  # totals over everything mounted so far
    records: int
    bytes: int
    newest_key: str | None  # the last key mounted (in key order, by the latest sync that found any)
    partition_dirs: tuple[str, ...]

    @property
    def new_records(self) -> int:
        return sum(o.records for o in self.new)

    @property
    def new_bytes(self) -> int:
        return sum(o.size for o in self.new)

    def local_path(self, key: str) -> str:
        """Where Spark reads the object with this key."""
        if not key.startswith(topic_prefix(self.topic)):
            raise ValueError(f"{key!r} is not an object of topic {self.topic!r}")
        return _path_in(self.root, self.topic, key)


class S3MountResource(dg.ConfigurableResource):
    """The bucket the S3 sink writes, mounted where Spark can read it.

    ``bucket_url`` is a directory (read in place) or ``s3://bucket[/prefix]`` (synced into
    ``mount_dir`` through ``s3``, whose ``endpoint_url`` points at S3-compatible stores).
    """

    bucket_url: str = Field(description="A directory, or s3://bucket[/prefix].")
    mount_dir: str = Field(description="Local directory for synced objects and the mount manifests.")
    user_id: str = Field(description="The user id of the topics: '<user_id>.pin' and so on.")
    s3: S3Resource | None = Field(default=None, description="S3 client settings; None uses boto3's defaults.")
    mode: Literal["sync", "direct"] = Field(
        default="sync",
        description="'sync' copies new S3 objects into mount_dir; 'direct' hands Spark s3a:// URLs "
        "(for a cluster with hadoop-aws).",
    )

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

    def new_objects(self, topic: str, since: Mapping[str, str], limit: int | None = None) -> NewObjects:
        """Objects of ``topic`` after ``since`` (partition prefix -> last key seen), at most ``limit``."""
        with self._s3_errors():
            return list_new_objects(self.bucket(), _checked(topic), since, limit)

    def mount_topic(self, topic: str, full_check: bool = False) -> TopicMount:
        """Bring the topic's new objects into the mount and return where Spark reads them.

        Incremental by default: only keys after each partition's last mounted key are listed
        and fetched. ``full_check`` lists the whole topic instead and fetches every object whose
        ETag differs from the one mounted (and forgets objects gone from the bucket).
        """
        bucket = self.bucket()
        state = _TopicState(Path(self.mount_dir), _checked(topic))
        root = self._topic_root(bucket, topic)
        copies = isinstance(bucket, S3Bucket) and self.mode == "sync"
        with self._s3_errors(), state.locked():
            manifest = state.load_manifest()
            if manifest is not None and (manifest["bucket"], manifest["location"]) != (bucket.url, root):
                # Another bucket, mode or mount dir: mounted from scratch, dropping the copies
                # an earlier sync made (never a directory read in place).
                state.reset(remove_copies=manifest["location"] == self._copies_root(topic))
                manifest = None
            manifest = manifest or state.empty_manifest(bucket.url, root)

            if full_check:
                known = state.load_ledger()
                listed = list_new_objects(bucket, topic, since={})
                stale = [o for o in listed.objects if o.key not in known or known[o.key].etag != o.etag]
                fetched = self._fetch(bucket, topic, stale, copies)
                current = {o.key for o in listed.objects}
                if copies:
                    for key in known.keys() - current:
                        Path(self.mount_dir, key).unlink(missing_ok=True)
                kept = {k: o for k, o in known.items() if k in current}
                kept.update((o.key, o) for o in fetched)
                state.rewrite_ledger(sorted(kept.values(), key=lambda o: o.key))
                manifest.update(
                    last_keys=listed.last_keys,
                    newest_key=listed.newest_key,
                    objects=len(kept),
                    records=sum(o.records for o in kept.values()),
                    bytes=sum(o.size for o in kept.values()),
                )
            else:
                listed = list_new_objects(bucket, topic, since=manifest["last_keys"])
                fetched = self._fetch(bucket, topic, listed.objects, copies)
                state.append_ledger(fetched)
                manifest["last_keys"].update(listed.last_keys)
                manifest["objects"] += len(fetched)
                manifest["records"] += sum(o.records for o in fetched)
                manifest["bytes"] += sum(o.size for o in fetched)
                manifest["newest_key"] = listed.newest_key or manifest["newest_key"]
            state.save_manifest(manifest)

        return TopicMount(
            topic=topic,
            root=root,
            new=tuple(fetched),
            objects=manifest["objects"],
            records=manifest["records"],
            bytes=manifest["bytes"],
            newest_key=manifest["newest_key"],
            partition_dirs=tuple(_path_in(root, topic, prefix).rstrip("/") for prefix in sorted(manifest["last_keys"])),
        )

    def mounted_objects(self, topic: str, after: Mapping[str, str] | None = None) -> list[MountedObject]:
        """What is mounted for ``topic``, in key order: everything, or only the objects whose key
        sorts after ``after`` (partition prefix -> key) in their partition.

        With ``after``, the ledger is read from its end and only as far back as ``after`` reaches:
        a reader that keeps its own cursor pays for what is new, not for the history.
        """
        state = _TopicState(Path(self.mount_dir), _checked(topic))
        bucket = self.bucket()
        root = self._topic_root(bucket, topic)
        with state.locked():
            manifest = state.load_manifest()
            if manifest is None or (manifest["bucket"], manifest["location"]) != (bucket.url, root):
                return []
            entries = state.load_ledger_after(after or {}, partitions=manifest["last_keys"])
        return [
            MountedObject(key=o.key, path=_path_in(root, topic, o.key), size=o.size, etag=o.etag, records=o.records)
            for o in entries
        ]

    def _fetch(self, bucket: Bucket, topic: str, objects, copies: bool) -> list[MountedObject]:
        """Read each object once: to count its records, and to copy it into the mount when syncing."""
        root = self._topic_root(bucket, topic)

        def fetch(info: ObjectInfo) -> MountedObject:
            data = bucket.get(info.key)
            if copies:
                # Spark may be reading the mount: it must never see half an object.
                write_atomically(Path(self.mount_dir, info.key), data, fsync=False)
            return MountedObject(
                key=info.key,
                path=_path_in(root, topic, info.key),
                size=len(data),
                etag=info.etag,
                records=count_records(data),
            )

        if not objects:
            return []
        with ThreadPoolExecutor(max_workers=min(_DOWNLOAD_THREADS, len(objects))) as pool:
            return list(pool.map(fetch, objects))

    def _topic_root(self, bucket: Bucket, topic: str) -> str:
        if isinstance(bucket, LocalBucket):
            return str(bucket.root.resolve() / topic_prefix(topic)).rstrip("/")
        if self.mode == "direct":
            return f"s3a://{bucket.bucket}/{bucket.prefix}{topic_prefix(topic)}".rstrip("/")
        return self._copies_root(topic)

    def _copies_root(self, topic: str) -> str:
        return str(Path(self.mount_dir).resolve() / topic_prefix(topic))

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


def list_new_objects(bucket: Bucket, topic: str, since: Mapping[str, str], limit: int | None = None) -> NewObjects:
    """The topic's objects after ``since`` (partition prefix -> last key seen), partition by partition.

    Each partition is listed with ``StartAfter`` its last key seen, in pages no larger than what
    ``limit`` still allows, so the cost grows with the new objects only. Sink keys grow with the
    offset within a partition, so nothing lands behind a partition's cursor.
    """
    objects: list[ObjectInfo] = []
    last_keys: dict[str, str] = {}
    for prefix in bucket.list_prefixes(topic_prefix(topic)):
        if not _PARTITION_DIR.search(prefix):
            continue
        start_after = since.get(prefix)
        while True:
            room = _MAX_PAGE if limit is None else min(_MAX_PAGE, limit - len(objects))
            if room <= 0:
                return NewObjects(tuple(objects), last_keys)
            page = bucket.list_page(prefix, start_after=start_after, max_keys=room)
            if not page:
                break
            objects.extend(page)
            start_after = last_keys[prefix] = page[-1].key
            if len(page) < room:
                break
    return NewObjects(tuple(objects), last_keys)


def _checked(topic: str) -> str:
    # The topic names files in the mount: nothing but a Kafka topic name may get there.
    if not is_valid_topic_name(topic):
        raise ValueError(f"{topic!r} is not a Kafka topic name")
    return topic


def _path_in(root: str, topic: str, key: str) -> str:
    return f"{root}/{key[len(topic_prefix(topic)):]}"




@dataclass(frozen=True)
class _LedgerEntry:
    key: str
    size: int
    etag: str
    records: int


class _TopicState:
    """A topic's manifest (last keys and totals) and ledger (every object mounted), under a lock."""

    def __init__(self, mount_dir: Path, topic: str):
        self.mount_dir = mount_dir
        self.topic = topic
        state_dir = mount_dir / ".mount"
        self.manifest_path = state_dir / f"{topic}.json"
        self.ledger_path = state_dir / f"{topic}.objects.jsonl"
        self.lock_path = state_dir / f"{topic}.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        # Two runs may mount the same topic at once (a sensor run and a click in the UI).
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def empty_manifest(self, bucket_url: str, location: str) -> dict:
        return {
            "version": _MANIFEST_VERSION,
            "topic": self.topic,
            "bucket": bucket_url,
            "location": location,  # where Spark reads the topic; a mount is only valid there
            "last_keys": {},
            "newest_key": None,
            "objects": 0,
            "records": 0,
            "bytes": 0,
        }

    def load_manifest(self) -> dict | None:
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None
        if manifest.get("version") != _MANIFEST_VERSION:
            raise ValueError(f"{self.manifest_path}: unknown mount manifest version {manifest.get('version')!r}")
        return manifest

    def save_manifest(self, manifest: dict) -> None:
        write_atomically(self.manifest_path, json.dumps(manifest, indent=1).encode())

    def load_ledger(self) -> dict[str, _LedgerEntry]:
        """Key -> entry; a key written twice (a sync interrupted before its manifest) keeps its last entry."""
        entries = {}
        if self.ledger_path.exists():
            with open(self.ledger_path) as f:
                for line in f:
                    entry = _LedgerEntry(**json.loads(line))
                    entries[entry.key] = entry
        return entries

    def load_ledger_after(self, after: Mapping[str, str], partitions) -> list[_LedgerEntry]:
        """The entries whose key sorts after ``after`` in its partition, in key order.

        Within a partition the ledger is in key order (a sync appends keys after the last one
        mounted; a full check rewrites it sorted), so reading it backwards can stop once every
        partition has reached its key in ``after``.
        """
        pending = set(partitions)  # partitions whose cursor has not been reached yet
        found: dict[str, _LedgerEntry] = {}
        for line in _lines_backwards(self.ledger_path):
            if not pending:
                break
            entry = _LedgerEntry(**json.loads(line))
            partition = partition_of(entry.key)
            if entry.key > after.get(partition, ""):
                found.setdefault(entry.key, entry)  # backwards, the first entry seen is the latest
            else:
                pending.discard(partition)
        return sorted(found.values(), key=lambda o: o.key)

    def append_ledger(self, objects: list[MountedObject]) -> None:
        if objects:
            with open(self.ledger_path, "a") as f:
                f.writelines(_ledger_line(o) for o in objects)

    def rewrite_ledger(self, objects) -> None:
        write_atomically(self.ledger_path, "".join(_ledger_line(o) for o in objects).encode())

    def reset(self, remove_copies: bool) -> None:
        if remove_copies:
            shutil.rmtree(self.mount_dir / "topics" / self.topic, ignore_errors=True)
        self.ledger_path.unlink(missing_ok=True)
        self.manifest_path.unlink(missing_ok=True)


def _lines_backwards(path: Path, block_size: int = 1 << 16) -> Iterator[bytes]:
    """The non-empty lines of a file, last first, reading it in blocks from its end."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        end = f.seek(0, os.SEEK_END)
        head = b""  # the start of a line whose beginning is in the block before
        while end > 0:
            start = max(0, end - block_size)
            f.seek(start)
            lines = (f.read(end - start) + head).split(b"\n")
            head = lines.pop(0)
            yield from (line for line in reversed(lines) if line)
            end = start
        if head:
            yield head


def _ledger_line(o) -> str:
    return json.dumps({"key": o.key, "size": o.size, "etag": o.etag, "records": o.records}) + "\n"
