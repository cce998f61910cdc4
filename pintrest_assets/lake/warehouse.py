"""The warehouse: each asset's Spark DataFrame as a Delta Lake table at ``<base_dir>/<asset name>``,
stored and loaded by ``WarehouseIOManager``. The Delta layer beneath it (Spark writes the parquet
files, delta-rs commits them, readers take the file list from the log; app transactions, the
quarantine table, retries, maintenance) is ``lake/delta.py``, shared with the stream tables.

An asset returns a DataFrame, which replaces the table (a Delta overwrite); or the same as a
pyarrow table, for a small result already collected into the driver (pyarrow writes it, with no
Spark job); or a ``TableAppend``, which appends a batch read incrementally from the bucket; or a
``TableUpdate``, rows that replace the table or are added to it together with a state of the
asset's own (the cleaned tables: the DataFrame version they were cleaned from, their counts). An append commits
its rows and the table's source cursor together, in one Delta commit: the commit carries the
app transaction ``(APP_ID, n)`` for the table's n-th append, and its commit info holds the
table's state after it (cursor, running totals, column statistics) under ``STATE_KEY`` (the
writer ``APPENDS``). Either the commit is in the log, and with it the rows and the cursor that
says they were read, or neither is.

Concurrent writers (a sensor's refresh and ``pintrest run``, which runs outside the instance's
run queue) are settled by optimistic concurrency with a bounded retry. Two appends read from the
same state conflict on the app transaction: the first commits, the second's commit fails and its
files stay uncommitted (vacuum deletes them). ``WarehouseIOManager.append_with_retry`` then
starts that append again from the table's new state: the asset's ``build_batch`` reads the
objects after the new cursor (none, if the other writer read them all), the batch is written and
committed; up to ``commit_attempts`` times, with a short jittered wait between. An overwrite that
meets a concurrent commit commits the same files again over the newer version, as often.

Lines rejected on read go to the table's quarantine table, ``<base_dir>/_quarantine/<asset
name>``. Their files are written before the append and listed in its state; the quarantine
table commits them right after (with the app transaction of the same append), or, if the run
died in between, the next append does: the append's commit decides for both.

Every ``maintain_every`` commits, the IO manager compacts the table's small files and vacuums
files that left the table more than ``vacuum_retention_hours`` ago, or that no commit ever listed.
The stream tables, which commit up to once a second, keep them ``stream_vacuum_retention_hours``.

``ConcurrentCommitError``, ``OldWarehouseFormatError``, ``QUARANTINE_SCHEMA`` and
``spark_schema`` are ``lake/delta.py``'s, importable from here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import dagster as dg
import pyarrow as pa
from dagster_pyspark import LazyPySparkResource
from deltalake import DeltaTable
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

from pintrest_assets.lake import delta as lake_delta
from pintrest_assets.lake.delta import (
    QUARANTINE_SCHEMA,
    ConcurrentCommitError,
    LakeTable,
    Writer,
    OldWarehouseFormatError,
    spark_schema,
)

__all__ = [
    "APP_ID",
    "APPENDS",
    "QUARANTINE_SCHEMA",
    "STATE_KEY",
    "CommittedAppend",
    "ConcurrentCommitError",
    "OldWarehouseFormatError",
    "TableAppend",
    "TableState",
    "TableUpdate",
    "WarehouseIOManager",
    "WarehouseTable",
    "spark_schema",
]

APP_ID = "pintrest.append"  # app transaction of incremental appends: version = appends so far
STATE_KEY = "pintrest"  # commit info key of an append's table state
APPENDS = Writer(app_id=APP_ID, info_key=STATE_KEY, version_field="appends", unit="append")


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
class TableUpdate:
    """Rows that replace the table (``replace``) or are added to it, committed with ``writer``'s
    app transaction ``version`` and, as the table's state after them, ``info``.

    ``base`` is the table's snapshot the rows were computed from (None: no table then). The
    commit is never rebased: if another writer committed since ``base``, nothing is committed
    and the output fails with ``ConcurrentCommitError``, rather than add the same rows twice.
    """

    rows: DataFrame | pa.Table
    replace: bool
    writer: Writer
    version: int
    info: Mapping
    base: DeltaTable | None


@dataclass(frozen=True)
class CommittedAppend:
    """What an asset returns after committing its batch with ``append_with_retry``: the IO
    manager only maintains the table and reports it."""

    version: int | None  # the Delta version of the commit; None when nothing was new
    batch: TableAppend
    attempts: int  # 1, or more when concurrent commits made the append start again


class WarehouseTable(LakeTable):
    """One asset's Delta table, and its quarantine table."""

    def state(self) -> TableState:
        """The state of the latest append; an empty state for a table never appended to."""
        table = self.delta()
        if table is None:
            return TableState()
        return _append_state(table)


