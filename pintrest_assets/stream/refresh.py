"""One refresh of a stream table, as its Dagster asset runs it (a click, ``pintrest run --stream``).

**With the streaming service running** (it holds the writer lock, ``service.py``), a refresh
runs no query: it waits until the service has committed every record that had arrived in the
streams when the refresh started (each shard's first unread record, if any, arrived after that),
up to ``wait_seconds``, and reports where the tables then stand. Two writers never race, and a
click never fails because the service runs. A service that does not catch up in time (stuck,
or far behind) fails the refresh with a message that says so.

**With no service**, the refresh takes the writer lock itself (a service started meanwhile
waits for it) and runs the queries with availableNow. First a probe of the stream's shards against the table's positions (``positions.unread``): if
no record waits and the table exists, nothing starts Spark. Otherwise the table's query runs
with ``trigger(availableNow=True)``, together with the other tables' that have records waiting
(``query.run_available_now_together``: one Spark session, their waits overlap), the shards are probed again
to say how far behind their tips the table is left, and every ``maintain_every`` Delta commits
the warehouse compacts and vacuums the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import types as T

from pintrest_assets.settings import ConfigError
from pintrest_assets.kinesis.positions import ShardPosition, unread
from pintrest_assets.stream.query import MicroBatch, StreamRun, run_available_now_together
from pintrest_assets.stream.service import REFRESH, SERVICE, WriterLock, describe
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
    by_service: bool = False  # the streaming service appended the rows; the refresh waited for it
    waited_seconds: float = 0.0

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


def probe(kinesis, spec: TopicSpec, state: StreamState, client=None) -> list[ShardPosition]:
    """The stream's shards against ``state``; a ``ConfigError`` naming the setting when the
    stream cannot be reached. ``client``: a client of ``kinesis`` to use (else a new one)."""
    from botocore.exceptions import BotoCoreError, ClientError

    stream = kinesis.stream_for(spec)
    client = client or kinesis.client()
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
            maintenance = warehouse_io_manager.maintain_stream_table(table.table)
        else:
            maintenance = {}
        shards = probe(kinesis, spec, run.after)
    except Exception as exc:  # noqa: BLE001 - reported in its place
        return exc
    return StreamRefresh(
        spec, stream, table, run.after, shards, run=run, schema=_schema(table), maintenance=maintenance
    )


def _schema(table: StreamTable) -> T.StructType:
    from pintrest_assets.lake.warehouse import spark_schema

    return spark_schema(table.delta())


def _version(table: StreamTable) -> int:
    delta = table.delta()
    return delta.version() if delta is not None else -1


class ServiceBehind(RuntimeError):
    """The streaming service holds the stream tables but did not catch up in time."""


def refresh_or_wait(
    specs: list[TopicSpec],
    kinesis,
    warehouse_io_manager,
    spark_session: Callable[[], object],
    log=None,
    wait_seconds: float = 300.0,
    poll_seconds: float = 0.5,
) -> list[StreamRefresh | Exception]:
    """A refresh of the stream tables that never races the streaming service: with the service
    running, waits for it (``wait_for_service``); otherwise, holding the writer lock, runs the
    queries (``refresh_stream_tables``). See the module's documentation."""
    lock = WriterLock(warehouse_io_manager.base_dir)
    started = time.time()
    deadline = time.monotonic() + wait_seconds
    said = False
    while True:
        if lock.acquire(REFRESH, timeout=0):
            try:
                return refresh_stream_tables(specs, kinesis, warehouse_io_manager, spark_session, log=log)
            finally:
                lock.release()
        holder = lock.holder()
        if holder.get("role") == SERVICE and lock.held_by_another():
            if log is not None:
                log.info(f"{describe(holder)} appends to the stream tables: waiting for it to commit what waits")
            return wait_for_service(
                specs, kinesis, warehouse_io_manager, spark_session, lock, started, deadline, log, poll_seconds
            )
        if time.monotonic() > deadline:
            raise ServiceBehind(
                f"{describe(holder)} held the stream tables for {wait_seconds:g} s: this refresh did not run"
            )
        if log is not None and not said:
            log.info(f"{describe(holder)} holds the stream tables: waiting for it to end")
            said = True
        time.sleep(poll_seconds)


def wait_for_service(
    specs: list[TopicSpec],
    kinesis,
    warehouse_io_manager,
    spark_session: Callable[[], object],
    lock: WriterLock,
    since: float,
    deadline: float,
    log=None,
    poll_seconds: float = 0.5,
) -> list[StreamRefresh | Exception]:
    """Waits until the service has committed, to each table, every record that arrived before
    ``since`` (epoch seconds); each table's ``StreamRefresh`` (``by_service``), or the exception
    that says why it did not happen by ``deadline`` (``time.monotonic()``). If the service stops
    meanwhile, the tables not caught up yet are refreshed here."""
    tables = {spec.name: StreamTable.for_user(warehouse_io_manager.base_dir, spec, kinesis.user_id) for spec in specs}
    before = {name: table.state() for name, table in tables.items()}
    outcomes: dict[str, StreamRefresh | Exception] = {}
    pending = list(specs)
    while pending:
        for spec in list(pending):
            table = tables[spec.name]
            state = table.state()
            try:
                shards = probe(kinesis, spec, state)
            except ConfigError as exc:
                outcomes[spec.name] = exc
                pending.remove(spec)
                continue
            if all(not s.waiting or (s.next_arrival or 0) > since for s in shards):
                outcomes[spec.name] = _handed_over(spec, kinesis, table, before[spec.name], state, shards, since)
                pending.remove(spec)
        if not pending:
            break
        if not lock.held_by_another():
            if log is not None:
                log.info("the stream service stopped: this refresh runs the remaining tables' queries")
            rest = refresh_or_wait(
                pending, kinesis, warehouse_io_manager, spark_session, log, max(0.0, deadline - time.monotonic())
            )
            outcomes.update({spec.name: outcome for spec, outcome in zip(pending, rest)})
            break
        if time.monotonic() > deadline:
            holder = lock.holder()
            for spec in pending:
                state = tables[spec.name].state()
                outcomes[spec.name] = ServiceBehind(
                    f"{tables[spec.name].name}: {describe(holder)} did not commit the records that waited in "
                    f"{kinesis.stream_for(spec)} when this refresh started, in {time.time() - since:.0f} s of "
                    f"waiting; the table stands at micro-batch {state.batch_id} ({state.rows} rows). Is the "
                    f"service stuck or far behind? Its terminal says; stop it (Ctrl-C) and refresh again to run "
                    f"the queries here."
                )
            break
        time.sleep(poll_seconds)
    return [outcomes[spec.name] for spec in specs]


def _handed_over(spec, kinesis, table, before: StreamState, after: StreamState, shards, since: float) -> StreamRefresh:
    first = -1 if before.batch_id is None else before.batch_id
    last = -1 if after.batch_id is None else after.batch_id
    run = StreamRun(
        table=table.name,
        stream=kinesis.stream_for(spec),
        before=before,
        after=after,
        batches=[MicroBatch(batch_id) for batch_id in range(first + 1, last + 1)],
        seconds=time.time() - since,
    )
    return StreamRefresh(
        spec,
        kinesis.stream_for(spec),
        table,
        after,
        shards,
        run=run,
        schema=_schema(table) if table.delta() is not None else None,
        by_service=True,
        waited_seconds=round(time.time() - since, 2),
    )
