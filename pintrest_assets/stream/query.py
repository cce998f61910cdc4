"""The Structured Streaming query of a stream table: a Kinesis stream into its Delta table.

::

    spark.readStream.format("pintrest_kinesis")          # kinesis/spark_source.py
        .option("streamName", "streaming-<user_id>-pin")
        .option("endpointUrl", ...)                        # none on AWS
        .option("initialPosition", "trim_horizon")
        .load()
        .select(<each record parsed and cleaned>)           # StreamTable.rows
        .writeStream.foreachBatch(table.write_batch)        # collect, write, commit
        .option("checkpointLocation", "<warehouse>/_checkpoints/<user_id>_pin_table")
        .trigger(availableNow=True)
        .start()

On Databricks the same query reads ``format("kinesis")`` with the same options and columns.
``run_available_now`` runs it to what had arrived when it started and stops, which is how
a click in Dagster refreshes a stream table when no streaming service runs; the service
(``service.py``) starts it with a processing-time trigger and keeps it running.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from pintrest_assets.kinesis.spark_source import FORMAT, register
from pintrest_assets.stream.tables import StreamState, StreamTable

# initialPosition of the stream tables: every record the stream retains, as the original's
# Databricks notebooks read it.
INITIAL_POSITION = "trim_horizon"
# The longest a query started with others waits for the one before it to read its first
# micro-batch (``run_available_now_together``).
FIRST_READ_WAIT_SECONDS = 60.0


def source_options(
    stream: str,
    endpoint_url: str | None = None,
    region: str | None = None,
    *,
    max_records_per_batch: int | None = None,
) -> dict[str, str]:
    """The Kinesis source's options for ``stream`` (Databricks' names)."""
    options = {"streamName": stream, "initialPosition": INITIAL_POSITION}
    if endpoint_url:
        options["endpointUrl"] = endpoint_url
    if region:
        options["region"] = region
    if max_records_per_batch:
        options["maxRecordsPerBatch"] = str(max_records_per_batch)
    return options


@dataclass(frozen=True)
class MicroBatch:
    """A micro-batch a query ran: appended, or replayed after a crash and skipped because the
    table had committed it already."""

    batch_id: int
    replayed: bool = False


@dataclass
class StreamRun:
    """What one run of a stream table's query did."""

    table: str
    stream: str
    before: StreamState
    after: StreamState
    batches: list[MicroBatch] = field(default_factory=list)  # in the order they ran, replays included
    seconds: float = 0.0

    @property
    def micro_batches(self) -> int:
        """Micro-batches appended (replays of batches the table had already are not counted)."""
        return sum(1 for b in self.batches if not b.replayed)

    @property
    def replayed(self) -> int:
        return sum(1 for b in self.batches if b.replayed)

    @property
    def records(self) -> int:
        return self.after.records_read - self.before.records_read

    @property
    def rows(self) -> int:
        return self.after.rows - self.before.rows

    @property
    def quarantined(self) -> int:
        return self.after.quarantined - self.before.quarantined

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


class _Writer:
    """``foreachBatch``'s function: appends each micro-batch (``StreamTable.write_batch``).

    On Spark Connect the server runs it in a Python process of its own, from a pickled copy: what
    a run did is read afterwards from the checkpoint and the table (``_ran``), not kept here. In
    a local or cluster driver it runs in this process and keeps the first error as raised (Spark
    would wrap it in a StreamingQueryException).
    """

    def __init__(self, table: StreamTable):
        self.table = table
        self.error: BaseException | None = None

    def __call__(self, batch, batch_id: int) -> None:
        try:
            self.table.write_batch(batch, batch_id)
        except BaseException as exc:
            self.error = self.error or exc
            raise


def _ran(table: StreamTable, committed_before: set[int], before: StreamState) -> list[MicroBatch]:
    """The micro-batches a run committed to the checkpoint; those the table held before the run
    were replays, skipped."""
    ran = sorted(set(table.checkpoint_batches()) - committed_before)
    last = -1 if before.batch_id is None else before.batch_id
    return [MicroBatch(batch_id, replayed=batch_id <= last) for batch_id in ran]


def _define(spark, table: StreamTable, options: Mapping[str, str], trigger: Mapping | None = None, foreach_batch=None):
    """The table's query, prepared and not started: the table checked (or created), its rows
    planned on the source, its writer set. Returns the ``DataStreamWriter`` (``start()`` starts
    the query) and the ``foreachBatch`` function."""
    table.prepare(spark)
    reader = spark.readStream.format(FORMAT)
    for name, value in options.items():
        reader = reader.option(name, value)
    writer = foreach_batch or _Writer(table)
    stream_writer = (
        table.rows(reader.load())
        .writeStream.foreachBatch(writer)
        .option("checkpointLocation", str(table.checkpoint))
        .queryName(table.name)
        .trigger(**(trigger or {"availableNow": True}))
    )
    return stream_writer, writer


