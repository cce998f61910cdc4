"""The warehouse: each asset's Spark DataFrame as a Delta Lake table at ``<base_dir>/<asset name>``.

Spark stays the engine and the rows never pass through Dagster's process: Spark writes a batch's
parquet files into a new directory inside the table, and delta-rs (``deltalake``) commits them
to the table's log as add actions. Until that commit the files are invisible to every reader; a
run that dies before it leaves files nobody lists, which ``vacuum`` deletes once they are older
than the retention. Readers take the table's current file list from its log
(``DeltaTable.file_uris()``), never a directory listing.

An asset returns either a DataFrame, which replaces the table (a Delta overwrite), or a
``TableAppend``, which appends a batch read incrementally from the bucket. An append commits
its rows and the table's source cursor together, in one Delta commit: the commit carries the
app transaction ``(APP_ID, n)`` for the table's n-th append, and its commit info holds the
table's state after it (cursor, running totals, column statistics) under ``STATE_KEY``. Either
the commit is in the log, and with it the rows and the cursor that says they were read, or
neither is.

Concurrent writers (a sensor's refresh and ``pintrest run``, which runs outside the instance's
run queue) are settled by optimistic concurrency with a bounded retry. Two appends read from the
same state conflict on the app transaction: the first commits, the second's commit fails and its
files stay uncommitted (vacuum deletes them). ``WarehouseIOManager.append_with_retry`` then
starts that append again from the table's new state: the asset's ``build_batch`` reads the
objects after the new cursor (none, if the other writer read them all), the batch is written and
committed; up to ``commit_attempts`` times, with a short jittered wait between. An overwrite that
meets a concurrent commit commits the same files again over the newer version, as often.

Lines rejected on read go to a Delta table of their own, ``<base_dir>/_quarantine/<asset
name>``. Their files are written before the append and listed in its state; the quarantine
table commits them right after (with the app transaction of the same append), or, if the run
died in between, the next append does: the append's commit decides for both.

Every ``maintain_every`` commits, the IO manager compacts the table's small files
(``optimize.compact``) and vacuums files that left the table more than
``vacuum_retention_hours`` ago, or that no commit ever listed.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from dagster_pyspark import LazyPySparkResource
from deltalake import DeltaTable, Schema
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, CommitProperties, Transaction, create_table_with_add_actions
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from pintrest_assets.settings import ConfigError

APP_ID = "pintrest.append"  # app transaction of incremental appends: version = appends so far
STATE_KEY = "pintrest"  # commit info key of an append's table state
QUARANTINE_DIR = "_quarantine"
QUARANTINE_SCHEMA = T.StructType([T.StructField(name, T.StringType()) for name in ("source_key", "line", "reason")])
# The table file of the warehouse format before Delta Lake.
_OLD_FORMAT_FILE = "_table.json"
# Spark writes INT96 timestamps by default, which Delta readers take for nanoseconds.
_SPARK_WRITE_CONFIG = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}


class ConcurrentCommitError(Exception):
    """Another run committed to the table after this run read its state."""


class OldWarehouseFormatError(ConfigError):
    """A table in the warehouse format before Delta Lake."""


@dataclass(frozen=True)
class TableState:
    """An incrementally appended table's state, as its latest append committed it."""

    appends: int = 0  # appends committed so far: the table's app transaction version
    schema: T.StructType | None = None
    rows: int = 0
    quarantined: int = 0  # lines rejected on read, kept in the quarantine table
    objects: int = 0  # source objects read
    cursor: Mapping[str, str] = field(default_factory=dict)  # source position, e.g. partition prefix -> last key
    summary: Mapping[str, dict] = field(default_factory=dict)  # running per-column statistics, kept by the asset
    # The quarantine files of the latest append (add actions as dicts), committed to the
    # quarantine table after the append.
    quarantine_files: tuple[dict, ...] = ()

    def to_commit_info(self) -> dict:
        return {
            "appends": self.appends,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "objects": self.objects,
            "cursor": dict(sorted(self.cursor.items())),
            "summary": _encode_floats(dict(self.summary)),
            "quarantine_files": list(self.quarantine_files),
        }

    @classmethod
    def from_commit_info(cls, info: Mapping, schema: T.StructType) -> TableState:
        return cls(
            appends=info["appends"],
            schema=schema,
            rows=info["rows"],
            quarantined=info["quarantined"],
            objects=info["objects"],
            cursor=info["cursor"],
            summary=_decode_floats(info["summary"]),
            quarantine_files=tuple(info["quarantine_files"]),
        )


