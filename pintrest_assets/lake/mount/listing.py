"""Listing a topic's new sink objects, partition by partition, after a per-partition cursor."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pintrest_assets.bucket import Bucket, LocalBucket, ObjectInfo, list_directory
from pintrest_assets.kafka.sink_layout import topic_prefix

# The partition "directories" the sink writes under ``topics/<topic>/``.
_PARTITION_DIR = re.compile(r"/partition=\d+/$")

# S3 answers one ListObjectsV2 page with at most 1,000 keys.
_MAX_PAGE = 1000


@dataclass(frozen=True)
class NewObjects:
    """Objects listed after a per-partition cursor, in key order within each partition (partitions
    in key order), possibly cut short by a limit."""

    objects: tuple[ObjectInfo, ...]
    last_keys: dict[str, str]  # partition prefix -> last key listed, for partitions with new objects

    @property
    def newest_key(self) -> str | None:
        return self.objects[-1].key if self.objects else None


def list_new_objects(bucket: Bucket, topic: str, since: Mapping[str, str], limit: int | None = None) -> NewObjects:
    """The topic's objects after ``since`` (partition prefix -> last key seen), partition by partition.

    Each partition is listed after its last key seen (S3's ``StartAfter``), so the cost grows with
    the new objects only: sink keys grow with the offset within a partition, so nothing lands
    behind a partition's cursor. Without ``limit`` a partition is listed in one pass; with it, in
    pages no larger than what the limit still allows.
    """
    objects: list[ObjectInfo] = []
    last_keys: dict[str, str] = {}
    for prefix in bucket.list_prefixes(topic_prefix(topic)):
        if not _PARTITION_DIR.search(prefix):
            continue
        start_after = since.get(prefix)
        if limit is None:
            if isinstance(bucket, LocalBucket):
                found = _list_directory(bucket, prefix, start_after)
            else:
                found = list(bucket.list(prefix, start_after=start_after))
            objects.extend(found)
            if found:
                last_keys[prefix] = found[-1].key
            continue
        while True:
            room = min(_MAX_PAGE, limit - len(objects))
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


def _list_directory(bucket: LocalBucket, prefix: str, start_after: str | None) -> list[ObjectInfo]:
    """A partition of a local-directory bucket, from its directory alone: the sink writes a
    partition's objects right in it, and ``LocalBucket.list``'s walk and key-by-key generator are
    a good part of the time of a sync of 50,000 objects. Listed as ``LocalBucket.list`` lists a
    directory (twice: see ``list_directory``); ETags as ``LocalBucket`` makes them."""
    found = []
    for entry in list_directory(bucket.root / prefix, prefix, start_after=start_after):
        st = entry.stat()
        found.append(ObjectInfo(key=prefix + entry.name, size=st.st_size, etag=f"{st.st_size:x}-{st.st_mtime_ns:x}"))
    found.sort(key=lambda o: o.key)
    return found
