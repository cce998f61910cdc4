"""Batch files: the records of many landed objects gathered into a few files, each record tagged
with its object's key. Written by the mount, read by Spark (``pintrest_assets.lake.parsing``).

The original's S3 sink wrote one record per object (``flush.size`` 1), and Spark's cost is per
file opened and per byte parsed, not per object: the mount reads every new object anyway (to
count its records), so it gathers them into a few batch files as it goes, and Spark opens those
instead of thousands of objects.

A batch is up to three files, named ``batch-<sequence>-<random>`` plus a suffix:

- ``.parquet``: the records the mount parsed itself (with pyarrow's JSON reader and the topic's
  schema), as typed columns plus ``_key``, the object's key. The mount takes a record here only
  when pyarrow's strict reader accepts it and Spark's reader would read the same row from it: a
  JSON object per line whose fields have exactly the schema's types, with the topic's index
  column set. Spark then reads columns, not JSON text.
- ``.tsv``: every other line, for Spark to parse (``parse_records``) and to keep or quarantine:
  ``<object key> TAB <the record's line, byte for byte as it landed> LF``. Keys never hold a tab
  or a line break, so the first tab ends the key. A group of lines that pyarrow refuses as a
  whole is split until the lines it refuses are isolated, in groups of at most
  ``_RESIDUE_GROUP`` lines: Spark decides about each of them exactly as it decides about any
  line, so rows and quarantine are the same as if Spark had parsed every line.
- ``.objects.json``: the batch's objects (key, size, ETag, records), in file order.

Blank lines are left out: they are not records (``sink_layout.count_records``). Each file is
written whole under a temporary name, then renamed: a reader sees all of it or none of it, and
it never changes after. A mount without a schema for the topic writes every line to ``.tsv``.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from pintrest_assets.files import write_atomically

KEY_SEPARATOR = "\t"
SUFFIX = ".tsv"  # the lines left for Spark to parse
PARSED_SUFFIX = ".parquet"  # the records the mount parsed
KEY_COLUMN = "_key"  # the object's key, in the parsed records
# A batch is closed past this size of JSON: Spark splits big files across cores anyway, and a
# sync of millions of objects should not be held in memory whole.
MAX_BATCH_BYTES = 64 << 20
# Row groups of the parsed records: a small batch still gives each core a part to read.
_ROW_GROUP = 1 << 16
# Lines that pyarrow refuses together are left to Spark in groups of at most this many.
_RESIDUE_GROUP = 8
_BOM = b"\xef\xbb\xbf"
# A blank line (whitespace as Spark's \s and bytes.strip see it) after a line, or first.
_BLANK_LINE = re.compile(rb"\n[ \t\x0b\x0c]*\n")
_BLANK_FIRST_LINE = re.compile(rb"[ \t\x0b\x0c]*\n")
# Spark's parser keeps a field of this name as the line's corruption marker.
_CORRUPT_FIELD = b'"_corrupt_record"'


def record_lines(key: str, data: bytes) -> tuple[list[bytes], int]:
    """The batch-file lines of one object, and its number of records (its non-blank lines)."""
    _check_key(key)
    prefix = key.encode() + KEY_SEPARATOR.encode()
    lines = [prefix + line + b"\n" for line in _records(data)]
    return lines, len(lines)


def _records(data: bytes) -> list[bytes]:
    # bytes.splitlines and Spark's text reader both end lines at \n, \r\n and \r; strip() and
    # Spark's \S agree on what is blank.
    return [line for line in data.splitlines() if line.strip()]


def _has_blank_line(data: bytes) -> bool:
    # Two patterns, each starting with a literal, which the regular expression engine finds fast.
    return _BLANK_LINE.search(data) is not None or _BLANK_FIRST_LINE.match(data) is not None


def _check_key(key: str) -> None:
    if KEY_SEPARATOR in key or "\n" in key or "\r" in key:
        raise ValueError(f"{key!r}: an object key with a tab or a line break cannot be mounted")


def _body(data: bytes) -> tuple[bytes, int]:
    """An object's records as LF-terminated lines, and how many: the object itself when it is
    already that (the sink's usual output), without splitting it line by line."""
    if data.endswith(b"\n") and b"\r" not in data and not _has_blank_line(data):
        return data, data.count(b"\n")
    records = _records(data)
    return b"".join(line + b"\n" for line in records), len(records)


class BatchObject(NamedTuple):
    """One object as a batch file holds it (a tuple: a sync makes tens of thousands of them)."""

    key: str
    size: int  # bytes of the object as landed
    etag: str
    records: int


class WrittenBatch(NamedTuple):
    """A batch the writer wrote: its name, its objects, and its records parsed and left to Spark."""

    name: str
    objects: list[BatchObject]
    parsed: int  # records in ``<name>.parquet``
    residue: int  # lines in ``<name>.tsv``
    stats: dict  # per column, of the parsed records: as ``lake.statistics`` keeps them for describe()


class BatchWriter:
    """Gathers objects' records into batches under ``directory``, each of at most ``max_bytes``
    of JSON (an object is never split across two batches).

    ``schema`` (an Arrow schema) and ``key_column`` (a column every record must have) let the
    writer parse records itself; without them every line is left to Spark.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        sequence: int,
        max_bytes: int = MAX_BATCH_BYTES,
        schema: pa.Schema | None = None,
        key_column: str | None = None,
    ):
        self.directory = Path(directory)
        self.sequence = sequence  # numbers the batches, in the order they are written
        self.max_bytes = max_bytes
        self.schema = schema
        self.key_column = key_column
        self.written: list[WrittenBatch] = []
        self._bodies: list[tuple[str, bytes, int]] = []  # (key, records as lines, how many)
        self._objects: list[BatchObject] = []
        self._bytes = 0
        self._pool: ThreadPoolExecutor | None = None
        self._writing: Future | None = None

    def add(self, key: str, etag: str, data: bytes) -> BatchObject:
        _check_key(key)
        body, records = _body(data)
        size = len(body) + records * (len(key) + 1)
        if self._objects and self._bytes + size > self.max_bytes:
            self._flush()
        obj = BatchObject(key=key, size=len(data), etag=etag, records=records)
        if records:
            self._bodies.append((key, body, records))
        self._objects.append(obj)
        self._bytes += size
        return obj

    def close(self) -> list[WrittenBatch]:
        """Writes the last batch; returns every batch written, with its objects."""
        if self._objects:
            self._flush()
        if self._writing is not None:
            self._writing.result()
            self._pool.shutdown()
        return self.written

    def _flush(self) -> None:
        """Hands the batch to a thread that parses and writes it while the next one is gathered
        (pyarrow and file reads release the GIL); one batch at a time, so at most two are held."""
        name = f"batch-{self.sequence:08d}-{uuid.uuid4().hex[:8]}"
        if self._writing is not None:
            self._writing.result()  # in order, and an error surfaces here
        else:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="batch-writer")
        self._writing = self._pool.submit(self._write, name, self._bodies, self._objects)
        self.sequence += 1
        self._bodies, self._objects, self._bytes = [], [], 0

    def _write(self, name: str, bodies: list[tuple[str, bytes, int]], objects: list[BatchObject]) -> None:
        tables: list[pa.Table] = []
        residue: list[bytes] = []
        if self.schema is not None and self.key_column is not None:
            self._split(bodies, tables, residue)
        else:
            residue = [line for key, body, _ in bodies for line in _tagged(key, body)]
        parsed = sum(t.num_rows for t in tables)
        stats = {}
        # Spark reads batch files on other machines too (a cluster): durable before listed.
        write_atomically(objects_path(self.directory / name), json.dumps(objects).encode())
        if parsed:
            table = pa.concat_tables(tables)
            stats = column_stats(table, self.schema)
            _write_parquet(table, self.directory / f"{name}{PARSED_SUFFIX}")
        if residue:
            write_atomically(self.directory / f"{name}{SUFFIX}", b"".join(residue))
        self.written.append(WrittenBatch(name, objects, parsed, len(residue), stats))

    def _split(self, bodies: list[tuple[str, bytes, int]], tables: list[pa.Table], residue: list[bytes]) -> None:
        """Parses ``bodies`` into ``tables``; the lines pyarrow refuses go to ``residue``."""
        if not bodies:
            return
        table = self._parse(b"".join(body for _, body, _ in bodies), sum(n for _, _, n in bodies))
        if table is not None:
            keys = pa.DictionaryArray.from_arrays(
                pa.array(np.repeat(np.arange(len(bodies), dtype=np.int32), [n for _, _, n in bodies])),
                pa.array([key for key, _, _ in bodies], pa.string()),
            )
            tables.append(table.append_column(KEY_COLUMN, keys))
            return
        if len(bodies) > 1:
            half = len(bodies) // 2
            self._split(bodies[:half], tables, residue)
            self._split(bodies[half:], tables, residue)
            return
        [(key, body, records)] = bodies
        if records <= _RESIDUE_GROUP:
            residue.extend(_tagged(key, body))
            return
        lines = body.splitlines(keepends=True)
        half = len(lines) // 2
        halves = [(key, b"".join(lines[:half]), half), (key, b"".join(lines[half:]), len(lines) - half)]
        self._split(halves, tables, residue)

    def _parse(self, body: bytes, records: int) -> pa.Table | None:
        """The records of ``body`` (LF-terminated lines) as a table of the schema, one row per
        line; None unless every line is a record Spark would read as the same row."""
        if body.startswith(_BOM) or b"\n" + _BOM in body or _CORRUPT_FIELD in body:
            return None  # pyarrow skips a byte-order mark, and would read the marker as a field
        try:
            table = pa_json.read_json(
                pa.py_buffer(body),
                read_options=pa_json.ReadOptions(block_size=4 << 20),
                parse_options=pa_json.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="ignore"),
            )
        except (pa.ArrowException, ValueError):
            return None
        # Two objects on one line would be two rows: the counts then differ.
        if table.num_rows != records or table.column(self.key_column).null_count:
            return None
        for field in self.schema:
            # Spark orders NaN above every number, pyarrow's min and max skip it: left to Spark.
            if pa.types.is_floating(field.type) and pc.any(pc.is_nan(table.column(field.name))).as_py():
                return None
        return table.select(self.schema.names)


def _write_parquet(table: pa.Table, path: Path) -> None:
    """``table`` as a parquet file at ``path``, written whole under a temporary name, durable,
    then renamed. It lives until Spark has read it once: no compression, no dictionaries (but
    the keys') and no statistics, which would cost the mount more than they save Spark."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            pq.write_table(
                table,
                f,
                compression="none",
                use_dictionary=[KEY_COLUMN],
                write_statistics=False,
                row_group_size=_ROW_GROUP,
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def column_stats(table: pa.Table, schema: pa.Schema) -> dict:
    """Per column of ``schema``: count (of values set), min and max, and for numbers mean and m2
    (the sum of squared deviations), as Spark's count, min, max, avg and var_samp give them:
    strings compare byte by byte in both."""
    stats = {}
    for field in schema:
        column = table.column(field.name)
        count = column.length() - column.null_count
        bounds = pc.min_max(column)
        entry = stats[field.name] = {"count": count, "min": bounds["min"].as_py(), "max": bounds["max"].as_py()}
        if pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            variance = pc.variance(column, ddof=1).as_py() if count > 1 else None
            entry.update(mean=pc.mean(column).as_py(), m2=(variance or 0.0) * max(count - 1, 0))
    return stats


def _tagged(key: str, body: bytes) -> list[bytes]:
    prefix = key.encode() + KEY_SEPARATOR.encode()
    return [prefix + line for line in body.splitlines(keepends=True)]


def objects_path(batch: str | os.PathLike) -> Path:
    """The list of a batch's objects, beside it: ``[[key, size, etag, records], ...]``."""
    return Path(f"{batch}.objects.json")


def load_objects(batch: str | os.PathLike) -> list[BatchObject]:
    return [BatchObject(*o) for o in json.loads(objects_path(batch).read_bytes())]


def batch_files(batch: str | os.PathLike) -> list[Path]:
    """The files a batch may have (its path without a suffix)."""
    return [Path(f"{batch}{PARSED_SUFFIX}"), Path(f"{batch}{SUFFIX}"), objects_path(batch)]


@dataclass(frozen=True)
class BatchSlice:
    """What Spark reads of one batch: all of it, or only the records of some keys."""

    path: str  # the batch's path without a suffix
    keys: tuple[str, ...] | None  # None: every record of the batch
    parsed: bool = False  # whether it has a ``.parquet`` of records the mount parsed
    residue: bool = True  # whether it has a ``.tsv`` of lines for Spark to parse
