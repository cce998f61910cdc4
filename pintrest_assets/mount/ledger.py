"""A topic's mount state: its manifest (where it is mounted from and to, each partition's last key
mounted, running totals) and its ledger (every batch file and the objects in it), under a lock.

Files, under ``<mount_dir>/.mount/``:
- ``<topic>.json``: the manifest, replaced atomically after each sync.
- ``<topic>.batches.jsonl``: the ledger, one line per batch file, appended after the file is
  written: ``{"batch": name, "objects": [[key, size, etag, records], ...]}``.
- ``<topic>.lock``: a ``filelock`` lock: a sensor run and a click in the UI may mount the same
  topic at once.

A sync that dies before its manifest is saved lists the same objects again next time; the ledger
then holds a key twice, and its latest line wins.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from pintrest_assets.files import write_atomically
from pintrest_assets.mount.batch_files import BatchObject
from pintrest_assets.sink_layout import partition_of

# 2: objects gathered into batch files (1 kept one file per object, or read the bucket in place).
MANIFEST_VERSION = 2


@dataclass(frozen=True)
class MountedObject:
    key: str
    batch: str  # the batch file holding its lines, where Spark reads it
    batch_objects: int  # objects in that batch file
    size: int
    etag: str
    records: int  # non-blank lines: one JSON record value per line


class TopicLedger:
    """A topic's manifest and ledger in ``mount_dir``."""

    def __init__(self, mount_dir: str | os.PathLike, topic: str):
        self.topic = topic
        state_dir = Path(mount_dir) / ".mount"
        self.manifest_path = state_dir / f"{topic}.json"
        self.ledger_path = state_dir / f"{topic}.batches.jsonl"
        self._lock = FileLock(state_dir / f"{topic}.lock", thread_local=False)

    def locked(self) -> FileLock:
        self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        return self._lock

    def empty_manifest(self, bucket_url: str, location: str) -> dict:
        return {
            "version": MANIFEST_VERSION,
            "topic": self.topic,
            "bucket": bucket_url,
            "location": location,  # the batch files' directory; a mount is only valid there
            "last_keys": {},
            "newest_key": None,
            "objects": 0,
            "records": 0,
            "bytes": 0,
            "batch_files": 0,
        }

    def load_manifest(self) -> dict | None:
        """The manifest; None when there is none, or one of an older mount format."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None
        if manifest.get("version") != MANIFEST_VERSION:
            return None  # mounted by an earlier version: mounted again from the bucket
        return manifest

    def save_manifest(self, manifest: dict) -> None:
        write_atomically(self.manifest_path, json.dumps(manifest, indent=1).encode())

    def append(self, batches: Iterable[tuple[str, list[BatchObject]]]) -> None:
        lines = [
            json.dumps({"batch": name, "objects": [[o.key, o.size, o.etag, o.records] for o in objects]}) + "\n"
            for name, objects in batches
        ]
        if lines:
            with open(self.ledger_path, "a") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())

    def objects_after(self, after: Mapping[str, str], partitions: Iterable[str], location: str) -> list[MountedObject]:
        """The objects whose key sorts after ``after`` (partition prefix -> key) in its partition,
        in key order, each in the batch file of its latest ledger line.

        Within a partition the ledger is in key order (each sync mounts keys after the last one
        mounted), so reading it from its end can stop once every partition in ``partitions`` has
        reached its key in ``after``: a reader that keeps its own cursor pays for what is new.
        """
        pending = set(partitions)  # partitions whose cursor has not been reached yet
        found: dict[str, MountedObject] = {}
        for line in _lines_backwards(self.ledger_path):
            entry = json.loads(line)
            batch, objects = f"{location}/{entry['batch']}", entry["objects"]
            for key, size, etag, records in reversed(objects):
                partition = partition_of(key)
                if key > after.get(partition, ""):
                    if key not in found:  # backwards, the first line seen is the latest
                        found[key] = MountedObject(key, batch, len(objects), size, etag, records)
                else:
                    pending.discard(partition)
            if not pending:
                break
        return sorted(found.values(), key=lambda o: o.key)

    def reset(self, location: str | None) -> None:
        """Forgets everything mounted, and the batch files in ``location``."""
        if location:
            shutil.rmtree(location, ignore_errors=True)
        self.ledger_path.unlink(missing_ok=True)
        self.manifest_path.unlink(missing_ok=True)
        # The ledger of one file per object that mounts of manifest version 1 kept.
        self.manifest_path.with_name(f"{self.topic}.objects.jsonl").unlink(missing_ok=True)


def _lines_backwards(path: Path, block_size: int = 1 << 20) -> Iterator[bytes]:
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
