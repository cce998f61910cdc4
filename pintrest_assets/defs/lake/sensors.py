"""Refreshes a topic's raw JSON and DataFrame when new objects land in the bucket."""

import json

import dagster as dg

from pintrest_assets.resources.s3_mount import S3MountResource
from pintrest_assets.settings import ConfigError
from pintrest_assets.topics import TOPICS

MAX_RUNS_PER_TICK = 3
MAX_OBJECTS_PER_RUN = 5000  # five list pages per topic at most, so a tick stays short


def build_new_objects_sensor(
    max_runs_per_tick: int = MAX_RUNS_PER_TICK,
    max_objects_per_run: int = MAX_OBJECTS_PER_RUN,
    minimum_interval_seconds: int = 20,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="new_objects_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=[dg.AssetKey(name) for spec in TOPICS for name in (spec.raw_asset, spec.dataframe)],
        description="Refreshes a topic's raw JSON and DataFrame when new objects land in the bucket. "
        "Cursor: {topic: {partition_prefix: last_key_seen}}, each partition listed after its last key seen.",
    )
    def new_objects_sensor(context: dg.SensorEvaluationContext, s3_mount: S3MountResource):
        """Requests a refresh of a topic's raw JSON and DataFrame when new objects land.

        The cursor is JSON ``{topic: {partition_prefix: last_key_seen}}``, e.g.
        ``{"u.pin": {"topics/u.pin/partition=0/": "topics/u.pin/partition=0/u.pin+0+0000000041.json"}}``.
        Each tick lists every partition of each topic with ``StartAfter`` its last key seen: the
        sink's keys grow with the offset within a partition, so nothing lands behind the cursor
        (a time cursor would skip or repeat objects landed in the same second), and a tick costs
        one partition listing per topic plus pages of new keys only, never the whole bucket.

        A tick requests at most ``max_runs_per_tick`` runs, one per topic with new objects (in
        spec order), each accounting for at most ``max_objects_per_run`` objects; the cursor
        advances only over what was requested, the rest comes next tick. A run's ``run_key`` is
        the topic's newest requested key, so a tick re-evaluated from the same cursor never
        launches twice.
        """
        cursor: dict[str, dict[str, str]] = json.loads(context.cursor) if context.cursor else {}
        run_requests = []
        for spec in TOPICS:
            if len(run_requests) >= max_runs_per_tick:
                break
            topic = s3_mount.topic_for(spec)
            try:
                found = s3_mount.new_objects(topic, since=cursor.get(topic, {}), limit=max_objects_per_run)
            except ConfigError as exc:
                # An unreachable bucket is a setting to fix, not a reason to crash every tick.
                return dg.SkipReason(f"cannot list the bucket: {exc}")
            if not found.objects:
                continue
            cursor[topic] = {**cursor.get(topic, {}), **found.last_keys}
            run_requests.append(
                dg.RunRequest(
                    run_key=f"{spec.raw_asset}:{found.newest_key}",
                    asset_selection=[dg.AssetKey(spec.raw_asset), dg.AssetKey(spec.dataframe)],
                    tags={"pintrest/topic": topic, "pintrest/new_objects": str(len(found.objects))},
                )
            )
        if not run_requests:
            return dg.SkipReason("no new objects")
        return dg.SensorResult(run_requests=run_requests, cursor=json.dumps(cursor, sort_keys=True))

    return new_objects_sensor


new_objects_sensor = build_new_objects_sensor()
sensors = [new_objects_sensor]
