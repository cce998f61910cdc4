"""A topic's mount state: its manifest (where it is mounted from and to, each partition's last key
mounted, what was released, running totals) and its ledger (every batch still mounted, with a
summary of its objects), under a lock.

Files, under ``<mount_dir>/.mount/``:
- ``<topic>.json``: the manifest, replaced atomically at the end of each sync: the sync's commit.
  It names the ledger file (``ledger``) and records how long it was then (``ledger_bytes``).
- ``<topic>.batches[.<generation>].jsonl``: the ledger, one line per batch, in the order they
  were written: ``{"batch": name, "objects": n, "records": r, "parsed": p, "residue": l,
  "partitions": {prefix: [first key, last key]}}``.
- ``<topic>.lock``: a ``filelock`` lock: a sensor run and a click in the UI may mount the same
  topic at once.

A sync that dies before its manifest is saved may leave ledger lines past ``ledger_bytes``: they
are cut off before the next sync and never read, and the sync lists the same objects again. So
the ledger holds each key once, and within a partition in key order.

Batches are released once their reader has committed them (``release``): their files are
deleted and their ledger lines dropped (the ledger is written anew, as the next generation, and
the manifest switched to it), and ``released`` keeps, per partition, the last key released. A
reader whose cursor is behind that (its table was deleted) finds the mount re-mounted from the
bucket (``S3MountResource.select``): the mount holds the new work, not a second copy of the bucket.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from pintrest_assets.files import write_atomically
from pintrest_assets.lake.statistics import merge_stats
from pintrest_assets.lake.mount.batch_files import BatchSlice, WrittenBatch, load_objects
from pintrest_assets.kafka.sink_layout import partition_of

# 3: records parsed on mount, batches released once read (2 kept every line as text, and every
# batch; 1 kept one file per object, or read the bucket in place).
MANIFEST_VERSION = 3


@dataclass(frozen=True)
class MountedSelection:
    """Mounted objects a reader asked for, as the batch files that hold them."""

    slices: tuple[BatchSlice, ...] = ()  # in the order the batch files were written
    objects: int = 0
    records: int = 0  # non-blank lines: one JSON record value per line
    # Of them, the records the mount parsed in batches selected whole, and their statistics (per
    # column, as ``lake.statistics`` keeps them); those of batches selected in part are not counted.
    parsed: int = 0
    parsed_stats: dict = field(default_factory=dict)
    last_keys: dict[str, str] = field(default_factory=dict)  # partition prefix -> last key selected

    def keys(self) -> list[str]:
        """The selected objects' keys, in key order (reads the batch files' object lists)."""
        keys = []
        for s in self.slices:
            keys += s.keys if s.keys is not None else [o.key for o in load_objects(s.path)]
        return sorted(keys)


class TopicLedger:
    """A topic's manifest and ledger in ``mount_dir``."""

    def __init__(self, mount_dir: str | os.PathLike, topic: str):
        self.topic = topic
        state_dir = Path(mount_dir) / ".mount"
        self.manifest_path = state_dir / f"{topic}.json"
        self.ledger_path = state_dir / f"{topic}.batches.jsonl"  # the manifest's, once loaded
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
            "released": {},  # partition prefix -> last key of the batches released
            "ledger": self.ledger_path.name,
            "ledger_bytes": 0,
        }

    def load_manifest(self) -> dict | None:
        """The manifest; None when there is none, or one of an older mount format."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None
        if manifest.get("version") != MANIFEST_VERSION:
            return None  # mounted by an earlier version: mounted again from the bucket
        self.ledger_path = self.manifest_path.with_name(manifest["ledger"])
        return manifest

    def save_manifest(self, manifest: dict) -> None:
        """Commits a sync: the ledger as it is now, and the manifest's totals and keys."""
        manifest["ledger_bytes"] = self.ledger_path.stat().st_size if self.ledger_path.exists() else 0
        write_atomically(self.manifest_path, json.dumps(manifest, indent=1).encode())

    def drop_uncommitted(self, manifest: dict) -> None:
        """Cuts off ledger lines a sync wrote before it died, ahead of its manifest."""
        if self.ledger_path.exists() and self.ledger_path.stat().st_size > manifest["ledger_bytes"]:
            os.truncate(self.ledger_path, manifest["ledger_bytes"])

    def append(self, batches: Iterable[WrittenBatch]) -> None:
        lines = []
        for batch in batches:
            partitions: dict[str, list[str]] = {}
            for o in batch.objects:
                run = partitions.setdefault(partition_of(o.key), [o.key, o.key])
                run[1] = o.key  # in key order within a partition
            summary = {
                "batch": batch.name,
                "objects": len(batch.objects),
                "records": sum(o.records for o in batch.objects),
                "parsed": batch.parsed,
                "residue": batch.residue,
                "stats": batch.stats,
            }
            lines.append(json.dumps({**summary, "partitions": partitions}) + "\n")
        if lines:
            with open(self.ledger_path, "a") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())

    def select_after(self, manifest: dict, after: Mapping[str, str], location: str) -> MountedSelection:
        """The objects whose key sorts after ``after`` (partition prefix -> key) in its partition.

        Within a partition the ledger is in key order (each sync mounts keys after the last one
        mounted), so reading it from its end can stop once every partition has reached its key
        in ``after``: a reader that keeps its own cursor pays for what is new. A batch file whose
        objects are all new is taken whole from its ledger line; one that straddles a cursor
        (rare: readers move over whole syncs) is filtered by key from its object list.
        """
        pending = set(manifest["last_keys"])  # partitions whose cursor has not been reached yet
        slices: list[BatchSlice] = []
        objects = records = parsed = 0
        parsed_stats: dict = {}
        last_keys: dict[str, str] = {}
        for line in _lines_backwards(self.ledger_path, end=manifest["ledger_bytes"]):
            entry = json.loads(line)
            path = f"{location}/{entry['batch']}"
            whole, none = True, True
            for partition, (first, last) in entry["partitions"].items():
                cursor = after.get(partition, "")
                if first <= cursor:
                    pending.discard(partition)
                    whole = False
                if last > cursor:
                    none = False
                    last_keys.setdefault(partition, last)  # backwards: the first seen is the last
            has = {"parsed": entry["parsed"] > 0, "residue": entry["residue"] > 0}
            if whole:
                slices.append(BatchSlice(path, None, **has))
                objects, records = objects + entry["objects"], records + entry["records"]
                parsed += entry["parsed"]
                parsed_stats = merge_stats(parsed_stats, entry["stats"])
            elif not none:
                wanted = [o for o in load_objects(path) if o.key > after.get(partition_of(o.key), "")]
                slices.append(BatchSlice(path, tuple(o.key for o in wanted), **has))
                objects, records = objects + len(wanted), records + sum(o.records for o in wanted)
            if not pending:
                break
        return MountedSelection(tuple(reversed(slices)), objects, records, parsed, parsed_stats, last_keys)

    def behind(self, manifest: dict, after: Mapping[str, str]) -> bool:
        """Whether a reader at ``after`` needs objects whose batches were released."""
        return any(after.get(p, "") < key for p, key in manifest.get("released", {}).items())

    def release(self, manifest: dict, through: Mapping[str, str], location: str) -> int:
        """Deletes the batches whose every object is at or before ``through`` (partition prefix
        -> key) in its partition: a reader committed them. Returns how many.

        The manifest is switched to a new ledger without them before their files go: a crash
        in between leaves files no ledger line names, which the next release deletes.
        """
        kept: list[bytes] = []
        released = dict(manifest.get("released", {}))
        gone = 0
        for line in _lines_forwards(self.ledger_path, end=manifest["ledger_bytes"]):
            entry = json.loads(line)
            ranges = entry["partitions"].items()
            if ranges and all(last <= through.get(p, "") for p, (_, last) in ranges):
                gone += 1
                for p, (_, last) in ranges:
                    released[p] = max(last, released.get(p, ""))
            else:
                kept.append(line + b"\n")
        if gone:
            old = self.ledger_path
            generation = int(manifest.get("ledger_generation", 0)) + 1
            self.ledger_path = self.manifest_path.with_name(f"{self.topic}.batches.{generation}.jsonl")
            write_atomically(self.ledger_path, b"".join(kept))
            manifest.update(ledger=self.ledger_path.name, ledger_generation=generation, released=released)
            self.save_manifest(manifest)
            old.unlink(missing_ok=True)
        # Files of released batches, and of syncs that died before their manifest.
        named = {json.loads(line)["batch"] for line in kept}
        with os.scandir(location) if os.path.isdir(location) else contextlib.nullcontext([]) as entries:
            for file in entries:
                if file.name.lstrip(".").startswith("batch-") and file.name.lstrip(".").split(".", 1)[0] not in named:
                    Path(file.path).unlink(missing_ok=True)
        return gone

    def reset(self, location: str | None) -> None:
        """Forgets everything mounted, and the batch files in ``location``."""
        if location:
            shutil.rmtree(location, ignore_errors=True)
        for ledger in self.manifest_path.parent.glob(f"{self.topic}.batches*.jsonl"):
            ledger.unlink(missing_ok=True)
        self.manifest_path.unlink(missing_ok=True)
        self.ledger_path = self.manifest_path.with_name(f"{self.topic}.batches.jsonl")
        # The ledger of one file per object that mounts of manifest version 1 kept.
        self.manifest_path.with_name(f"{self.topic}.objects.jsonl").unlink(missing_ok=True)


def _lines_forwards(path: Path, end: int) -> Iterator[bytes]:
    """The non-empty lines of a file up to byte ``end``, first first."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        yield from (line for line in f.read(end).split(b"\n") if line)


def _lines_backwards(path: Path, end: int | None = None, block_size: int = 1 << 16) -> Iterator[bytes]:
    """The non-empty lines of a file up to byte ``end`` (default: all of it), last first, reading
    it in blocks from that end."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END) if end is None else end
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
