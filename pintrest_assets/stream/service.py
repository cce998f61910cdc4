"""The streaming service: the three stream tables' queries running continuously in one Spark
session, as the original's Databricks streaming notebooks ran (``pintrest stream``; ``pintrest
dev`` starts it beside the gateway and the UI).

::

    spark.readStream.format("pintrest_kinesis").options(...).load()     # kinesis/spark_source.py
        .writeStream.foreachBatch(<append exactly once, then report>)  # stream/tables.py
        .option("checkpointLocation", "<warehouse>/_checkpoints/<table>")
        .trigger(processingTime="1 second")
        .start()

Each micro-batch is appended exactly once, as a refresh appends it (the Delta commit carries the
checkpoint's batch id): a service killed at any moment and started again replays the batch it
was in, and the table skips it if it had committed it.

**One writer at a time.** The service holds the stream tables' writer lock
(``<warehouse>/_checkpoints/_writer.lock``, a ``filelock`` lock, released by the OS if the
process dies) for as long as it runs, and says who it is in ``_writer.json`` beside it. A refresh
of the stream tables (a click in the UI, ``pintrest run --stream``) takes the same lock for its
availableNow queries; when the service holds it, the refresh waits for the service to commit
every record that had arrived when the refresh started, and reports that (``handover.py``).

**Small files.** A micro-batch a second writes a few files a second. Every ``maintain_seconds``
the service compacts each table it appended to (delta-rs ``optimize.compact``) and vacuums it
and its quarantine table, inside the table's ``foreachBatch`` call, between two of its own
micro-batches: the stream never stops, and maintenance never meets one of its own commits.

**Dagster sees it** through ``on_commit``: every micro-batch committed is handed to it (the
``pintrest stream`` command records each as a materialisation of the table's asset, without a
run, and evaluates the reconciliation checks; ``defs/stream/reporting.py``).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from pintrest_assets.stream.tables import CHECKPOINTS_DIR, BatchResult, StreamState, StreamTable
from pintrest_assets.topics import TopicSpec

DEFAULT_TRIGGER_SECONDS = 1.0
DEFAULT_MAINTAIN_SECONDS = 60.0
WRITER_LOCK = "_writer.lock"
WRITER_INFO = "_writer.json"
SERVICE = "service"
REFRESH = "refresh"
# A query that failed (Kinesis unreachable, a bad record the writer refused) starts again after this.
RESTART_SECONDS = 5.0
# While the streams are missing (the gateway starting), how often the service looks, and how
# long it does so before it says it waits.
STREAMS_POLL_SECONDS = 0.5
STREAMS_QUIET_SECONDS = 10.0
# The longest the service waits for a query's source to be up before it starts the next query.
QUERY_START_SECONDS = 60.0


class WriterLock:
    """The stream tables' writer lock: held by the streaming service while it runs, or by a
    refresh while its queries run. ``holder()`` says who holds it (role, pid, host, since)."""

    def __init__(self, warehouse_dir: str | os.PathLike):
        self.dir = Path(warehouse_dir) / CHECKPOINTS_DIR
        self.path = self.dir / WRITER_LOCK
        self.info_path = self.dir / WRITER_INFO
        self._lock: FileLock | None = None

    def acquire(self, role: str, timeout: float = 0.0, **info) -> bool:
        """Takes the lock (waiting up to ``timeout`` seconds); False if another holds it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            return False
        self._lock = lock
        holder = {"role": role, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), **info}
        tmp = self.info_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(holder))
        tmp.replace(self.info_path)
        return True

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def held_by_another(self) -> bool:
        """Whether someone else holds the lock now."""
        if self._lock is not None:
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        probe = FileLock(str(self.path))
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return True
        probe.release()
        return False

    def holder(self) -> dict:
        """What the last holder wrote about itself (role, pid, host, since); {} if nothing."""
        try:
            return json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            return {}

    def service_running(self) -> dict | None:
        """The running service's description, if a service holds the lock."""
        if not self.held_by_another():
            return None
        holder = self.holder()
        return holder if holder.get("role") == SERVICE else None


@dataclass
class Committed:
    """A micro-batch the service committed to a stream table."""

    spec: TopicSpec
    table: StreamTable
    stream: str
    result: BatchResult
    before: StreamState
    after: StreamState
    committed_at: float = field(default_factory=time.time)
    maintenance: dict = field(default_factory=dict)


