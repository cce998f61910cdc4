"""The Delta Lake layer of the warehouse, shared by its two writers: the IO manager's appends and
overwrites (``lake/warehouse.py``) and the stream tables' micro-batches (``stream/tables.py``).

Spark stays the engine and the rows never pass through Dagster's process: Spark writes a batch's
parquet files into a new directory inside the table (``write_files``), and delta-rs
(``deltalake``) commits them to the table's log as add actions (``commit_files``). Until that
commit the files are invisible to every reader; a writer that dies before it leaves files nobody
lists, which ``vacuum`` deletes once they are older than the retention. Readers take the table's
current file list from its log (``read_delta``), never a directory listing.

Small results collected from Spark as Arrow are written by pyarrow instead (``write_arrow``): the
answers, and a stream table's micro-batch, which the one Spark job that parses and cleans it
collects (the Kinesis source held it in memory anyway, ``maxRecordsPerBatch`` at most). A Spark
write job would cost more than their rows.

**A writer's commits say what they are.** A ``Writer`` is a kind of commit: its app transaction
id and where its commit info keeps its state. Each of its commits carries the app transaction
``(writer.app_id, n)`` and, under ``writer.info_key``, the state after it, ``n`` included
(``writer.version_field``). The rows and the state are in the log together, or neither is; the
table's app transaction version says which commit was the latest, and ``Writer.latest_info``
finds its info in the table's history. The IO manager's appends count from 1 (``n`` = appends
so far), a stream table's micro-batches from 0 (``n`` = batch id). Two commits from one snapshot
with the same app id conflict: the second fails.

**Quarantine.** Lines rejected on read go to a Delta table beside the table,
``<base_dir>/_quarantine/<name>`` (``source_key``, ``line``, ``reason``). Their files are written
before the table's commit and listed in its state; ``LakeTable.commit_quarantine`` commits them
right after with the same app transaction, or, if the writer died in between, the next write
does: the table's commit decides for both.

**Concurrent commits.** ``commit`` turns a commit that lost to another writer's (delta-rs's
``CommitFailedError``, or a table created by another writer after this one found none) into
``ConcurrentCommitError``, having committed nothing; ``retry_on_conflict`` tries again, up to a
number of attempts with a short jittered wait between. A writer that must not be rebased onto
another's commit (the stream tables, whose query replays the batch instead) commits with
``rebase=False``.

**Maintenance.** ``maintain`` compacts a table's small files (``optimize.compact``) and vacuums
files that left it longer ago than the retention, or that no commit ever listed; the same for
its quarantine table.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, Schema
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, CommitProperties, Transaction, create_table_with_add_actions
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from pintrest_assets.settings import ConfigError

QUARANTINE_DIR = "_quarantine"
QUARANTINE_SCHEMA = T.StructType([T.StructField(name, T.StringType()) for name in ("source_key", "line", "reason")])
# The table file of the warehouse format before Delta Lake.
_OLD_FORMAT_FILE = "_table.json"
# Spark writes INT96 timestamps by default, which Delta readers take for nanoseconds.
_SPARK_WRITE_CONFIG = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}

Result = TypeVar("Result")


class ConcurrentCommitError(Exception):
    """Another writer committed to the table after this one read its state."""


class OldWarehouseFormatError(ConfigError):
    """A table in the warehouse format before Delta Lake."""


@dataclass(frozen=True)
class Writer:
    """A kind of commit: its app transaction and the commit info key of its state (see the
    module's documentation), which tell its commits apart and say which was the latest."""

    app_id: str  # the app transaction's id; its version is ``n``
    info_key: str  # the commit info key of the writer's state after the commit
    version_field: str  # the field of that state holding ``n``
    unit: str  # what one ``n`` is, in messages: "append", "micro-batch"

    def committed(self, table: DeltaTable | None) -> int | None:
        """The version of the app transaction the table's latest commit of this writer carried."""
        return None if table is None else table.transaction_version(self.app_id)

    def latest_info(self, table: DeltaTable | None) -> Mapping | None:
        """The state the writer's latest commit to ``table`` recorded; None for a table it never
        committed to. Walks the table's history back until it finds that commit."""
        latest = self.latest_commit(table)
        return None if latest is None else latest[1]

    def latest_commit(self, table: DeltaTable | None) -> tuple[int, Mapping] | None:
        """The table version of the writer's latest commit and the state it recorded; None for a
        table it never committed to."""
        version = self.committed(table)
        if version is None:
            return None
        limit = 16
        while True:
            history = table.history(limit)
            for commit in history:
                info = commit.get(self.info_key)
                if info is not None and info[self.version_field] == version:
                    return commit["version"], info
            if len(history) < limit:
                raise RuntimeError(f"{table.table_uri}: no commit of {self.unit} {version} in the table's log")
            limit *= 8

    def properties(self, version: int, info: Mapping | None = None, rebase: bool = True) -> CommitProperties:
        """A commit's app transaction ``(app_id, version)`` and ``info`` as its state. ``rebase=False``:
        a commit that meets another fails, rather than delta-rs committing it after the other."""
        return CommitProperties(
            custom_metadata={self.info_key: dict(info)} if info is not None else None,
            app_transactions=[Transaction(self.app_id, version)],
            max_commit_retries=None if rebase else 0,
        )


class LakeTable:
    """A Delta table of the warehouse, ``<base_dir>/<name>``, and its quarantine table."""

    def __init__(self, base_dir: str | os.PathLike, name: str):
        self.name = name
        self.base_dir = Path(base_dir)
        self.path = self.base_dir / name
        self.quarantine_path = self.base_dir / QUARANTINE_DIR / name

    def delta(self) -> DeltaTable | None:
        """The table's current snapshot; None for a table never written."""
        if (self.path / _OLD_FORMAT_FILE).exists():
            raise OldWarehouseFormatError(
                "PINTREST_WAREHOUSE",
                f"{self.path} is a table of the warehouse format before Delta Lake. The bucket holds every "
                f"record, so rebuild the warehouse from it: move the old one aside with\n"
                f"    mv {self.base_dir} {self.base_dir}.pre-delta\n"
                f"and refresh the lake (`pintrest run`, or materialise the DataFrames): they read every "
                f"mounted object again into Delta tables.",
            )
        return open_table(self.path)

    def read(self, spark) -> DataFrame:
        """The whole table as a Spark DataFrame, from the files of its current version."""
        return read_delta(spark, self.existing())

    def read_in_memory(self, spark) -> DataFrame:
        """``read`` for a small table queried many times: ``read_in_memory``."""
        return read_in_memory(spark, self.existing())

    def existing(self) -> DeltaTable:
        """The table's current version; FileNotFoundError if it has none yet."""
        table = self.delta()
        if table is None:
            raise FileNotFoundError(f"{self.name} has no table in {self.path}: materialize it first")
        return table

    def read_quarantine(self, spark) -> DataFrame:
        """The lines rejected on read (``source_key``, ``line``, ``reason``); none for a table without."""
        quarantine = open_table(self.quarantine_path)
        if quarantine is None:
            return spark.createDataFrame([], QUARANTINE_SCHEMA)
        return read_delta(spark, quarantine)

    def commit_quarantine(self, writer: Writer, version: int | None, files: Sequence[Mapping]) -> None:
        """Commits the quarantine ``files`` (add actions as dicts) of the writer's commit ``version``
        to the quarantine table, with the same app transaction; nothing if they are committed."""
        if not files:
            return
        quarantine = open_table(self.quarantine_path)
        committed = writer.committed(quarantine)
        if committed is not None and committed >= version:
            return
        adds = [AddAction(**a) for a in files]
        commit_files(self.quarantine_path, quarantine, adds, QUARANTINE_SCHEMA, "append", writer.properties(version))


def open_table(path: Path) -> DeltaTable | None:
    """The Delta table at ``path``; None if there is none."""
    return DeltaTable(str(path)) if DeltaTable.is_deltatable(str(path)) else None


def read_delta(spark, table: DeltaTable) -> DataFrame:
    """A Delta table's current version as a Spark DataFrame: the parquet files its log lists."""
    schema = spark_schema(table)
    files = table.file_uris()
    if not files:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*files)