def _encode_floats(value):
    """``value`` with NaN and the infinities (a column's mean or max may be one) as
    ``{"float": "nan"}``: a commit's info is JSON, which has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if isinstance(value, dict):
        return {k: _encode_floats(v) for k, v in value.items()}
    return value


def _decode_floats(value):
    if isinstance(value, dict):
        if value.keys() == {"float"}:
            return float(value["float"])
        return {k: _decode_floats(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class TableAppend:
    """A batch to add to an incremental table: what an asset returns instead of a DataFrame.

    ``base`` is the state the batch was read after; the commit fails if another run committed
    an append since. ``rows`` (``None`` when nothing is new) are appended, ``quarantine``
    (``source_key``, ``line``, ``reason``) goes to the quarantine table, and the counts,
    ``cursor`` and ``summary`` (the whole table's, after the batch) move the table's running
    totals, so no refresh has to read the whole table.
    """

    base: TableState
    schema: T.StructType
    rows: DataFrame | None
    row_count: int
    quarantine: DataFrame | None
    quarantined: int
    objects: int
    cursor: Mapping[str, str]
    summary: Mapping[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class CommittedAppend:
    """What an asset returns after committing its batch with ``append_with_retry``: the IO
    manager only maintains the table and reports it."""

    version: int | None  # the Delta version of the commit; None when nothing was new
    batch: TableAppend
    attempts: int  # 1, or more when concurrent commits made the append start again


class WarehouseTable:
    """One asset's Delta table, and its quarantine table."""

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
        if not DeltaTable.is_deltatable(str(self.path)):
            return None
        return DeltaTable(str(self.path))

    def state(self) -> TableState:
        """The state of the latest append; an empty state for a table never appended to."""
        table = self.delta()
        if table is None:
            return TableState()
        return _append_state(table)

    def read(self, spark) -> DataFrame:
        """The whole table as a Spark DataFrame, from the files of its current version."""
        table = self.delta()
        if table is None:
            raise FileNotFoundError(f"{self.name} has no table in {self.path}: materialize it first")
        return read_delta(spark, table)

    def read_quarantine(self, spark) -> DataFrame:
        """The lines rejected on read (``source_key``, ``line``, ``reason``); none for a table without."""
        quarantine = _delta_or_none(self.quarantine_path)
        if quarantine is None:
            return spark.createDataFrame([], QUARANTINE_SCHEMA)
        return read_delta(spark, quarantine)


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores Spark DataFrames as Delta tables under ``base_dir`` and loads them back whole."""

    base_dir: str = Field(description="The warehouse directory: one Delta table per asset under it.")
    # Any lazy dagster-pyspark resource (``SparkResource`` in the project): the session starts
    # only when a downstream asset loads a table.
    spark: LazyPySparkResource = Field(description="The Spark session that loads tables for downstream assets.")
    maintain_every: int = Field(
        default=10,
        ge=1,
        description="Compact and vacuum a table when a write's Delta version is a multiple of this.",
    )
    vacuum_retention_hours: int = Field(
        default=24,
        ge=1,
        description="Vacuum deletes files that left the table (or were never committed) longer ago than "
        "this. A reader holding an older file list, or a run still writing, needs it longer than it takes.",
    )
    commit_attempts: int = Field(
        default=5,
        ge=1,
        description="How many times an append or an overwrite that meets a concurrent commit is tried, "
        "from the table's new state, before its run fails.",
    )
    retry_wait_seconds: float = Field(
        default=0.5,
        ge=0,
        description="The wait before a retried commit: up to this, times the attempt, at random.",
    )

    def table(self, name: str) -> WarehouseTable:
        return WarehouseTable(self.base_dir, name)

    def append_with_retry(
        self,
        name: str,
        build_batch: Callable[[TableState], TableAppend],
        log: Callable[[str], None] | None = None,
    ) -> CommittedAppend:
        """Appends ``build_batch(state)`` to table ``name``, ``state`` being the table's latest.

        When another writer committed an append after ``state`` was read, nothing of this attempt
        is committed: the table's new state is read and ``build_batch`` called again with it (it
        selects what is new after the new cursor), up to ``commit_attempts`` times.
        """
        table = self.table(name)
        for attempt in range(1, self.commit_attempts + 1):
            batch = build_batch(table.state())
            try:
                try:
                    version = self._append(table, batch)
                except ConcurrentCommitError:
                    raise
                except Exception as exc:
                    # Another writer's commit may have released what this attempt was reading.
                    if table.state().appends == batch.base.appends:
                        raise
                    raise ConcurrentCommitError(
                        f"{name}: another run committed while this one read and wrote its batch ({exc})"
                    ) from exc
                return CommittedAppend(version, batch, attempt)
            except ConcurrentCommitError as exc:
                if attempt == self.commit_attempts:
                    raise ConcurrentCommitError(
                        f"{name}: other runs committed to the table during each of {attempt} attempts to "
                        f"append; nothing of this run was committed, the next refresh reads what it did not "
                        f"({exc})"
                    ) from exc
                if log is not None:
                    log(f"{exc}; attempt {attempt + 1} of {self.commit_attempts} starts from the new state")
                self._wait(attempt)
        raise AssertionError("unreachable")

    def _wait(self, attempt: int) -> None:
        time.sleep(random.uniform(0, self.retry_wait_seconds * attempt))

    def handle_output(self, context: dg.OutputContext, obj: DataFrame | TableAppend | CommittedAppend) -> None:
        table = self.table(_table_name(context))
        if isinstance(obj, CommittedAppend):
            version = obj.version  # committed by the asset, through append_with_retry
        elif isinstance(obj, TableAppend):
            version = self._append(table, obj)
        elif isinstance(obj, DataFrame):
            version, rows = self._replace(table, obj)
            if "dagster/row_count" not in context.output_metadata:
                context.add_output_metadata({"dagster/row_count": rows})
        else:
            raise TypeError(
                f"{table.name}: the warehouse stores Spark DataFrames or TableAppend batches, got {type(obj).__name__}"
            )
        maintenance = {}
        if version and version % self.maintain_every == 0:
            maintenance = self.maintain(table)
        context.add_output_metadata(_table_metadata(table, maintenance))

    def load_input(self, context: dg.InputContext) -> DataFrame:
        return self.table(_table_name(context.upstream_output)).read(self.spark.spark_session)

    def maintain(self, table: WarehouseTable) -> dict:
        """Compacts the table's small files, then vacuums it; the same for its quarantine table."""
        done = {}
        for label, path in (("", table.path), ("quarantine_", table.quarantine_path)):
            delta = _delta_or_none(path)
            if delta is None:
                continue
            compacted, vacuumed = {}, []
            try:
                compacted = delta.optimize.compact()
                vacuumed = DeltaTable(str(path)).vacuum(
                    retention_hours=self.vacuum_retention_hours,
                    enforce_retention_duration=False,
                    dry_run=False,
                    full=True,  # also the files of runs that died before their commit
                )
            except CommitFailedError:
                pass  # another run committed meanwhile: maintained next time, the data is committed
            done[f"{label}compacted_files"] = compacted.get("numFilesRemoved", 0)
            done[f"{label}vacuumed_files"] = len(vacuumed)
        return done

    def _append(self, table: WarehouseTable, batch: TableAppend) -> int | None:
        base = batch.base
        if base.schema is not None and _nullable(base.schema) != _nullable(batch.schema):
            raise ValueError(
                f"{table.name}: the batch's schema differs from the table's; "
                f"table {base.schema.simpleString()}, batch {batch.schema.simpleString()}"
            )
        delta = table.delta()
        current = _append_state(delta) if delta is not None else TableState()
        if current.appends != base.appends:
            raise ConcurrentCommitError(
                f"{table.name}: another run committed append {current.appends} after this run read append "
                f"{base.appends}; nothing was committed"
            )
        # Rejected lines of an append that committed but died before its quarantine did.
        _commit_quarantine(table, current)
        if not batch.objects:
            # Nothing read: nothing to commit, but downstream assets load an empty table.
            if delta is None:
                try:
                    commit_files(table.path, None, [], batch.schema, "append", None)
                except Exception:
                    if not _created_meanwhile(table.path):
                        raise
                    # Another run created the table meanwhile: there for downstream assets too.
            return None

        adds = []
        if batch.rows is not None and batch.row_count:
            adds = write_files(batch.rows, table.path)
        quarantine_files = ()
        if batch.quarantine is not None and batch.quarantined:
            # Rejected lines are few: one file per batch.
            quarantine_files = tuple(
                asdict(a) for a in write_files(batch.quarantine.coalesce(1), table.quarantine_path)
            )
        new = TableState(
            appends=base.appends + 1,
            schema=batch.schema,
            rows=base.rows + batch.row_count,
            quarantined=base.quarantined + batch.quarantined,
            objects=base.objects + batch.objects,
            cursor=dict(batch.cursor),
            summary=dict(batch.summary),
            quarantine_files=quarantine_files,
        )
        properties = CommitProperties(
            custom_metadata={STATE_KEY: new.to_commit_info()},
            app_transactions=[Transaction(APP_ID, new.appends)],
        )
        try:
            version = commit_files(table.path, delta, adds, batch.schema, "append", properties)
        except Exception as exc:
            if not (isinstance(exc, CommitFailedError) or (delta is None and _created_meanwhile(table.path))):
                raise
            raise ConcurrentCommitError(
                f"{table.name}: another run committed while this one appended; nothing was committed ({exc})"
            ) from exc
        _commit_quarantine(table, new)
        return version

    def _replace(self, table: WarehouseTable, df: DataFrame) -> tuple[int, int]:
        delta = table.delta()
        adds = write_files(df, table.path)
        rows = sum(json.loads(a.stats)["numRecords"] for a in adds)
        for attempt in range(1, self.commit_attempts + 1):
            try:
                return commit_files(table.path, delta, adds, df.schema, "overwrite", None), rows
            except Exception as exc:
                if not (isinstance(exc, CommitFailedError) or (delta is None and _created_meanwhile(table.path))):
                    raise
                if attempt == self.commit_attempts:
                    raise ConcurrentCommitError(
                        f"{table.name}: other runs committed to the table during each of {attempt} attempts to "
                        f"replace it; its previous version stays ({exc})"
                    ) from exc
                # The same result replaces the newer version just as well.
                self._wait(attempt)
                delta = table.delta()
        raise AssertionError("unreachable")