class _ServiceWriter:
    """``foreachBatch``'s function in the service: appends the micro-batch (exactly once), hands
    what it committed to ``on_commit``, and maintains the table on its cadence."""

    def __init__(self, service: StreamService, spec: TopicSpec, table: StreamTable, stream: str):
        self.service = service
        self.spec = spec
        self.table = table
        self.stream = stream
        self.last_maintained = time.monotonic()
        self.appended_since_maintained = False

    def __call__(self, batch, batch_id: int) -> None:
        result = self.table.write_batch(batch, batch_id)
        if result.replayed or result.state is None:
            return
        after = result.state
        before = StreamState(
            batch_id=None,
            records_read=after.records_read - result.records,
            rows=after.rows - result.rows,
            quarantined=after.quarantined - result.quarantined,
        )
        self.appended_since_maintained = True
        maintenance = {}
        if time.monotonic() - self.last_maintained >= self.service.maintain_seconds:
            maintenance = self.service.maintain(self.table)
            self.last_maintained = time.monotonic()
            self.appended_since_maintained = False
        self.service.committed(Committed(self.spec, self.table, self.stream, result, before, after, maintenance=maintenance))


class StreamService:
    """The stream tables' queries, running until ``stop`` is set.

    ``kinesis`` is a ``KinesisResource``, ``spark_session`` returns the session (called once),
    ``maintain`` compacts and vacuums a ``StreamTable``'s Delta tables and says what it did,
    ``on_commit`` receives every ``Committed`` micro-batch (from Spark's threads: it must be quick),
    ``log`` one line at a time.
    """

    def __init__(
        self,
        specs: list[TopicSpec],
        kinesis,
        warehouse_dir: str | os.PathLike,
        spark_session: Callable[[], object],
        *,
        trigger_seconds: float = DEFAULT_TRIGGER_SECONDS,
        maintain_seconds: float = DEFAULT_MAINTAIN_SECONDS,
        maintain: Callable[[StreamTable], dict] | None = None,
        on_commit: Callable[[Committed], None] | None = None,
        log: Callable[[str], None] = print,
    ):
        self.specs = specs
        self.kinesis = kinesis
        self.warehouse_dir = Path(warehouse_dir)
        self.spark_session = spark_session
        self.trigger_seconds = trigger_seconds
        self.maintain_seconds = maintain_seconds
        self._maintain = maintain
        self.on_commit = on_commit
        self.log = log
        self.lock = WriterLock(warehouse_dir)
        self.queries: dict[str, object] = {}
        self.commits = 0
        self._said: dict[str, str] = {}

    def committed(self, committed: Committed) -> None:
        self.commits += 1
        if self.on_commit is not None:
            self.on_commit(committed)

    def maintain(self, table: StreamTable) -> dict:
        if self._maintain is None:
            return {}
        try:
            return self._maintain(table)
        except Exception as exc:  # noqa: BLE001 - maintenance is retried at the next cadence; the data is committed
            self.log(f"{table.name}: compaction failed, tried again later: {type(exc).__name__}: {exc}")
            return {}

    # -- running -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> int:
        """Runs the queries until ``stop`` is set; returns an exit code (1: another service runs)."""
        started = time.monotonic()
        if not self._take_lock(stop):
            return 1 if not stop.is_set() else 0
        try:
            if not self._wait_for_streams(stop):
                return 0
            streams_found = time.monotonic()
            spark = self.spark_session()
            from pintrest_assets.kinesis.spark_source import register

            register(spark)
            session_ready = time.monotonic()
            for spec in self.specs:
                if stop.is_set():
                    break
                self._try_start(spark, spec)
            if not stop.is_set():
                now = time.monotonic()
                self.log(
                    f"stream service: {', '.join(self.queries)} follow their streams, a micro-batch every "
                    f"{self.trigger_seconds:g} s (Ctrl-C stops); up after {now - started:.1f} s: streams found "
                    f"{streams_found - started:.1f} s, Spark {session_ready - streams_found:.1f} s, queries "
                    f"{now - session_ready:.1f} s"
                )
            restarts: dict[str, float] = {}
            while not stop.wait(0.5):
                for spec in self.specs:
                    self._watch(spark, spec, restarts)
            return 0
        finally:
            for query in self.queries.values():
                try:
                    query.stop()
                except Exception:  # noqa: BLE001 - stopping anyway
                    pass
            self.lock.release()

    def _take_lock(self, stop: threading.Event) -> bool:
        said = False
        while not stop.is_set():
            if self.lock.acquire(SERVICE, timeout=0.5, trigger_seconds=self.trigger_seconds):
                return True
            holder = self.lock.holder()
            if holder.get("role") == SERVICE and self.lock.held_by_another():
                self.log(
                    f"another stream service (pid {holder.get('pid')} on {holder.get('host')}) holds the stream "
                    f"tables of {self.warehouse_dir}: stop it first"
                )
                return False
            if not said:
                self.log("a refresh of the stream tables is running: the service starts when it ends")
                said = True
        return False

    def _wait_for_streams(self, stop: threading.Event) -> bool:
        """Waits until Kinesis answers and the streams exist (the gateway creates them)."""
        from pintrest_assets.settings import ConfigError
        from pintrest_assets.stream.refresh import probe

        said = None
        # Started beside the gateway (``pintrest dev``), it finds no streams for a few seconds.
        quiet_until = time.monotonic() + STREAMS_QUIET_SECONDS
        client = self.kinesis.client()
        while not stop.is_set():
            try:
                for spec in self.specs:
                    probe(self.kinesis, spec, StreamState(), client)
                return True
            except ConfigError as exc:
                if said != str(exc) and time.monotonic() >= quiet_until:
                    self.log(f"waiting for the Kinesis streams: {exc.args[-1] if exc.args else exc}")
                    said = str(exc)
            stop.wait(STREAMS_POLL_SECONDS)
        return False

    def _start(self, spark, spec: TopicSpec) -> None:
        from pintrest_assets.stream.query import _start_registered

        table = StreamTable.for_user(self.warehouse_dir, spec, self.kinesis.user_id)
        writer = _ServiceWriter(self, spec, table, self.kinesis.stream_for(spec))
        query, _ = _start_registered(
            spark,
            table,
            self.kinesis.source_options(spec),
            {"processingTime": f"{int(self.trigger_seconds * 1000)} milliseconds"},
            foreach_batch=writer,
        )
        self.queries[table.name] = query
        # Until its source is up (its Python worker connected, its first offsets asked), before
        # the next query starts: three workers importing pyspark at once on a loaded machine may
        # miss Spark's time limit to connect back.
        deadline = time.monotonic() + QUERY_START_SECONDS
        while query.isActive and time.monotonic() < deadline:
            if not query.status.get("message", "").startswith("Initializing"):
                break
            time.sleep(0.2)

    def _watch(self, spark, spec: TopicSpec, restarts: dict[str, float]) -> None:
        name = spec.stream_table(self.kinesis.user_id)
        query = self.queries.get(name)
        if query is not None and query.isActive:
            return
        now = time.monotonic()
        if name not in restarts:
            if query is not None:
                self._say(name, f"{name}: the query stopped ({query.exception()}); it starts again in {RESTART_SECONDS:g} s")
            restarts[name] = now + RESTART_SECONDS
        if now < restarts[name]:
            return
        del restarts[name]
        self._try_start(spark, spec)

    def _try_start(self, spark, spec: TopicSpec) -> None:
        name = spec.stream_table(self.kinesis.user_id)
        try:
            self._start(spark, spec)
        except Exception as exc:  # noqa: BLE001 - tried again every RESTART_SECONDS
            self.queries.pop(name, None)
            self._say(name, f"{name}: the query cannot start, tried again every {RESTART_SECONDS:g} s: {type(exc).__name__}: {exc}")

    def _say(self, name: str, message: str) -> None:
        """Logs ``message`` unless it is the table's last one (a query failing every few seconds)."""
        if self._said.get(name) != message:
            self._said[name] = message
            self.log(message)


def describe(holder: Mapping) -> str:
    """The lock holder, for messages: ``the stream service (pid 123 on host, since 10:04:05)``."""
    since = time.strftime("%H:%M:%S", time.localtime(holder.get("since", 0)))
    what = "the stream service" if holder.get("role") == SERVICE else "a refresh of the stream tables"
    return f"{what} (pid {holder.get('pid')} on {holder.get('host')}, since {since})"