def read_in_memory(spark, table: DeltaTable) -> DataFrame:
    """A small Delta table's current version, read by pyarrow and handed to Spark as rows in
    memory, in one partition: queried many times, it is scanned by none of them, and a query
    over it (joins, groupings, windows, sorts) runs as one task, with no shuffle."""
    return spark.createDataFrame(table.to_pyarrow_table(), spark_schema(table)).coalesce(1)


def parquet_bytes(table: DeltaTable) -> int:
    """The bytes of the parquet files of the table's current version."""
    return sum(pa.table(table.get_add_actions(flatten=True)).column("size_bytes").to_pylist())


def added_since(table: DeltaTable, version: int) -> list[str] | None:
    """The files (as ``file_uris`` names them) of the rows that the table's commits after
    ``version`` added, if those commits did nothing else to its rows; else None.

    Appends add rows; a compaction (``maintain``) or a vacuum moves or deletes files but changes
    no row, so it is passed over, unless it compacted the added files themselves: their rows are
    then in files with older rows, and cannot be told apart. Anything else (rows deleted or
    replaced, the columns changed) and a commit no longer in the log (or a version the table
    never had) give None: the table has to be read whole."""
    if not 0 <= version <= table.version():
        return None
    log = Path(_table_prefix(table)) / "_delta_log"
    added = []
    for commit in range(version + 1, table.version() + 1):
        try:
            lines = (log / f"{commit:020d}.json").read_text().splitlines()
        except FileNotFoundError:
            return None
        for action in map(json.loads, filter(None, lines)):
            if "add" in action and action["add"]["dataChange"]:
                added.append(unquote(action["add"]["path"]))
            elif "metaData" in action and not _same_columns(action["metaData"], table):
                return None  # the schema changed (a property set by ``maintain`` changes no row)
            elif ("remove" in action and action["remove"].get("dataChange", True)) or "protocol" in action:
                return None
    current = {uri.removeprefix(_table_prefix(table)): uri for uri in table.file_uris()}
    if not all(path in current for path in added):
        return None
    return [current[path] for path in added]