def _start_registered(
    spark, table: StreamTable, options: Mapping[str, str], trigger: Mapping | None = None, foreach_batch=None
):
    stream_writer, writer = _define(spark, table, options, trigger, foreach_batch)
    return stream_writer.start(), writer


def run_available_now(spark, table: StreamTable, options: Mapping[str, str], timeout: float | None = None) -> StreamRun:
    """Runs the table's query with ``trigger(availableNow=True)``: every record that arrived
    before it started, in micro-batches, then it stops. Raises what stopped it early (a
    ``TimeoutError`` after ``timeout`` seconds, with the batches done so far committed)."""
    [outcome] = run_available_now_together(spark, [(table, options)], timeout)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def run_available_now_together(
    spark, queries: list[tuple[StreamTable, Mapping[str, str]]], timeout: float | None = None
) -> list[StreamRun | BaseException]:
    """Runs several tables' queries at once (each ``trigger(availableNow=True)``), in one Spark
    session: their start-up and per-batch waits overlap. Returns, in order, each one's
    ``StreamRun``, or the exception that stopped it (the others run to their end regardless)."""
    started = time.perf_counter()
    register(spark)
    # One after the other: three first micro-batches started at the same instant in a new JVM
    # were seen to fail their first job (java.io.OptionalDataException deserialising a task).
    # And each once the one before has read its first micro-batch: the queries read the same
    # Kinesis, which a laptop's kinesalite answers one request at a time. Read at once, the
    # three backlogs all arrived late and were then all processed at once; read in turn, the
    # first table's rows are processed while the next table's are read.
    # Each query is defined (its table prepared, its plan analysed) while the one before reads:
    # only its start waits.
    running = []
    for table, options in queries:
        defined = _define_run(spark, table, options)
        if running and not isinstance(running[-1], BaseException):
            _wait_for_first_read(running[-1][4])
        running.append(_start(defined))
    deadline = None if timeout is None else time.monotonic() + timeout
    outcomes: list[StreamRun | BaseException] = []
    for item in running:
        if isinstance(item, BaseException):
            outcomes.append(item)
            continue
        outcomes.append(_finish(*item, deadline, started))
    return outcomes


def _define_run(spark, table: StreamTable, options: Mapping[str, str]) -> tuple | BaseException:
    try:
        before, committed = table.state(), set(table.checkpoint_batches())
        stream_writer, writer = _define(spark, table, options)
    except Exception as exc:  # noqa: BLE001 - reported in its place, the others go on
        return exc
    return table, options, before, committed, stream_writer, writer


def _start(defined: tuple | BaseException) -> tuple | BaseException:
    if isinstance(defined, BaseException):
        return defined
    table, options, before, committed, stream_writer, writer = defined
    try:
        query = stream_writer.start()
    except Exception as exc:  # noqa: BLE001 - reported in its place, the others go on
        return exc
    return table, options, before, committed, query, writer


def _wait_for_first_read(query) -> None:
    """Until ``query`` has read its first micro-batch (or stopped, or ``FIRST_READ_WAIT_SECONDS``):
    while Spark's status says "Initializing StreamExecution", "Initializing sources" or "Getting
    offsets from ..." (the source reads a simple reader's batch while giving its offset)."""
    deadline = time.monotonic() + FIRST_READ_WAIT_SECONDS
    while query.isActive and time.monotonic() < deadline:
        message = query.status.get("message", "")
        if not message.startswith(("Initializing", "Getting offsets")):
            return
        time.sleep(0.1)


def _finish(table, options, before, committed, query, writer, deadline, started) -> StreamRun | BaseException:
    try:
        if deadline is None:
            query.awaitTermination()
            finished = True
        else:
            finished = query.awaitTermination(max(0.0, deadline - time.monotonic()))
    except Exception as exc:  # noqa: BLE001 - the writer's own error says more than Spark's wrapper
        return writer.error or exc
    finally:
        if query.isActive:
            query.stop()
    batches = _ran(table, committed, before)
    if not finished:
        return TimeoutError(
            f"{table.name}: the query did not finish in time; it committed "
            f"{sum(1 for b in batches if not b.replayed)} micro-batches and stopped"
        )
    return StreamRun(
        table=table.name,
        stream=options["streamName"],
        before=before,
        after=table.state(),
        batches=batches,
        seconds=time.perf_counter() - started,
    )
