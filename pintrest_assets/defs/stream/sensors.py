"""Refreshes the stream tables when records wait in their Kinesis streams."""

import json

import dagster as dg

from pintrest_assets.defs.lake.reconciliation import latest_materialisation, materialisation_metadata
from pintrest_assets.settings import ConfigError
from pintrest_assets.stream.refresh import probe
from pintrest_assets.stream.resource import KinesisResource
from pintrest_assets.stream.tables import StreamState
from pintrest_assets.topics import TOPICS

SENSOR_NAME = "stream_tables_sensor"
MINIMUM_INTERVAL_SECONDS = 10
# The sensor's runs follow the streams this long (``StreamTablesConfig.follow_seconds``): one
# Spark start, then a refresh within seconds whenever records wait.
FOLLOW_SECONDS = 600
_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def refreshing(instance: dg.DagsterInstance, keys: set[dg.AssetKey]) -> set[dg.AssetKey]:
    """Those of ``keys`` that a queued or running run will materialise (it reads what waits now,
    or a later run does)."""
    busy: set[dg.AssetKey] = set()
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=_IN_PROGRESS), limit=100):
        selection = record.dagster_run.asset_selection
        busy |= keys if selection is None else keys & set(selection)
    return busy


def read_positions(instance: dg.DagsterInstance, asset: str, stream: str) -> dict[str, str]:
    """The positions (shard -> last sequence number read) of the table's latest materialisation,
    if it read ``stream``."""
    meta = materialisation_metadata(latest_materialisation(instance, asset))
    return dict(meta.get("positions") or {}) if meta.get("stream") == stream else {}


def build_stream_tables_sensor(minimum_interval_seconds: int = MINIMUM_INTERVAL_SECONDS) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=[dg.AssetKey(spec.stream_table_asset) for spec in TOPICS],
        description="Refreshes a stream table when records wait in its Kinesis stream beyond what the table read. "
        "Cursor: {stream: {shard_id: first unread sequence number}}, the stream positions of the last tick.",
    )
    def stream_tables_sensor(context: dg.SensorEvaluationContext, kinesis: KinesisResource):
        """Requests one run refreshing the stream tables whose streams hold unread records.

        Kinesis has no call that answers a shard's newest sequence number, so each tick asks each
        shard for the first record after the last one the table read (its latest materialisation's
        ``positions``): a GetShardIterator and a GetRecords of one record per shard, whatever the
        stream holds (``stream/positions.py``). This watches the streams themselves, so records put
        by any producer (the original's emulator through API Gateway, not only this instance's
        batches) are picked up.

        A table that a queued or running run will refresh is left to it. When records wait for any
        other table, one run refreshes them all (one Spark session; a table with nothing waiting
        costs a probe), and then follows the streams for up to ``FOLLOW_SECONDS``. No run key: a run that failed is requested again at
        the next tick while records wait. The cursor records, per
        stream and shard, the first unread sequence number the tick saw: the positions the
        requested run starts from.
        """
        cursor: dict[str, dict[str, str]] = json.loads(context.cursor) if context.cursor else {}
        keys = {dg.AssetKey(spec.stream_table_asset) for spec in TOPICS}
        busy = refreshing(context.instance, keys)
        waiting_records = {}
        for spec in TOPICS:
            key = dg.AssetKey(spec.stream_table_asset)
            stream = kinesis.stream_for(spec)
            positions = read_positions(context.instance, spec.stream_table_asset, stream)
            try:
                shards = probe(kinesis, spec, StreamState(positions=positions))
            except ConfigError as exc:
                # An unreachable Kinesis is a setting to fix (or a gateway to start), not a crash per tick.
                return dg.SkipReason(f"cannot read the Kinesis streams: {exc}")
            unread = {s.shard_id: s.next_sequence for s in shards if s.waiting}
            cursor[stream] = unread
            if unread and key not in busy:
                waiting_records[spec.name] = unread
        # A run follows every table it was not told to leave: records that arrive later in another
        # stream are its to read, not a reason for a second run.
        selected = [dg.AssetKey(spec.stream_table_asset) for spec in TOPICS] if waiting_records else []
        selected = [key for key in selected if key not in busy]
        if not selected:
            why = "no record waits in the streams" if not any(cursor.values()) else "a run already refreshes them"
            return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=json.dumps(cursor, sort_keys=True))
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    asset_selection=selected,
                    run_config={"ops": {"stream_tables": {"config": {"follow_seconds": FOLLOW_SECONDS}}}},
                    tags={"pintrest/streams": ",".join(sorted(waiting_records))},
                )
            ],
            cursor=json.dumps(cursor, sort_keys=True),
        )

    return stream_tables_sensor


stream_tables_sensor = build_stream_tables_sensor()
sensors = [stream_tables_sensor]
