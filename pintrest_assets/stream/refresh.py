"""One refresh of a stream table, as its Dagster asset runs it.

First a probe of the stream's shards against the table's positions (``positions.unread``): if
no record waits and the table exists, nothing starts Spark. Otherwise the table's query runs
with ``trigger(availableNow=True)`` (``query.run_available_now``), the shards are probed again
to say how far behind their tips the table is left, and every ``maintain_every`` Delta commits
the warehouse compacts and vacuums the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import types as T

from pintrest_assets.settings import ConfigError
from pintrest_assets.stream.positions import ShardPosition, unread
from pintrest_assets.stream.query import StreamRun, run_available_now
from pintrest_assets.stream.tables import StreamState, StreamTable
from pintrest_assets.topics import TopicSpec


@dataclass
class StreamRefresh:
    """What a refresh did, and where the table stands after it."""

    spec: TopicSpec
    stream: str
    table: StreamTable
    state: StreamState  # after the refresh
    shards: list[ShardPosition]  # after the refresh
    run: StreamRun | None = None  # None: nothing was waiting, the query did not run
    schema: T.StructType | None = None  # the table's columns, as its Delta log has them
    maintenance: dict = field(default_factory=dict)

    @property
    def micro_batches(self) -> int:
        return self.run.micro_batches if self.run else 0

    @property
    def records(self) -> int:
        return self.run.records if self.run else 0

    @property
    def rows(self) -> int:
        return self.run.rows if self.run else 0

    @property
    def quarantined(self) -> int:
        return self.run.quarantined if self.run else 0


def probe(kinesis, spec: TopicSpec, state: StreamState) -> list[ShardPosition]:
    """The stream's shards against ``state``; a ``ConfigError`` naming the setting when the
    stream cannot be reached."""
    from botocore.exceptions import BotoCoreError, ClientError

    stream = kinesis.stream_for(spec)
    client = kinesis.client()
    try:
        return unread(client, stream, state.positions)
    except client.exceptions.ResourceNotFoundException:
        raise ConfigError(
            "PINTREST_KINESIS_ENDPOINT_URL",
            f"Kinesis stream {stream} does not exist at {kinesis.where()}: the gateway creates the three streams "
            f"when it starts (`pintrest gateway`, `pintrest dev`); check PINTREST_USER_ID",
        ) from None
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(
            "PINTREST_KINESIS_ENDPOINT_URL",
            f"cannot read Kinesis stream {stream} at {kinesis.where()}: {exc} (the embedded kinesalite runs while "
            f"the gateway does: `pintrest dev` or `pintrest gateway`)",
        ) from None


def refresh_stream_table(
    spec: TopicSpec,
    kinesis,
    warehouse_io_manager,
    spark_session: Callable[[], object],
    log=None,
) -> StreamRefresh:
    """Appends what the topic's Kinesis stream holds beyond the table's positions.

    ``kinesis`` is a ``KinesisResource``; ``warehouse_io_manager`` the ``WarehouseIOManager``
    (its ``base_dir`` holds the table, its ``maintain`` compacts it); ``spark_session`` returns
    the session, called only if the query runs.
    """
    table = StreamTable.for_user(warehouse_io_manager.base_dir, spec, kinesis.user_id)
    stream = kinesis.stream_for(spec)
    before = table.state()
    shards = probe(kinesis, spec, before)
    if table.delta() is not None and not any(s.waiting for s in shards):
        if log is not None:
            log.info(f"{table.name}: no record waits in {stream}; the table keeps its {before.rows} rows")
        return StreamRefresh(spec, stream, table, before, shards, schema=_schema(table))

    spark = spark_session()
    version_before = _version(table)
    run = run_available_now(spark, table, kinesis.source_options(spec))
    if log is not None:
        log.info(
            f"{table.name}: {run.records} records read from {stream} in {run.micro_batches} micro-batches "
            f"({run.records_per_second:,.0f} records/s): {run.rows} rows appended, {run.quarantined} quarantined"
            + (f", {run.replayed} micro-batches replayed after a crash and skipped" if run.replayed else "")
        )
    maintenance = {}
    version_after = _version(table)
    every = warehouse_io_manager.maintain_every
    if any(v % every == 0 for v in range(version_before + 1, version_after + 1)):
        maintenance = warehouse_io_manager.maintain(table.table)
    return StreamRefresh(
        spec,
        stream,
        table,
        run.after,
        probe(kinesis, spec, run.after),
        run=run,
        schema=_schema(table),
        maintenance=maintenance,
    )


def _schema(table: StreamTable) -> T.StructType:
    from pintrest_assets.resources.warehouse import spark_schema

    return spark_schema(table.delta())


def _version(table: StreamTable) -> int:
    delta = table.delta()
    return delta.version() if delta is not None else -1