def read_delta(spark, table: DeltaTable) -> DataFrame:
    """A Delta table's current version as a Spark DataFrame: the parquet files its log lists."""
    schema = spark_schema(table)
    files = table.file_uris()
    if not files:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*files)


def spark_schema(table: DeltaTable) -> T.StructType:
    return from_arrow_schema(pa.schema(table.schema().to_arrow()))


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
    included. It fails instead, and the caller sees the table another run created."""
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


def _fsync_commit(path: Path, version: int) -> None:
    """Makes a local table's commit durable: what it consumed (the mount's batch files) may be
    deleted after it, and must not outlive it."""
    log = path / "_delta_log"
    commit = log / f"{version:020d}.json"
    if not commit.exists():
        return
    for target, flags in ((commit, os.O_RDONLY), (log, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))):
        fd = os.open(target, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_files(df: DataFrame, table_path: Path) -> list[AddAction]:
    """Spark writes ``df`` as parquet into a new directory of the table; returns the files as add
    actions (paths relative to the table, sizes, row counts from the footers)."""
    for key, value in _SPARK_WRITE_CONFIG.items():
        df.sparkSession.conf.set(key, value)
    directory = f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"
    # Without dictionaries: most columns are near unique (ids, titles, URLs), where parquet-mr
    # builds a dictionary only to drop it; it halves the write for 7% more bytes, and the
    # table's compaction (delta-rs) writes its own.
    df.write.option("parquet.enable.dictionary", "false").parquet(str(table_path / directory))
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
        stat = entry.stat()
        adds.append(
            AddAction(
                path=f"{directory}/{entry.name}",
                size=stat.st_size,
                partition_values={},
                modification_time=stat.st_mtime_ns // 1_000_000,
                data_change=True,
                stats=json.dumps({"numRecords": rows}),
            )
        )
    return adds


def _commit_quarantine(table: WarehouseTable, state: TableState) -> None:
    """Commits the quarantine files of the append that left ``state``, unless already committed."""
    if not state.quarantine_files:
        return
    quarantine = _delta_or_none(table.quarantine_path)
    if quarantine is not None and (quarantine.transaction_version(APP_ID) or 0) >= state.appends:
        return
    adds = [AddAction(**a) for a in state.quarantine_files]
    properties = CommitProperties(app_transactions=[Transaction(APP_ID, state.appends)])
    commit_files(table.quarantine_path, quarantine, adds, QUARANTINE_SCHEMA, "append", properties)


def _append_state(table: DeltaTable) -> TableState:
    """The state the table's latest append committed, from the commit info of that commit."""
    appends = table.transaction_version(APP_ID) or 0
    if not appends:
        return TableState(schema=spark_schema(table))
    limit = 16
    while True:
        history = table.history(limit)
        for commit in history:
            info = commit.get(STATE_KEY)
            if info is not None and info["appends"] == appends:
                return TableState.from_commit_info(info, spark_schema(table))
        if len(history) < limit:
            raise RuntimeError(f"{table.table_uri}: no commit of append {appends} in the table's log")
        limit *= 8


