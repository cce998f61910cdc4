"""Whether each stream table keeps up with its stream: the ``fresh`` check and the sensor that
evaluates it.

A stream table is stale when records wait in its Kinesis stream and the table has not advanced
for longer than ``FRESHNESS_SECONDS``: the streaming service is down, stuck or far behind. A
table with nothing waiting is fresh however old its last commit (nobody sent anything), which
is why this is not Dagster's ``build_last_update_freshness_checks``: that check fails whenever
the last materialisation is old, records or not. The check asks each shard for the first record
after the last one the table read (two Kinesis calls per shard, ``kinesis/positions.py``).

``stream_freshness_sensor`` evaluates the three checks every 30 seconds and records the results
in the instance without a run (``report_runless_asset_event``), when a result changes and every
five minutes otherwise; the check also runs as an ordinary asset check (a click on "Execute").
"""

from __future__ import annotations

import json
import time

import dagster as dg

from pintrest_assets.lake.warehouse import WarehouseIOManager
from pintrest_assets.settings import ConfigError
from pintrest_assets.stream.refresh import probe
from pintrest_assets.stream.resource import KinesisResource
from pintrest_assets.stream.service import WriterLock, describe
from pintrest_assets.stream.tables import StreamTable
from pintrest_assets.topics import TOPICS, TopicSpec

FRESHNESS_CHECK = "fresh"
FRESHNESS_SECONDS = 60.0
SENSOR_NAME = "stream_freshness_sensor"
SENSOR_SECONDS = 30
REPORT_UNCHANGED_SECONDS = 300

_HOW_TO_READ = f"""\
Fails (WARN) when records wait in the table's Kinesis stream and the table has not advanced for \
more than {FRESHNESS_SECONDS:.0f} seconds: the streaming service (`pintrest stream`, which \
`pintrest dev` starts) is not running, is stuck, or is far behind. The description says which: \
whether a service holds the stream tables, how long the oldest unread record has waited and when \
the table last committed. Nothing waiting: passes, however old the table's last commit."""


def evaluate_freshness(
    spec: TopicSpec, kinesis: KinesisResource, warehouse_dir: str, threshold: float = FRESHNESS_SECONDS
) -> dg.AssetCheckEvaluation:
    """The ``fresh`` check of ``spec``'s stream table, now. Raises ``ConfigError`` when Kinesis
    cannot be read (then nobody can say whether records wait)."""
    now = time.time()
    table = StreamTable.for_user(warehouse_dir, spec, kinesis.user_id)
    state = table.state()
    shards = probe(kinesis, spec, state)
    waiting = [s for s in shards if s.waiting]
    oldest = max((s.waiting_seconds(now) for s in waiting), default=0.0)
    delta = table.delta()
    last_commit = None
    if delta is not None:
        history = delta.history(1)
        last_commit = history[0].get("timestamp", 0) / 1000 if history else None
    since_commit = now - last_commit if last_commit else None
    stale = bool(waiting) and oldest > threshold and (since_commit is None or since_commit > threshold)
    service = WriterLock(warehouse_dir).service_running()
    description = None
    if stale:
        who = (
            f"{describe(service)} holds the stream tables but has not appended them: stuck or far behind? Its "
            f"terminal says."
            if service
            else "no stream service is running: start `pintrest stream` (`pintrest dev` starts it), or "
            "materialise the table to refresh it once."
        )
        committed = (
            f"last committed {since_commit:.0f} s ago (micro-batch {state.batch_id})"
            if since_commit is not None
            else "never committed"
        )
        description = (
            f"{len(waiting)} of {len(shards)} shards of {kinesis.stream_for(spec)} hold records the table has not "
            f"read, the oldest waiting {oldest:.0f} s; the table {committed}. {who}"
        )
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(spec.stream_table_asset),
        check_name=FRESHNESS_CHECK,
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "threshold_s": threshold,
            "shards_waiting": len(waiting),
            "oldest_unread_age_s": round(oldest, 1),
            "since_last_commit_s": round(since_commit, 1) if since_commit is not None else -1.0,
            "service_running": service is not None,
        },
    )


def build_freshness_check(spec: TopicSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=spec.stream_table_asset, name=FRESHNESS_CHECK, description=_HOW_TO_READ)
    def fresh(
        kinesis: KinesisResource, warehouse_io_manager: dg.ResourceParam[WarehouseIOManager]
    ) -> dg.AssetCheckResult:
        evaluation = evaluate_freshness(spec, kinesis, warehouse_io_manager.base_dir)
        return dg.AssetCheckResult(
            passed=evaluation.passed,
            severity=evaluation.severity,
            description=evaluation.description,
            metadata=evaluation.metadata,
        )

    return fresh


freshness_checks: list[dg.AssetChecksDefinition] = [build_freshness_check(spec) for spec in TOPICS]


def build_freshness_sensor(
    minimum_interval_seconds: int = SENSOR_SECONDS, threshold: float = FRESHNESS_SECONDS
) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluates each stream table's `fresh` check and records it without a run: records waiting in "
        f"Kinesis and a table that has not advanced for {FRESHNESS_SECONDS:.0f} s fail it. Requests no run.",
    )
    def stream_freshness_sensor(
        context: dg.SensorEvaluationContext,
        kinesis: KinesisResource,
        warehouse_io_manager: dg.ResourceParam[WarehouseIOManager],
    ):
        """Cursor: ``{asset: [passed, epoch seconds of the last evaluation recorded]}``."""
        cursor = json.loads(context.cursor) if context.cursor else {}
        now = time.time()
        recorded = []
        for spec in TOPICS:
            try:
                evaluation = evaluate_freshness(spec, kinesis, warehouse_io_manager.base_dir, threshold)
            except ConfigError as exc:
                return dg.SkipReason(f"cannot read the Kinesis streams: {exc}")
            last = cursor.get(spec.stream_table_asset)
            if last is None or last[0] != evaluation.passed or now - last[1] >= REPORT_UNCHANGED_SECONDS:
                context.instance.report_runless_asset_event(evaluation)
                cursor[spec.stream_table_asset] = [evaluation.passed, now]
                recorded.append(f"{spec.stream_table_asset}: {'fresh' if evaluation.passed else 'stale'}")
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        return dg.SkipReason("recorded " + ", ".join(recorded) if recorded else "no change")

    return stream_freshness_sensor


stream_freshness_sensor = build_freshness_sensor()
