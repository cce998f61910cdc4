"""Batch files: the lines of many landed objects gathered into one file, each line tagged with its
object's key. Written by the mount, read by Spark (``pintrest_assets.lake.parsing``).

The original's S3 sink wrote one record per object (``flush.size`` 1), and Spark's cost is per
file opened, not per record: the mount reads every new object anyway (to count its records), so
it writes their lines into a few batch files as it goes, and Spark opens those instead of
thousands of objects.

Format: UTF-8 text, one line per record, ``<object key> TAB <the record's line, byte for byte as
it landed> LF``, objects in the order they were mounted. Keys never hold a tab or a line break,
so the first tab ends the key. Blank lines are left out: they are not records
(``sink_layout.count_records``). A batch file is written whole under a temporary name, then
renamed: a reader sees all of it or none of it, and it never changes after. Beside it,
``<name>.objects.json`` lists its objects (key, size, ETag, records), in file order.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pintrest_assets.files import write_atomically

KEY_SEPARATOR = "\t"
SUFFIX = ".tsv"
# A batch file is closed past this size: Spark splits big files across cores anyway, and a
# sync of millions of objects should not be held in memory whole.
MAX_BATCH_BYTES = 64 << 20


def record_lines(key: str, data: bytes) -> tuple[list[bytes], int]:
    """The batch-file lines of one object, and its number of records (its non-blank lines)."""
    if KEY_SEPARATOR in key or "\n" in key or "\r" in key:
        raise ValueError(f"{key!r}: an object key with a tab or a line break cannot be mounted")
    prefix = key.encode() + KEY_SEPARATOR.encode()
    if data.endswith(b"\n") and data.count(b"\n") == 1 and b"\r" not in data and data.strip():
        return [prefix + data], 1  # one record: the original sink's flush.size 1, the usual case
    # bytes.splitlines and Spark's text reader both end lines at \n, \r\n and \r; strip() and
    # Spark's \S agree on what is blank.
    lines = [prefix + line + b"\n" for line in data.splitlines() if line.strip()]
    return lines, len(lines)


class BatchObject(NamedTuple):
    """One object as a batch file holds it (a tuple: a sync makes tens of thousands of them)."""

    key: str
    size: int  # bytes of the object as landed
    etag: str
    records: int


class BatchWriter:
    """Gathers objects' lines into batch files under ``directory``, each at most ``max_bytes``
    (an object is never split across two files)."""

    def __init__(self, directory: str | os.PathLike, sequence: int, max_bytes: int = MAX_BATCH_BYTES):
        self.directory = Path(directory)
        self.sequence = sequence  # numbers the files, in the order they are written
        self.max_bytes = max_bytes
        self.written: list[tuple[str, list[BatchObject]]] = []  # file name -> its objects, in order
        self._lines: list[bytes] = []
        self._objects: list[BatchObject] = []
        self._bytes = 0

    def add(self, key: str, etag: str, data: bytes) -> BatchObject:
        lines, records = record_lines(key, data)
        size = sum(map(len, lines))
        if self._objects and self._bytes + size > self.max_bytes:
            self._flush()
        obj = BatchObject(key=key, size=len(data), etag=etag, records=records)
        self._lines.extend(lines)
        self._objects.append(obj)
        self._bytes += size
        return obj

    def close(self) -> list[tuple[str, list[BatchObject]]]:
        """Writes the last file; returns every file written, with its objects."""
        if self._objects:
            self._flush()
        return self.written

    def _flush(self) -> None:
        name = f"batch-{self.sequence:08d}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        # Spark reads batch files on other machines too (a cluster): durable before listed.
        write_atomically(objects_path(self.directory / name), json.dumps(self._objects).encode())
        write_atomically(self.directory / name, b"".join(self._lines))
        self.written.append((name, self._objects))
        self.sequence += 1
        self._lines, self._objects, self._bytes = [], [], 0


def objects_path(batch: str | os.PathLike) -> Path:
    """The list of a batch file's objects, beside it: ``[[key, size, etag, records], ...]``."""
    return Path(f"{batch}.objects.json")


def load_objects(batch: str | os.PathLike) -> list[BatchObject]:
    return [BatchObject(*o) for o in json.loads(objects_path(batch).read_bytes())]


@dataclass(frozen=True)
class BatchSlice:
    """What Spark reads of one batch file: all of it, or only the lines of some keys."""

    path: str
    keys: tuple[str, ...] | None  # None: every line of the file
