"""One refresh of a stream table, as its Dagster asset runs it.

First a probe of the stream's shards against the table's positions (``positions.unread``): if
no record waits and the table exists, nothing starts Spark. Otherwise the table's query runs
with ``trigger(availableNow=True)``, together with the other tables' that have records waiting
(``query.run_available_now_together``: one Spark session, their waits overlap), the shards are probed again
to say how far behind their tips the table is left, and every ``maintain_every`` Delta commits
the warehouse compacts and vacuums the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import types as T

from pintrest_assets.settings import ConfigError
from pintrest_assets.stream.positions import ShardPosition, unread
from pintrest_assets.stream.query import StreamRun, run_available_now_together
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


def refresh_stream_tables(
    specs: list[TopicSpec],
    kinesis,
    warehouse_io_manager,
    spark_session: Callable[[], object],
    log=None,
) -> list[StreamRefresh | Exception]:
    """Appends what each topic's Kinesis stream holds beyond its table's positions; the tables
    with records waiting run their queries together. Returns, in order, each table's
    ``StreamRefresh`` or the exception that stopped it.

    ``kinesis`` is a ``KinesisResource``; ``warehouse_io_manager`` the ``WarehouseIOManager``
    (its ``base_dir`` holds the tables, its ``maintain`` compacts them); ``spark_session``
    returns the session, called only if a query runs.
    """
    outcomes: dict[str, StreamRefresh | Exception] = {}
    to_run = []
    for spec in specs:
        table = StreamTable.for_user(warehouse_io_manager.base_dir, spec, kinesis.user_id)
        stream = kinesis.stream_for(spec)
        before = table.state()
        try:
            shards = probe(kinesis, spec, before)
        except ConfigError as exc:
            outcomes[spec.name] = exc
            continue
        if table.delta() is not None and not any(s.waiting for s in shards):
            if log is not None:
                log.info(f"{table.name}: no record waits in {stream}; the table keeps its {before.rows} rows")
            outcomes[spec.name] = StreamRefresh(spec, stream, table, before, shards, schema=_schema(table))
        else:
            to_run.append((spec, table, stream))

    if to_run:
        spark = spark_session()
        versions = {spec.name: _version(table) for spec, table, _ in to_run}
        runs = run_available_now_together(spark, [(table, kinesis.source_options(spec)) for spec, table, _ in to_run])
        for (spec, table, stream), run in zip(to_run, runs):
            if isinstance(run, BaseException):
                outcomes[spec.name] = run
                continue
            if log is not None:
                log.info(
                    f"{table.name}: {run.records} records read from {stream} in {run.micro_batches} micro-batches "
                    f"({run.records_per_second:,.0f} records/s): {run.rows} rows appended, "
                    f"{run.quarantined} quarantined"
                    + (f", {run.replayed} micro-batches replayed after a crash and skipped" if run.replayed else "")
                )
            outcomes[spec.name] = _after_run(spec, table, stream, run, kinesis, warehouse_io_manager, versions)
    return [outcomes[spec.name] for spec in specs]


def _after_run(spec, table, stream, run, kinesis, warehouse_io_manager, versions) -> StreamRefresh | Exception:
    """Where the table stands after its run; compacted and vacuumed every ``maintain_every`` commits."""
    try:
        every = warehouse_io_manager.maintain_every
        if any(v % every == 0 for v in range(versions[spec.name] + 1, _version(table) + 1)):
            maintenance = warehouse_io_manager.maintain(table.table)
        else:
            maintenance = {}
        shards = probe(kinesis, spec, run.after)
    except Exception as exc:  # noqa: BLE001 - reported in its place
        return exc
    return StreamRefresh(
        spec, stream, table, run.after, shards, run=run, schema=_schema(table), maintenance=maintenance
    )


def _schema(table: StreamTable) -> T.StructType:
    from pintrest_assets.resources.warehouse import spark_schema

    return spark_schema(table.delta())


def _version(table: StreamTable) -> int:
    delta = table.delta()
    return delta.version() if delta is not None else -1
