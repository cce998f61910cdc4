"""Refreshes the raw JSON and DataFrames of the topics whose objects landed in the bucket."""

import json

import dagster as dg

from pintrest_assets.lake.mount.resource import S3MountResource
from pintrest_assets.settings import ConfigError
from pintrest_assets.topics import TOPICS

# The daemon looks at its sensors at most every 5 seconds: under that, the sensor ticks at each look.
MINIMUM_INTERVAL_SECONDS = 3
MAX_OBJECTS_PER_RUN = 5000  # per topic: five list pages at most, so a tick stays short
# A run that has not started yet reads whatever is new when it starts: a second one would wait
# behind it and find nothing.
_WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]


def lake_keys(spec) -> list[dg.AssetKey]:
    """The assets a topic's refresh materialises: its raw JSON, then its DataFrame."""
    return [dg.AssetKey(spec.raw_asset), dg.AssetKey(spec.dataframe)]


def waiting_to_refresh(instance: dg.DagsterInstance, keys: set[dg.AssetKey]) -> set[dg.AssetKey]:
    """Those of ``keys`` that a run not started yet will materialise."""
    waiting: set[dg.AssetKey] = set()
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=_WAITING), limit=100):
        selection = record.dagster_run.asset_selection
        waiting |= keys if selection is None else keys & set(selection)
    return waiting


def build_new_objects_sensor(
    max_objects_per_run: int = MAX_OBJECTS_PER_RUN,
    minimum_interval_seconds: int = MINIMUM_INTERVAL_SECONDS,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="new_objects_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=[key for spec in TOPICS for key in lake_keys(spec)],
        description="Refreshes the raw JSON and DataFrames of the topics whose objects landed in the bucket, "
        "in one run. Cursor: {topic: {partition_prefix: last_key_seen}}, each partition listed after its "
        "last key seen.",
    )
    def new_objects_sensor(context: dg.SensorEvaluationContext, s3_mount: S3MountResource):
        """Requests one run refreshing every topic with new objects.

        The cursor is JSON ``{topic: {partition_prefix: last_key_seen}}``, e.g.
        ``{"u.pin": {"topics/u.pin/partition=0/": "topics/u.pin/partition=0/u.pin+0+0000000041.json"}}``.
        Each tick lists every partition of each topic with ``StartAfter`` its last key seen: the
        sink's keys grow with the offset within a partition, so nothing lands behind the cursor
        (a time cursor would skip or repeat objects landed in the same second), and a tick costs
        one partition listing per topic plus pages of new keys only, never the whole bucket.

        One run refreshes every topic with new objects: a run starts a process and a Spark
        session, which cost more than reading a few objects, and runs go one at a time, so a run
        per topic would make the last topic wait for the others' starts. A topic that a run not
        started yet will refresh is left to it (that run reads what is new when it starts), so
        however often the sensor ticks, at most one run waits behind the running one. A tick
        accounts for at most ``max_objects_per_run`` objects per topic; the cursor advances over
        what was accounted for, the rest comes next tick. The run's ``run_key`` names each topic's
        newest key accounted for, so a tick re-evaluated from the same cursor never launches twice.
        """
        cursor: dict[str, dict[str, str]] = json.loads(context.cursor) if context.cursor else {}
        waiting = waiting_to_refresh(context.instance, {key for spec in TOPICS for key in lake_keys(spec)})
        found_by_topic = {}
        for spec in TOPICS:
            topic = s3_mount.topic_for(spec)
            try:
                found = s3_mount.new_objects(topic, since=cursor.get(topic, {}), limit=max_objects_per_run)
            except ConfigError as exc:
                # An unreachable bucket is a setting to fix, not a reason to crash every tick.
                return dg.SkipReason(f"cannot list the bucket: {exc}")
            if found.objects:
                cursor[topic] = {**cursor.get(topic, {}), **found.last_keys}
                found_by_topic[spec] = (topic, found)
        if not found_by_topic:
            return dg.SkipReason("no new objects")
        new = {spec: tf for spec, tf in found_by_topic.items() if not set(lake_keys(spec)) <= waiting}
        cursor_json = json.dumps(cursor, sort_keys=True)
        if not new:
            # The waiting run reads these objects too: the cursor moves past them.
            return dg.SensorResult(
                skip_reason=dg.SkipReason("new objects, for a run that has not started yet"), cursor=cursor_json
            )
        request = dg.RunRequest(
            run_key=" ".join(f"{spec.raw_asset}:{found.newest_key}" for spec, (_, found) in new.items()),
            asset_selection=[key for spec in new for key in lake_keys(spec)],
            tags={
                "pintrest/topic": ",".join(topic for topic, _ in new.values()),
                "pintrest/new_objects": str(sum(len(found.objects) for _, found in new.values())),
            },
        )
        return dg.SensorResult(run_requests=[request], cursor=cursor_json)

    return new_objects_sensor


new_objects_sensor = build_new_objects_sensor()
sensors = [new_objects_sensor]