def _same_columns(metadata: Mapping, table: DeltaTable) -> bool:
    """Whether a commit's metaData action has the table's current columns and partitioning."""
    return json.loads(metadata.get("schemaString", "null")) == json.loads(table.schema().to_json()) and list(
        metadata.get("partitionColumns", [])
    ) == list(table.metadata().partition_columns)


def _table_prefix(table: DeltaTable) -> str:
    """What ``file_uris`` puts before a file's path in the table."""
    return unquote(table.table_uri.removeprefix("file://")).rstrip("/") + "/"


def spark_schema(table: DeltaTable) -> T.StructType:
    return from_arrow_schema(pa.schema(table.schema().to_arrow()))


def write_files(df: DataFrame, table_path: Path) -> list[AddAction]:
    """Spark writes ``df`` as parquet into a new directory of the table; returns the files as add
    actions (paths relative to the table, sizes, row counts from the footers)."""
    for key, value in _SPARK_WRITE_CONFIG.items():
        df.sparkSession.conf.set(key, value)
    directory = _new_directory(table_path)
    # Without dictionaries: most columns are near unique (ids, titles, URLs), where parquet-mr
    # builds a dictionary only to drop it; it halves the write for 7% more bytes, and the
    # table's compaction (delta-rs) writes its own.
    df.write.option("parquet.enable.dictionary", "false").parquet(str(table_path / directory))
    return _add_actions(table_path, directory)


def _new_directory(table_path: Path) -> str:
    """A new directory of the table for one write's files, named by time (then at random)."""
    return f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"


