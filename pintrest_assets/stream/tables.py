"""A stream table: one topic's Kinesis records, decoded and cleaned as the batch path does, in a
Delta table of the warehouse, appended to one micro-batch at a time, exactly once.

The table is ``<warehouse>/<user_id>_<topic>_table``; records that do not parse go to
``<warehouse>/_quarantine/<table>`` (``source_key`` = ``<shard id>/<sequence number>``, the
record's text, the reason), and the query's checkpoint (Spark's offset and commit logs) is
``<warehouse>/_checkpoints/<table>``.

**The same reading and cleaning as the batch path.** A record's ``data`` is decoded with the
topic's explicit schema (``lake/schemas.py``) by the batch path's own parser
(``lake/parsing.py``): a record that is not JSON, does not match the schema, or has no index
column is quarantined with its reason, and so is an empty record (which the batch path, reading
lines, never meets). The good records are cleaned by ``clean_pin`` / ``clean_geo`` /
``clean_user`` (``transform/cleaning.py``), so a stream table has the columns of the cleaned
batch table. Duplicates are kept: a stream table holds every record read, one row each, so
``rows + quarantined = records read``; a post the emulation drew twice is two rows, as in the
original's stream tables (the batch path's cleaned tables keep one row per post:
``transform/posts.py``).

**One Spark job a micro-batch.** The query's rows are defined once, on the stream
(``StreamTable.rows``): each record parsed and cleaned, with its problem, key and text. Spark
analyses that plan once, not once per micro-batch; each micro-batch is then one Spark job that
collects its rows as Arrow, and pyarrow writes the good rows and the rejected records as parquet
(``lake/delta.py``'s ``write_arrow``). A micro-batch a second is a few rows, where planning
DataFrames and a Spark write job per batch cost most of the time.

**Exactly once.** A micro-batch's parquet files go into a new directory of the table, and
delta-rs commits them with the app transaction ``(STREAM_APP_ID, batch id)`` and the table's
state after the batch (running counts, the last sequence number read per shard) in the commit
info, through the warehouse's Delta layer (``lake/delta.py``, the writer ``MICRO_BATCHES``): the
rows and the counts are in the log together, or neither is. Spark logs a batch's
offsets before running it and marks it committed in the checkpoint after the Delta commit; a
consumer killed in between replays the batch, with the same id and the same records, and the
writer skips it because the table's app transaction already has that version. This is what
Delta's own streaming sink does with its ``txn`` actions. Files written by a batch that died
before its commit are listed by no commit; vacuum deletes them.

The quarantine table is committed right after the table, with the same app transaction; the
table's commit lists its files, so if the consumer died in between, the next batch (or the next
run) commits them: the table's commit decides for both.

A table and its checkpoint go together. A checkpoint lost while the table stays would make the
query read every retained record again and append it twice; a table lost while its checkpoint
stays would leave out everything read before. Either is refused with a message saying what to
delete (``StreamStateMismatch``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.transaction import AddAction
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pintrest_assets.kinesis.spark_source import read_summaries
from pintrest_assets.lake.parsing import parse_records
from pintrest_assets.lake.schemas import SCHEMAS
from pintrest_assets.lake import delta as lake_delta
from pintrest_assets.lake.delta import QUARANTINE_SCHEMA, LakeTable, Writer
from pintrest_assets.topics import TOPICS_BY_NAME, TopicSpec
from pintrest_assets.transform.cleaning import CLEANERS

STREAM_APP_ID = "pintrest.stream"  # app transaction of a stream table's micro-batches: version = batch id
STATE_KEY = "pintrest.stream"  # commit info key of the table's state after a micro-batch
MICRO_BATCHES = Writer(app_id=STREAM_APP_ID, info_key=STATE_KEY, version_field="batch_id", unit="micro-batch")
CHECKPOINTS_DIR = "_checkpoints"
EMPTY_RECORD = "empty record"
# The columns of a query's rows (``StreamTable.rows``) besides the table's: each record's problem,
# key and text (for the quarantine) and where it came from (for the table's state).
RECORD_COLUMNS = ("_problem", "_key", "_line", "_shard", "_sequence", "_arrival")


class StreamStateMismatch(RuntimeError):
    """A stream table and its checkpoint do not belong together (one was deleted or replaced)."""


@dataclass(frozen=True)
class StreamState:
    """A stream table's state after its latest micro-batch, as that batch's commit recorded it."""

    batch_id: int | None = None  # the latest micro-batch committed; None: none yet
    query_id: str | None = None  # the streaming query (its checkpoint) the batches came from
    records_read: int = 0  # records read from the stream in all
    rows: int = 0
    quarantined: int = 0
    # shard id -> the sequence number of the last record read from it (a decimal string)
    positions: Mapping[str, str] = field(default_factory=dict)
    # shard id -> ApproximateArrivalTimestamp (epoch seconds) of the newest record read from it
    arrivals: Mapping[str, float] = field(default_factory=dict)
    # The quarantine files of the latest batch (add actions as dicts), committed after it.
    quarantine_files: tuple[dict, ...] = ()

    def to_commit_info(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "query_id": self.query_id,
            "records_read": self.records_read,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "positions": dict(sorted(self.positions.items())),
            "arrivals": dict(sorted(self.arrivals.items())),
            "quarantine_files": list(self.quarantine_files),
        }

    @classmethod
    def from_commit_info(cls, info: Mapping) -> StreamState:
        return cls(
            batch_id=info["batch_id"],
            query_id=info["query_id"],
            records_read=info["records_read"],
            rows=info["rows"],
            quarantined=info["quarantined"],
            positions=dict(info["positions"]),
            arrivals={k: float(v) for k, v in info["arrivals"].items()},
            quarantine_files=tuple(info["quarantine_files"]),
        )


@dataclass(frozen=True)
class BatchResult:
    """What one micro-batch did to the table."""

    batch_id: int
    records: int = 0  # records read from the stream
    rows: int = 0  # rows appended
    quarantined: int = 0
    replayed: bool = False  # a batch the table had committed before a crash: skipped
    seconds: float = 0.0
    state: StreamState | None = None  # the table's state after the batch (None: replayed)


class StreamTable:
    """The stream table of one topic in the warehouse, its quarantine table and its checkpoint."""

    def __init__(self, warehouse_dir: str | os.PathLike, name: str, spec: TopicSpec | str):
        self.spec = TOPICS_BY_NAME[spec] if isinstance(spec, str) else spec
        self.name = name
        self.table = LakeTable(warehouse_dir, name)
        self.checkpoint = Path(warehouse_dir) / CHECKPOINTS_DIR / name
        self._schema: T.StructType | None = None
        # The snapshot the last micro-batch committed, brought up to date before the next one
        # (delta-rs reads only the commits since), and the state that batch committed, with
        # its version: used as long as nobody else committed since (else read from the log).
        self._delta: DeltaTable | None = None
        self._committed: tuple[int, StreamState] | None = None

    @classmethod
    def for_user(cls, warehouse_dir: str | os.PathLike, spec: TopicSpec, user_id: str) -> StreamTable:
        """``<user_id>_<topic>_table``."""
        return cls(warehouse_dir, spec.stream_table(user_id), spec)

    @property
    def path(self) -> Path:
        return self.table.path

    @property
    def quarantine_path(self) -> Path:
        return self.table.quarantine_path

    @property
    def raw_schema(self) -> T.StructType:
        return SCHEMAS[self.spec.name]

    def schema(self, spark) -> T.StructType:
        """The table's columns: those of the topic's cleaned table."""
        if self._schema is None:
            self._schema = clean(spark.createDataFrame([], self.raw_schema), self.spec).schema
        return self._schema

    # -- reading -------------------------------------------------------------------------------

    def delta(self) -> DeltaTable | None:
        return self.table.delta()

    def state(self) -> StreamState:
        """The state after the latest micro-batch committed; an empty state for a table without."""
        return _stream_state(self.delta())

    def read(self, spark) -> DataFrame:
        """The whole table as a Spark DataFrame (from its current file list)."""
        return self.table.read(spark)

    def read_quarantine(self, spark) -> DataFrame:
        return self.table.read_quarantine(spark)

    # -- the checkpoint ------------------------------------------------------------------------

    def checkpoint_query_id(self) -> str | None:
        """The id of the query the checkpoint belongs to (Spark's ``metadata`` file); None without one."""
        try:
            first = (self.checkpoint / "metadata").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        return json.loads(first).get("id")

    def checkpoint_batches(self) -> list[int]:
        """The micro-batches the checkpoint marks committed."""
        commits = self.checkpoint / "commits"
        return sorted(int(p.name) for p in commits.iterdir() if p.name.isdigit()) if commits.is_dir() else []

    def batch_read(self, batch_id: int) -> dict[str, dict] | None:
        """What micro-batch ``batch_id`` read from each shard (``{shard: {records, last,
        arrived}}``), as the source wrote it into the batch's end offset, which Spark logs in
        the checkpoint (``offsets/<batch id>``) before it runs the batch; None if it does not say."""
        try:
            lines = (self.checkpoint / "offsets" / str(batch_id)).read_text().splitlines()
        except OSError:
            return None
        # "v1", the batch's metadata, then the end offset of each source (this query has one).
        if len(lines) < 3:
            return None
        try:
            offset = json.loads(lines[2])
        except ValueError:
            return None
        return read_summaries(offset) if isinstance(offset, dict) else None

    def prepare(self, spark) -> StreamState:
        """Before a query starts: refuses a table and a checkpoint that do not belong together,
        creates the table empty if it does not exist (readers find it), commits the quarantine
        files of a batch that died after its commit; returns the table's state."""
        state = self.state()
        query_id = self.checkpoint_query_id()
        if state.batch_id is not None and query_id != state.query_id:
            lost = "is gone" if query_id is None else f"belongs to another query ({query_id})"
            raise StreamStateMismatch(
                f"{self.name}: the table holds micro-batches 0-{state.batch_id} of streaming query "
                f"{state.query_id}, but its checkpoint {self.checkpoint} {lost}: the query would read the "
                f"stream again from its trim horizon and append every record twice. Restore the checkpoint, "
                f"or delete the table ({self.path}) and its quarantine ({self.quarantine_path}) with it to "
                f"rebuild them from what Kinesis retains."
            )
        committed = self.checkpoint_batches()
        if state.batch_id is None and committed:
            raise StreamStateMismatch(
                f"{self.name}: the checkpoint {self.checkpoint} has micro-batches up to {committed[-1]} "
                f"committed, but the table {self.path} holds none of them (deleted or replaced?): the query "
                f"would go on after them and leave them out. Delete the checkpoint too, to read the stream "
                f"again from its trim horizon."
            )
        if self.delta() is None:
            lake_delta.create_empty(self.path, self.schema(spark))
        _commit_quarantine(self.table, state)
        return state

    # -- writing -------------------------------------------------------------------------------

    def rows(self, records: DataFrame) -> DataFrame:
        """What the query appends, defined once on its stream: each record of the Kinesis source
        (``partitionKey``, ``data``, ``stream``, ``shardId``, ``sequenceNumber``,
        ``approximateArrivalTimestamp``) as the table's cleaned columns, and ``RECORD_COLUMNS``:
        ``_problem`` (null for a good record, else why it is quarantined: an empty record, not
        JSON, not of the schema, no index), ``_key`` (``<shard id>/<sequence number>``), ``_line``
        (its text), ``_shard``, ``_sequence`` and ``_arrival``. A rejected record's cleaned
        columns are null."""
        lines = records.select(
            F.concat_ws("/", "shardId", "sequenceNumber").alias("key"),
            F.col("data").cast("string").alias("line"),
            F.col("shardId").alias("_shard"),
            F.col("sequenceNumber").alias("_sequence"),
            F.col("approximateArrivalTimestamp").alias("_arrival"),
        )
        parsed = parse_records(lines, self.raw_schema, self.spec.index_column, blank=EMPTY_RECORD)
        flat = parsed.select(
            F.when(F.col("problem").isNull(), F.col("record")).alias("record"),
            F.col("problem").alias("_problem"),
            F.col("key").alias("_key"),
            F.col("line").alias("_line"),
            "_shard",
            "_sequence",
            "_arrival",
        ).select("record.*", *RECORD_COLUMNS)
        return CLEANERS[self.spec.name](flat, keep=RECORD_COLUMNS)

    def write_batch(self, batch: DataFrame, batch_id: int) -> BatchResult:
        """Appends one micro-batch of the query's ``rows`` unless the table has it already:
        ``foreachBatch``'s function. One Spark job collects the batch, parsed and cleaned, as
        Arrow; pyarrow writes the good rows into the table's directory and the rejected records
        into the quarantine's, and delta-rs commits them."""
        started = time.perf_counter()
        delta, state = self._latest()
        _commit_quarantine(self.table, state)
        if state.batch_id is not None and batch_id <= state.batch_id:
            return BatchResult(batch_id, replayed=True, seconds=time.perf_counter() - started)

        # What the batch read per shard, from its offset in the checkpoint (no Spark job); a
        # batch an earlier reader planned does not say, and is counted from its rows.
        shards = self.batch_read(batch_id)
        count = None if shards is None else sum(s["records"] for s in shards.values())
        collected = batch.toArrow() if count != 0 else None
        if shards is None:
            shards = shard_summary(collected)
            count = collected.num_rows
        adds: list[AddAction] = []
        quarantine_adds: list[AddAction] = []
        if collected is not None:
            rejected = pc.is_valid(collected["_problem"])
            adds = lake_delta.write_arrow(
                collected.filter(pc.invert(rejected)).drop_columns(list(RECORD_COLUMNS)), self.path
            )
            quarantine_adds = lake_delta.write_arrow(
                collected.filter(rejected)
                .select(["_key", "_line", "_problem"])
                .rename_columns(QUARANTINE_SCHEMA.fieldNames()),
                self.quarantine_path,
            )
        rows, quarantined = lake_delta.row_count(adds), lake_delta.row_count(quarantine_adds)
        if rows + quarantined != count:
            raise RuntimeError(
                f"{self.name}: micro-batch {batch_id} read {count} records but wrote {rows} rows and "
                f"{quarantined} quarantined; nothing was committed"
            )
        new = StreamState(
            batch_id=batch_id,
            query_id=self.checkpoint_query_id(),
            records_read=state.records_read + count,
            rows=state.rows + rows,
            quarantined=state.quarantined + quarantined,
            positions={**state.positions, **{s: v["last"] for s, v in shards.items()}},
            arrivals={**state.arrivals, **{s: v["arrived"] for s, v in shards.items()}},
            quarantine_files=tuple(asdict(a) for a in quarantine_adds),
        )
        try:
            version = lake_delta.commit(
                self.table,
                delta,
                adds,
                self.schema(batch.sparkSession),
                writer=MICRO_BATCHES,
                version=batch_id,
                info=new.to_commit_info(),
                # A commit that meets another is not rebased onto it by delta-rs: it fails, and the
                # query replays the batch against the table as it then is (skipped if committed).
                rebase=False,
                then="the query replays it when it runs again",
            )
        except lake_delta.ConcurrentCommitError:
            self._delta = self._committed = None
            raise
        self._delta, self._committed = delta, (version, new)
        _commit_quarantine(self.table, new)
        return BatchResult(batch_id, count, rows, quarantined, seconds=time.perf_counter() - started, state=new)

    def _latest(self) -> tuple[DeltaTable | None, StreamState]:
        """The table's latest snapshot and the state its latest micro-batch committed."""
        delta = self._delta
        if delta is None:
            delta = self.delta()
        else:
            delta.update_incremental()
        known = self._committed
        if delta is not None and known is not None and known[0] == delta.version():
            return delta, known[1]
        return delta, _stream_state(delta)


def clean(raw: DataFrame, spec: TopicSpec) -> DataFrame:
    """The batch path's cleaning of the topic (``clean_pin``, ``clean_geo``, ``clean_user``)."""
    return CLEANERS[spec.name](raw)


def shard_summary(rows: pa.Table) -> dict[str, dict]:
    """Per shard of a micro-batch's ``rows``: records, the last sequence number, the newest
    arrival (epoch s)."""
    summary: dict[str, dict] = {}
    arrivals = rows["_arrival"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    for shard, sequence, arrival in zip(rows["_shard"].to_pylist(), rows["_sequence"].to_pylist(), arrivals):
        seen = summary.setdefault(shard, {"records": 0, "last": sequence, "arrived": 0.0})
        seen["records"] += 1
        # Sequence numbers are decimal strings of up to 128 bits: compared as integers.
        if int(sequence) > int(seen["last"]):
            seen["last"] = sequence
        seen["arrived"] = max(seen["arrived"], arrival / 1_000_000)
    return summary


def _stream_state(table: DeltaTable | None) -> StreamState:
    """The state the table's latest micro-batch committed, from that commit's info."""
    info = MICRO_BATCHES.latest_info(table)
    return StreamState() if info is None else StreamState.from_commit_info(info)


def _commit_quarantine(table: LakeTable, state: StreamState) -> None:
    """Commits the quarantine files of the batch that left ``state``, unless they are committed."""
    table.commit_quarantine(MICRO_BATCHES, state.batch_id, state.quarantine_files)
