"""What the streaming service commits, recorded in the Dagster instance without a run.

Each micro-batch the service commits to a stream table becomes a materialisation of the table's
asset, reported through the instance's public ``report_runless_asset_event``, with the metadata
a refresh's materialisation has (rows appended, quarantined, the table's totals, each shard's
position and lag): asset pages, lineage and history update as the rows land. After a table
commits, its ``records_reconciled`` check is evaluated (at most every ``check_every`` seconds a
table, and once more when it goes quiet) and recorded the same way, so the check shows on the
asset beside the materialisations it reconciles.

The reporter works in a thread of its own, fed by the service's ``foreachBatch`` calls through
a queue, so a slow instance never holds a micro-batch back.
"""

from __future__ import annotations

import queue
import threading
import time

import dagster as dg

from pintrest_assets.defs.stream.assets import acknowledged_so_far, refresh_metadata
from pintrest_assets.defs.stream.checks import CHECK_NAME, stream_reconciliation
from pintrest_assets.stream.query import MicroBatch, StreamRun
from pintrest_assets.stream.refresh import StreamRefresh, probe
from pintrest_assets.stream.service import Committed

CHECK_EVERY_SECONDS = 5.0


def service_metadata(committed: Committed, shards, acknowledged: int, schema=None) -> dict:
    """A stream table's materialisation metadata for one micro-batch the service committed."""
    result = committed.result
    run = StreamRun(
        table=committed.table.name,
        stream=committed.stream,
        before=committed.before,
        after=committed.after,
        batches=[MicroBatch(result.batch_id)],
        seconds=result.seconds,
    )
    refresh = StreamRefresh(
        committed.spec,
        committed.stream,
        committed.table,
        committed.after,
        shards,
        run=run,
        schema=schema,
        maintenance=committed.maintenance,
    )
    metadata = refresh_metadata(refresh, acknowledged)
    metadata["appended_by"] = "stream service"
    metadata["batch_id"] = result.batch_id
    return metadata


def check_evaluation(result: dg.AssetCheckResult, asset: str) -> dg.AssetCheckEvaluation:
    """An asset check's result as an evaluation reported without a run."""
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(asset),
        check_name=CHECK_NAME,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
    )


class DagsterReporter:
    """``on_commit`` for the ``StreamService``: records each committed micro-batch in ``instance``."""

    def __init__(self, instance: dg.DagsterInstance, kinesis, *, check_every: float = CHECK_EVERY_SECONDS, log=print):
        self.instance = instance
        self.kinesis = kinesis
        self.check_every = check_every
        self.log = log
        self.queue: queue.Queue[Committed | None] = queue.Queue()
        self.reported = 0
        self.checks = 0
        self._checked: dict[str, float] = {}
        self._unchecked: dict[str, object] = {}  # asset -> spec, committed since its last evaluation
        self._schemas: dict[str, object] = {}
        self._client = None  # one Kinesis client for every probe (a new one costs more than the probe)
        self._thread = threading.Thread(target=self._work, name="dagster-reporter", daemon=True)
        self._thread.start()

    def __call__(self, committed: Committed) -> None:
        self.queue.put(committed)

    def close(self, timeout: float = 30.0) -> None:
        """Reports what is queued and the last evaluations, then stops."""
        self.queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=1.0)
            except queue.Empty:
                self._check(quiet=True)
                continue
            items = [item]
            while True:  # everything queued: one lag probe per table for all of them
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            done = None in items
            try:
                self._report([i for i in items if i is not None])
                self._check(quiet=done)
            except Exception as exc:  # noqa: BLE001 - the service goes on; the next commit is reported
                self.log(f"could not record in the Dagster instance: {type(exc).__name__}: {exc}")
            if done:
                return

    def _report(self, items: list[Committed]) -> None:
        by_table: dict[str, list[Committed]] = {}
        for item in items:
            by_table.setdefault(item.table.name, []).append(item)
        for committed_items in by_table.values():
            last = committed_items[-1]
            spec = last.spec
            try:
                if self._client is None:
                    self._client = self.kinesis.client()
                shards = probe(self.kinesis, spec, last.after, self._client)
            except Exception:  # noqa: BLE001 - the lag is left out, the rest recorded
                shards = []
            acknowledged = acknowledged_so_far(self.instance, spec, last.stream)
            schema = self._schema(last)
            for committed in committed_items:
                metadata = service_metadata(committed, shards, acknowledged, schema)
                self.instance.report_runless_asset_event(
                    dg.AssetMaterialization(spec.stream_table_asset, metadata=metadata)
                )
                self.reported += 1
            self._unchecked[spec.stream_table_asset] = spec

    def _schema(self, committed: Committed):
        name = committed.table.name
        if name not in self._schemas:
            from pintrest_assets.lake.warehouse import spark_schema

            delta = committed.table.delta()
            self._schemas[name] = spark_schema(delta) if delta is not None else None
        return self._schemas[name]

    def _check(self, quiet: bool) -> None:
        """Evaluates the checks of the tables committed to since their last evaluation, each at
        most every ``check_every`` seconds, or at once when no commit came (``quiet``)."""
        now = time.monotonic()
        for asset, spec in list(self._unchecked.items()):
            if not quiet and now - self._checked.get(asset, 0.0) < self.check_every:
                continue
            result = stream_reconciliation(self.instance, spec)
            self.instance.report_runless_asset_event(check_evaluation(result, asset))
            self.checks += 1
            self._checked[asset] = now
            del self._unchecked[asset]