def _add_actions(table_path: Path, directory: str) -> list[AddAction]:
    """The parquet files written into ``directory`` of the table, as add actions."""
    adds = []
    for entry in sorted(os.scandir(table_path / directory), key=lambda e: e.name):
        rows = 0
        if entry.name.endswith(".parquet") and not entry.name.startswith((".", "_")):
            rows = pq.read_metadata(entry.path).num_rows
        if not rows:
            # Spark's _SUCCESS marker and checksums, and the files of empty partitions: no
            # part of the table (its schema is in its log).
            os.unlink(entry.path)
            continue
        adds.append(_add_action(f"{directory}/{entry.name}", entry.stat(), rows))
    return adds


def write_arrow(rows: pa.Table, table_path: Path) -> list[AddAction]:
    """``write_files`` for rows already in this process, collected from Spark as Arrow (a small
    result, a stream table's micro-batch): pyarrow writes them as one parquet file, with no Spark
    job; no file, and no directory, for no rows."""
    if not rows.num_rows:
        return []
    directory = _new_directory(table_path)
    (table_path / directory).mkdir(parents=True)
    # Every column nullable, as Spark writes them for the table (see ``_arrow_schema``).
    rows = rows.cast(pa.schema([f.with_nullable(True) for f in rows.schema]))
    pq.write_table(rows, table_path / directory / f"part-00000-{uuid.uuid4()}.snappy.parquet")
    return _add_actions(table_path, directory)


def _add_action(path: str, stat: os.stat_result, rows: int) -> AddAction:
    return AddAction(
        path=path,
        size=stat.st_size,
        partition_values={},
        modification_time=stat.st_mtime_ns // 1_000_000,
        data_change=True,
        stats=json.dumps({"numRecords": rows}),
    )


def row_count(adds: Sequence[AddAction]) -> int:
    """The rows of the files ``write_files`` wrote."""
    return sum(json.loads(a.stats)["numRecords"] for a in adds)


def commit_files(
    path: Path,
    delta: DeltaTable | None,
    adds: list[AddAction],
    schema: T.StructType,
    mode: str,
    properties: CommitProperties | None,
) -> int:
    """Commits parquet files written into the table's directory, creating the table if need be;
    returns the new version. ``delta`` is the snapshot the write started from: delta-rs checks
    every commit since for conflicts.

    A creation is never retried by delta-rs: two creations racing are not told apart, and the
    loser's would be committed again as the next version, add actions and app transaction
    included. It fails instead, and the caller sees the table another writer created."""
    arrow = _arrow_schema(schema)
    if delta is None:
        properties = CommitProperties(
            custom_metadata=properties.custom_metadata if properties else None,
            app_transactions=properties.app_transactions if properties else None,
            max_commit_retries=0,
        )
        create_table_with_add_actions(
            str(path), Schema.from_arrow(arrow), adds, mode="error", commit_properties=properties
        )
    else:
        delta.create_write_transaction(adds, mode=mode, schema=arrow, commit_properties=properties)
    version = DeltaTable(str(path)).version()
    _fsync_commit(path, version)
    return version


def commit(
    table: LakeTable,
    delta: DeltaTable | None,
    adds: list[AddAction],
    schema: T.StructType,
    *,
    mode: str = "append",
    writer: Writer | None = None,
    version: int | None = None,
    info: Mapping | None = None,
    rebase: bool = True,
    then: str = "",
) -> int:
    """``commit_files`` to ``table`` from snapshot ``delta``, with ``writer``'s app transaction
    ``version`` and ``info`` as the state if given; returns the new version.

    A commit that lost to another writer's (delta-rs's ``CommitFailedError``, or a table this
    writer found missing created by another meanwhile) raises ``ConcurrentCommitError``: nothing
    was committed. ``then`` says in its message what happens next. Other errors pass through."""
    properties = writer.properties(version, info, rebase) if writer is not None else None
    try:
        return commit_files(table.path, delta, adds, schema, mode, properties)
    except Exception as exc:
        if not (isinstance(exc, CommitFailedError) or (delta is None and _created_meanwhile(table.path))):
            raise
        what = f"{writer.unit} {version}" if writer is not None else f"this {mode}"
        raise ConcurrentCommitError(
            f"{table.name}: another writer committed to the table while {what} was written; nothing was "
            f"committed{', ' + then if then else ''} ({exc})"
        ) from exc


