"""The warehouse: each asset's Spark DataFrame as a parquet table under ``<base_dir>/<asset name>/``.

Spark DataFrames cannot be pickled, so assets that return one are stored here. A table is a
directory of batches (``batch-000001-<id>/``, each a parquet dataset) and a state file,
``_table.json``, that lists the batches it is made of. The state file is the commit point: it is
replaced atomically after the batch is written, so a run that dies half-way leaves a batch
directory nobody reads (removed by the next commit) and the table as it was. Files whose name
starts with ``_`` are invisible to Spark.

An asset returns either a DataFrame, which replaces the table, or a ``TableAppend``, which adds
a batch and moves the table's source cursor (for tables read incrementally from the bucket).
Appended batches are merged as they pile up, so a table that is refreshed every few seconds for
months stays a handful of directories (see ``merge_start``).
Lines rejected on read go beside the table, as JSON lines, under
``<base_dir>/_quarantine/<asset name>/<batch>/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import dagster as dg
from dagster_pyspark import LazyPySparkResource
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from pintrest_assets.files import write_atomically

STATE_FILE = "_table.json"
QUARANTINE_DIR = "_quarantine"
_BATCH_PREFIX = "batch-"
_STATE_FORMAT = 1
MERGE_RUN = 8  # newest batches of comparable size merged at once


@dataclass(frozen=True)
class TableState:
    """What a table is made of, as committed in its state file."""

    version: int = 0  # commits so far; a commit must start from the version it read
    schema: T.StructType | None = None
    batches: tuple[str, ...] = ()  # batch directories, oldest first
    batch_rows: tuple[int, ...] = ()  # rows in each batch directory
    quarantine_batches: tuple[str, ...] = ()  # batch directories under the quarantine directory
    rows: int = 0
    quarantined: int = 0  # lines rejected on read, kept under the quarantine directory
    objects: int = 0  # source objects read
    cursor: Mapping[str, str] = field(default_factory=dict)  # source position, e.g. partition prefix -> last key
    summary: Mapping[str, dict] = field(default_factory=dict)  # running per-column statistics, kept by the asset

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _STATE_FORMAT,
                "version": self.version,
                "schema": None if self.schema is None else self.schema.jsonValue(),
                "batches": list(self.batches),
                "batch_rows": list(self.batch_rows),
                "quarantine_batches": list(self.quarantine_batches),
                "rows": self.rows,
                "quarantined": self.quarantined,
                "objects": self.objects,
                "cursor": dict(sorted(self.cursor.items())),
                "summary": dict(self.summary),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> TableState:
        data = json.loads(text)
        if data.get("format") != _STATE_FORMAT:
            raise ValueError(f"unknown table state format {data.get('format')!r}")
        return cls(
            version=data["version"],
            schema=None if data["schema"] is None else T.StructType.fromJson(data["schema"]),
            batches=tuple(data["batches"]),
            # Unknown for tables written before batches were merged: 0, so they merge first.
            batch_rows=tuple(data["batch_rows"] if "batch_rows" in data else [0] * len(data["batches"])),
            quarantine_batches=tuple(data["quarantine_batches"]),
            rows=data["rows"],
            quarantined=data["quarantined"],
            objects=data["objects"],
            cursor=data["cursor"],
            summary=data["summary"],
        )


@dataclass(frozen=True)
class TableAppend:
    """A batch to add to an incremental table: what an asset returns instead of a DataFrame.

    ``base`` is the state the batch was read after; the commit fails if another run committed
    since. ``rows`` (``None`` when nothing is new) are appended, ``quarantine`` (``source_key``,
    ``line``, ``reason``) is kept beside the table, and the counts, ``cursor`` and ``summary``
    (the whole table's, after the batch) move the table's running totals, so no refresh has to
    read the whole table.
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


class ConcurrentCommitError(Exception):
    """Another run committed to the table after this run read its state."""


class WarehouseTable:
    """One asset's table: its batch directories, its state file and its quarantine."""

    def __init__(self, base_dir: str | os.PathLike, name: str):
        self.name = name
        self.path = Path(base_dir) / name
        self.quarantine_path = Path(base_dir) / QUARANTINE_DIR / name
        self._state_path = self.path / STATE_FILE

    def state(self) -> TableState:
        """The committed state; an empty state for a table never written."""
        try:
            return TableState.from_json(self._state_path.read_text())
        except FileNotFoundError:
            return TableState()

    def new_batch(self, version: int) -> str:
        """A fresh batch directory name: ordered by version, unique across retries and runs."""
        return f"{_BATCH_PREFIX}{version:06d}-{uuid.uuid4().hex[:8]}"

    def commit(self, base: TableState, new: TableState) -> None:
        """Make ``new`` the table's state if the table is still at ``base``; drop unlisted batches."""
        self.path.mkdir(parents=True, exist_ok=True)
        with self._locked():
            current = self.state()
            if current.version != base.version:
                raise ConcurrentCommitError(
                    f"{self.name}: another run committed version {current.version} after this run read "
                    f"version {base.version}; nothing was committed, run it again"
                )
            write_atomically(self._state_path, new.to_json().encode())
            # Left by runs that died before their commit, or replaced by this one.
            for directory, listed in ((self.path, new.batches), (self.quarantine_path, new.quarantine_batches)):
                for stale in _batch_dirs(directory) - set(listed):
                    shutil.rmtree(directory / stale, ignore_errors=True)

    def read(self, spark) -> DataFrame:
        """The whole table as a Spark DataFrame."""
        state = self.state()
        if state.schema is None:
            raise FileNotFoundError(f"{self.name} has no table in {self.path}: materialize it first")
        if not state.batches:
            return spark.createDataFrame([], state.schema)
        return spark.read.schema(state.schema).parquet(*(str(self.path / b) for b in state.batches))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / "_table.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores Spark DataFrames as parquet tables under ``base_dir`` and loads them back whole."""

    base_dir: str = Field(description="The warehouse directory: one table per asset under it.")
    # Any lazy dagster-pyspark resource (``SparkResource`` in the project): the session starts
    # only when a downstream asset loads a table.
    spark: LazyPySparkResource = Field(description="The Spark session that loads tables for downstream assets.")

    def table(self, name: str) -> WarehouseTable:
        return WarehouseTable(self.base_dir, name)

    def handle_output(self, context: dg.OutputContext, obj: DataFrame | TableAppend) -> None:
        table = self.table(_table_name(context))
        if isinstance(obj, TableAppend):
            self._append(context, table, obj)
        elif isinstance(obj, DataFrame):
            self._replace(context, table, obj)
        else:
            raise TypeError(
                f"{table.name}: the warehouse stores Spark DataFrames or TableAppend batches, got {type(obj).__name__}"
            )

    def load_input(self, context: dg.InputContext) -> DataFrame:
        return self.table(_table_name(context.upstream_output)).read(self.spark.spark_session)

    def _append(self, context: dg.OutputContext, table: WarehouseTable, batch: TableAppend) -> None:
        base = batch.base
        if base.schema is not None and base.schema != batch.schema:
            raise ValueError(
                f"{table.name}: the batch's schema differs from the table's; "
                f"table {base.schema.simpleString()}, batch {batch.schema.simpleString()}"
            )
        name = table.new_batch(base.version + 1)
        batches, batch_rows, quarantine_batches = base.batches, base.batch_rows, base.quarantine_batches
        # Parquet and quarantine first, state last: a crash in between leaves them unlisted.
        if batch.rows is not None and batch.row_count:
            batch.rows.write.parquet(str(table.path / name))
            batches, batch_rows = (*batches, name), (*batch_rows, batch.row_count)
            batches, batch_rows = self._merge(table, base.version + 1, batch.schema, batches, batch_rows)
        if batch.quarantine is not None and batch.quarantined:
            # Rejected lines are few: one file per batch is the easiest to read.
            batch.quarantine.coalesce(1).write.json(str(table.quarantine_path / name))
            quarantine_batches = (*quarantine_batches, name)
        new = replace(
            base,
            version=base.version + 1,
            schema=batch.schema,
            batches=batches,
            batch_rows=batch_rows,
            quarantine_batches=quarantine_batches,
            rows=base.rows + batch.row_count,
            quarantined=base.quarantined + batch.quarantined,
            objects=base.objects + batch.objects,
            cursor=dict(batch.cursor),
            summary=dict(batch.summary),
        )
        table.commit(base, new)
        context.add_output_metadata(
            {"path": dg.MetadataValue.path(str(table.path)), "warehouse_batches": len(batches)}
        )

    def _merge(
        self, table: WarehouseTable, version: int, schema: T.StructType, batches: tuple[str, ...], rows: tuple[int, ...]
    ) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """Rewrite the newest batches as one when ``merge_start`` says so; the merged-away
        directories stay until the commit, which drops what it does not list."""
        start = merge_start(rows)
        if start is None:
            return batches, rows
        merged = table.new_batch(version)
        spark = self.spark.spark_session
        spark.read.schema(schema).parquet(*(str(table.path / b) for b in batches[start:])).write.parquet(
            str(table.path / merged)
        )
        return (*batches[:start], merged), (*rows[:start], sum(rows[start:]))

    def _replace(self, context: dg.OutputContext, table: WarehouseTable, df: DataFrame) -> None:
        base = table.state()
        name = table.new_batch(base.version + 1)
        df.write.parquet(str(table.path / name))
        # Counting parquet reads only the footers.
        rows = df.sparkSession.read.parquet(str(table.path / name)).count()
        table.commit(
            base,
            TableState(version=base.version + 1, schema=df.schema, batches=(name,), batch_rows=(rows,), rows=rows),
        )
        metadata = {"path": dg.MetadataValue.path(str(table.path))}
        if "dagster/row_count" not in context.output_metadata:
            metadata["dagster/row_count"] = rows
        context.add_output_metadata(metadata)


def merge_start(batch_rows: tuple[int, ...], run: int = MERGE_RUN) -> int | None:
    """Where the newest batches to merge begin, or None: size-tiered merging, as log-structured
    stores do.

    The newest batches that are each no bigger than all the batches after them together form a
    run of comparable sizes; once the run is ``run`` batches long, it is merged into one. Refreshes
    of any size then leave O(log n) batches and rewrite each row O(log n) times over the table's
    life, and about one refresh in ``run`` pays for a merge.
    """
    if not batch_rows:
        return None
    start, after = len(batch_rows) - 1, batch_rows[-1]
    while start > 0 and batch_rows[start - 1] <= after:
        start -= 1
        after += batch_rows[start]
    return start if len(batch_rows) - start >= run else None


def _table_name(context: dg.OutputContext) -> str:
    return "/".join(context.asset_key.path)


def _batch_dirs(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {p.name for p in directory.iterdir() if p.is_dir() and p.name.startswith(_BATCH_PREFIX)}