# Tables up to this many bytes of parquet are loaded as rows in memory (``load_input``).
IN_MEMORY_BYTES = 64 << 20


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
    stream_vacuum_retention_hours: int = Field(
        default=1,
        ge=1,
        description="The same for the stream tables, which commit up to once a second: their compacted-away "
        "files and log stay this long (at 24 hours, a day's micro-batches: 86,400 small files a table). "
        "Their readers hold a file list for seconds.",
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

        def attempt(n: int) -> CommittedAppend:
            base = table.state()
            try:
                batch = build_batch(base)
                version = self._append(table, batch)
            except ConcurrentCommitError:
                raise
            except Exception as exc:
                # Another writer's commit may have released what this attempt was reading (the
                # mount deletes the batch files a commit read), before or while it read them.
                if table.state().appends == base.appends:
                    raise
                raise ConcurrentCommitError(
                    f"{name}: another run committed while this one read and wrote its batch ({exc})"
                ) from exc
            return CommittedAppend(version, batch, n)

        return lake_delta.retry_on_conflict(
            attempt,
            attempts=self.commit_attempts,
            wait_seconds=self.retry_wait_seconds,
            gave_up=lambda n, exc: (
                f"{name}: other runs committed to the table during each of {n} attempts to append; nothing "
                f"of this run was committed, the next refresh reads what it did not ({exc})"
            ),
            log=log,
        )

    def handle_output(
        self, context: dg.OutputContext, obj: DataFrame | pa.Table | TableAppend | TableUpdate | CommittedAppend
    ) -> None:
        table = self.table(_table_name(context))
        if isinstance(obj, CommittedAppend):
            version = obj.version  # committed by the asset, through append_with_retry
        elif isinstance(obj, TableAppend):
            version = self._append(table, obj)
        elif isinstance(obj, TableUpdate):
            version = self._update(table, obj)
        elif isinstance(obj, (DataFrame, pa.Table)):
            version, rows = self._replace(table, obj)
            if "dagster/row_count" not in context.output_metadata:
                context.add_output_metadata({"dagster/row_count": rows})
        else:
            raise TypeError(
                f"{table.name}: the warehouse stores Spark DataFrames, pyarrow tables, TableAppend batches or "
                f"TableUpdate rows, got {type(obj).__name__}"
            )
        maintenance = {}
        if version and version % self.maintain_every == 0:
            maintenance = self.maintain(table)
        context.add_output_metadata(_table_metadata(table, maintenance))

    def load_input(self, context: dg.InputContext) -> DataFrame:
        """The table whole; a small one (a cleaned table, an answer) as rows in memory, whose
        queries run as one task with no file scan and no shuffle (``read_in_memory``)."""
        delta = self.table(_table_name(context.upstream_output)).existing()
        small = lake_delta.parquet_bytes(delta) <= IN_MEMORY_BYTES
        return (lake_delta.read_in_memory if small else lake_delta.read_delta)(self.spark.spark_session, delta)

    def maintain(self, table: LakeTable) -> dict:
        """Compacts the table's small files, vacuums it and trims its log to the retention; the same
        for its quarantine table (``lake_delta.maintain``)."""
        return lake_delta.maintain(table, self.vacuum_retention_hours)

    def maintain_stream_table(self, table: LakeTable) -> dict:
        """``maintain`` for a stream table: with ``stream_vacuum_retention_hours``."""
        return lake_delta.maintain(table, self.stream_vacuum_retention_hours)

    def _append(self, table: WarehouseTable, batch: TableAppend) -> int | None:
        delta = _check_base(table, batch)
        if not batch.objects:
            # Nothing read: nothing to commit, but downstream assets load an empty table.
            if delta is None:
                lake_delta.create_empty(table.path, batch.schema)
            return None
        adds, new = _write_batch(table, batch)
        version = lake_delta.commit(
            table, delta, adds, batch.schema, writer=APPENDS, version=new.appends, info=new.to_commit_info()
        )
        table.commit_quarantine(APPENDS, new.appends, new.quarantine_files)
        return version

    def _update(self, table: WarehouseTable, update: TableUpdate) -> int:
        if isinstance(update.rows, pa.Table):
            adds, schema = lake_delta.write_arrow(update.rows, table.path), from_arrow_schema(update.rows.schema)
        else:
            adds, schema = lake_delta.write_files(update.rows, table.path), update.rows.schema
        return lake_delta.commit(
            table,
            update.base,
            adds,
            schema,
            mode="overwrite" if update.replace else "append",
            writer=update.writer,
            version=update.version,
            info=update.info,
            rebase=False,
        )

    def _replace(self, table: WarehouseTable, rows: DataFrame | pa.Table) -> tuple[int, int]:
        delta = table.delta()
        if isinstance(rows, pa.Table):
            adds, schema = lake_delta.write_arrow(rows, table.path), from_arrow_schema(rows.schema)
        else:
            adds, schema = lake_delta.write_files(rows, table.path), rows.schema

        def attempt(n: int) -> int:
            # The same result replaces the newer version just as well.
            snapshot = delta if n == 1 else table.delta()
            return lake_delta.commit(table, snapshot, adds, schema, mode="overwrite")

        version = lake_delta.retry_on_conflict(
            attempt,
            attempts=self.commit_attempts,
            wait_seconds=self.retry_wait_seconds,
            gave_up=lambda n, exc: (
                f"{table.name}: other runs committed to the table during each of {n} attempts to replace it; "
                f"its previous version stays ({exc})"
            ),
        )
        return version, lake_delta.row_count(adds)


def _check_base(table: WarehouseTable, batch: TableAppend) -> DeltaTable | None:
    """The table's snapshot, if the batch was read after its latest append (else
    ``ConcurrentCommitError``); commits the rejected lines of an append that committed but died
    before its quarantine did."""
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
    table.commit_quarantine(APPENDS, current.appends, current.quarantine_files)
    return delta


def _write_batch(table: WarehouseTable, batch: TableAppend) -> tuple[list, TableState]:
    """Writes the batch's rows into the table and its rejected lines beside it (files no commit
    lists yet); returns the rows' files and the table's state after the batch."""
    base = batch.base
    adds = []
    if batch.rows is not None and batch.row_count:
        adds = lake_delta.write_files(batch.rows, table.path)
    quarantine_files = ()
    if batch.quarantine is not None and batch.quarantined:
        # Rejected lines are few: one file per batch.
        quarantine_files = tuple(
            asdict(a) for a in lake_delta.write_files(batch.quarantine.coalesce(1), table.quarantine_path)
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
    return adds, new


def _append_state(table: DeltaTable) -> TableState:
    """The state the table's latest append committed, from the commit info of that commit."""
    info = APPENDS.latest_info(table)
    if info is None:
        return TableState(schema=spark_schema(table))
    return TableState.from_commit_info(info, spark_schema(table))


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


def _nullable(schema: T.StructType) -> T.StructType:
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in schema.fields])


def _table_name(context: dg.OutputContext) -> str:
    return "/".join(context.asset_key.path)