def create_empty(path: Path, schema: T.StructType) -> None:
    """Creates the table at ``path`` with no rows (readers find it); a table another writer created
    meanwhile does as well."""
    try:
        commit_files(path, None, [], schema, "append", None)
    except Exception:
        if not _created_meanwhile(path):
            raise


def retry_on_conflict(
    attempt: Callable[[int], Result],
    *,
    attempts: int,
    wait_seconds: float,
    gave_up: Callable[[int, ConcurrentCommitError], str],
    log: Callable[[str], None] | None = None,
) -> Result:
    """``attempt(n)`` for n = 1, 2, ... until it does not raise ``ConcurrentCommitError``, at most
    ``attempts`` times, waiting up to ``wait_seconds`` times n (at random) before attempt n + 1.
    After the last, raises ``ConcurrentCommitError(gave_up(n, error))``; ``log`` hears of each retry."""
    for n in range(1, attempts + 1):
        try:
            return attempt(n)
        except ConcurrentCommitError as exc:
            if n == attempts:
                raise ConcurrentCommitError(gave_up(n, exc)) from exc
            if log is not None:
                log(f"{exc}; attempt {n + 1} of {attempts} starts from the new state")
            time.sleep(random.uniform(0, wait_seconds * n))
    raise AssertionError("unreachable")


LOG_RETENTION = "delta.logRetentionDuration"  # a table property: how long its log keeps a commit


def maintain(table: LakeTable, retention_hours: int) -> dict:
    """Compacts the table's small files, then vacuums it, then deletes the commits of its log that
    are older than the retention and than its latest checkpoint; the same for its quarantine table.
    Returns the files compacted and vacuumed (``compacted_files``, ``quarantine_vacuumed_files``...).

    The log keeps what the vacuum keeps: a version older than the retention has lost its files to
    the vacuum, so its commit is of no use, and a table with a commit a second (a stream table)
    would otherwise gather 86,400 log files a day for Delta's default of 30 days. The table's
    ``delta.logRetentionDuration`` is set to the retention (one commit, the first time)."""
    done = {}
    log_retention = f"interval {retention_hours} hours"
    for label, path in (("", table.path), ("quarantine_", table.quarantine_path)):
        delta = open_table(path)
        if delta is None:
            continue
        compacted, vacuumed = {}, []
        try:
            compacted = delta.optimize.compact()
            maintained = DeltaTable(str(path))
            vacuumed = maintained.vacuum(
                retention_hours=retention_hours,
                enforce_retention_duration=False,
                dry_run=False,
                full=True,  # also the files of writers that died before their commit
            )
            if maintained.metadata().configuration.get(LOG_RETENTION) != log_retention:
                maintained.alter.set_table_properties({LOG_RETENTION: log_retention})
            maintained.cleanup_metadata()
        except CommitFailedError:
            pass  # another writer committed meanwhile: maintained next time, the data is committed
        done[f"{label}compacted_files"] = compacted.get("numFilesRemoved", 0)
        done[f"{label}vacuumed_files"] = len(vacuumed)
    return done


def _fsync_commit(path: Path, version: int) -> None:
    """Makes a local table's commit durable: what it consumed (the mount's batch files) may be
    deleted after it, and must not outlive it."""
    log = path / "_delta_log"
    commit_file = log / f"{version:020d}.json"
    if not commit_file.exists():
        return
    for target, flags in ((commit_file, os.O_RDONLY), (log, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))):
        fd = os.open(target, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _created_meanwhile(path: Path) -> bool:
    """Whether a table this writer found missing exists now: another writer created it first."""
    return DeltaTable.is_deltatable(str(path))


def _arrow_schema(schema: T.StructType) -> pa.Schema:
    # Every column nullable, as Spark reads parquet: a NOT NULL in Delta would refuse a later
    # null that Spark's own schema for the same query allows.
    arrow = to_arrow_schema(schema, timezone="UTC")
    return pa.schema([f.with_nullable(True) for f in arrow])