def _created_meanwhile(path: Path) -> bool:
    """Whether a table this run found missing exists now: another run created it first."""
    return DeltaTable.is_deltatable(str(path))


def _delta_or_none(path: Path) -> DeltaTable | None:
    return DeltaTable(str(path)) if DeltaTable.is_deltatable(str(path)) else None


def _table_metadata(table: WarehouseTable, maintenance: Mapping[str, int]) -> dict:
    """Where the table is and what its log says: shown with each materialisation."""
    delta = DeltaTable(str(table.path))
    [last] = delta.history(1)
    metadata = {
        "path": dg.MetadataValue.path(str(table.path)),
        "delta_version": delta.version(),
        "delta_files": len(delta.file_uris()),
        "delta_last_operation": last["operation"],
        **{f"maintenance_{k}": v for k, v in maintenance.items()},
    }
    return metadata


def _arrow_schema(schema: T.StructType) -> pa.Schema:
    # Every column nullable, as Spark reads parquet: a NOT NULL in Delta would refuse a later
    # null that Spark's own schema for the same query allows.
    arrow = to_arrow_schema(schema, timezone="UTC")
    return pa.schema([f.with_nullable(True) for f in arrow])


def _nullable(schema: T.StructType) -> T.StructType:
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in schema.fields])


def _table_name(context: dg.OutputContext) -> str:
    return "/".join(context.asset_key.path)
