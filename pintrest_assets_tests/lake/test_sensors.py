import json

import dagster as dg
import pytest

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.defs.lake.sensors import build_new_objects_sensor, new_objects_sensor
from pintrest_assets.lake.mount.resource import S3MountResource
from pintrest_assets.topics import TOPICS_BY_NAME

PIN, GEO, USER = "u.pin", "u.geo", "u.user"


@pytest.fixture
def s3_mount(tmp_path, s3_bucket, s3_resource) -> S3MountResource:
    return S3MountResource(bucket_url=s3_bucket.url, mount_dir=str(tmp_path / "mnt"), user_id="u", s3=s3_resource)


_INSTANCE = dg.DagsterInstance.ephemeral()  # evaluating a sensor writes nothing to it


def tick(s3_mount, cursor=None, sensor=new_objects_sensor):
    """One evaluation: (run requests, new cursor); a skipped tick keeps the cursor."""
    with dg.build_sensor_context(cursor=cursor, instance=_INSTANCE, resources={"s3_mount": s3_mount}) as context:
        result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return [], cursor
    return result.run_requests, result.cursor


def accounted(requests) -> dict[str, int]:
    """Per request: its topics (comma-joined) -> the new objects it accounts for."""
    return {r.tags["pintrest/topic"]: int(r.tags["pintrest/new_objects"]) for r in requests}


def test_one_run_refreshes_every_topic_with_new_objects_and_the_cursor_advances(s3_mount, s3_bucket, bucket_land):
    pins = [bucket_land(s3_bucket, PIN, offset) for offset in range(3)]
    geos = [bucket_land(s3_bucket, GEO, offset) for offset in range(2)]

    requests, cursor = tick(s3_mount)
    assert accounted(requests) == {f"{PIN},{GEO}": 5}
    [request] = requests
    assert request.asset_selection == [
        dg.AssetKey("pin_raw_json"),
        dg.AssetKey("df_pin"),
        dg.AssetKey("geo_raw_json"),
        dg.AssetKey("df_geo"),
    ]
    assert request.run_key == f"pin_raw_json:{pins[-1]} geo_raw_json:{geos[-1]}"
    assert json.loads(cursor) == {
        PIN: {f"topics/{PIN}/partition=0/": pins[-1]},
        GEO: {f"topics/{GEO}/partition=0/": geos[-1]},
    }

    assert tick(s3_mount, cursor) == ([], cursor)  # nothing new: skipped, cursor kept

    pins.append(bucket_land(s3_bucket, PIN, 3))
    users = [bucket_land(s3_bucket, USER, 0)]
    requests, cursor = tick(s3_mount, cursor)
    assert accounted(requests) == {f"{PIN},{USER}": 2}
    assert requests[0].asset_selection == [
        dg.AssetKey("pin_raw_json"),
        dg.AssetKey("df_pin"),
        dg.AssetKey("user_raw_json"),
        dg.AssetKey("df_user"),
    ]
    assert json.loads(cursor)[PIN] == {f"topics/{PIN}/partition=0/": pins[-1]}
    assert json.loads(cursor)[USER] == {f"topics/{USER}/partition=0/": users[-1]}


def test_same_second_objects_are_each_accounted_once(s3_mount, s3_bucket, bucket_land):
    """Bursts of objects landing within one second, ticks in between: none missed, none twice."""
    landed, seen, run_keys, cursor = 0, 0, [], None
    for burst in (7, 1, 12, 5):
        for _ in range(burst):
            bucket_land(s3_bucket, PIN, landed)
            landed += 1
        requests, cursor = tick(s3_mount, cursor)
        seen += accounted(requests)[PIN]
        run_keys += [r.run_key for r in requests]
        assert seen == landed
    assert len(set(run_keys)) == len(run_keys) == 4
    last_key = s3_bucket.list_page(f"topics/{PIN}/", max_keys=1000)[-1].key
    assert json.loads(cursor)[PIN] == {f"topics/{PIN}/partition=0/": last_key}


def test_a_repeated_tick_requests_the_same_run_key(s3_mount, s3_bucket, bucket_land):
    bucket_land(s3_bucket, PIN, 0)
    first, cursor = tick(s3_mount)
    bucket_land(s3_bucket, PIN, 1)
    bucket_land(s3_bucket, GEO, 0)
    again = [tick(s3_mount, cursor) for _ in range(2)]
    assert [r.run_key for r in again[0][0]] == [r.run_key for r in again[1][0]]
    assert again[0][1] == again[1][1]
    assert not {r.run_key for r in first} & {r.run_key for r in again[0][0]}


def test_ticks_are_bounded_and_the_rest_comes_next_tick(tmp_path, bucket_land):
    bucket = LocalBucket(tmp_path / "bucket")
    s3_mount = S3MountResource(bucket_url=str(bucket.root), mount_dir=str(tmp_path / "mnt"), user_id="u")
    for offset in range(10):
        bucket_land(bucket, PIN, offset)
    for offset in range(3):
        bucket_land(bucket, GEO, offset)
    for offset in range(2):
        bucket_land(bucket, USER, offset)
    sensor = build_new_objects_sensor(max_objects_per_run=4)

    ticks, cursor = [], None
    while True:
        requests, cursor = tick(s3_mount, cursor, sensor)
        if not requests:
            break
        ticks.append(accounted(requests))
    assert ticks == [{f"{PIN},{GEO},{USER}": 4 + 3 + 2}, {PIN: 4}, {PIN: 2}]


def _add_run(instance, assets: list[str], status: dg.DagsterRunStatus) -> None:
    """A run of ``assets`` in ``status``, as the run queue and the run itself leave it."""
    instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            status=status,
            asset_selection=frozenset(dg.AssetKey(name) for name in assets),
        )
    )


def test_a_topic_a_waiting_run_will_refresh_is_left_to_it(s3_mount, s3_bucket, bucket_land):
    """Ticking every few seconds while a run takes longer: at most one run waits behind the
    running one, and it reads what landed meanwhile, however many ticks saw it."""
    with dg.instance_for_test() as instance:

        def tick_on(cursor):
            with dg.build_sensor_context(cursor=cursor, instance=instance, resources={"s3_mount": s3_mount}) as ctx:
                result = new_objects_sensor(ctx)
            if isinstance(result, dg.SkipReason):
                return [], cursor
            return result.run_requests, result.cursor

        pin = bucket_land(s3_bucket, PIN, 0)
        requests, cursor = tick_on(None)
        assert accounted(requests) == {PIN: 1}

        _add_run(instance, ["pin_raw_json", "df_pin"], dg.DagsterRunStatus.NOT_STARTED)  # that run, not started
        later_pin = bucket_land(s3_bucket, PIN, 1)
        geo = bucket_land(s3_bucket, GEO, 0)
        requests, cursor = tick_on(cursor)
        # The waiting run will read the new pin object; geo's needs a run of its own.
        assert accounted(requests) == {GEO: 1}
        assert json.loads(cursor)[PIN] == {f"topics/{PIN}/partition=0/": later_pin}
        assert json.loads(cursor)[GEO] == {f"topics/{GEO}/partition=0/": geo}
        assert pin != later_pin

        bucket_land(s3_bucket, PIN, 2)
        requests, new_cursor = tick_on(cursor)
        assert requests == [] and new_cursor != cursor  # left to the waiting run, and passed over


def test_a_started_run_does_not_hold_new_objects_back(s3_mount, s3_bucket, bucket_land):
    """A run already reading may have listed before the new objects landed: they get a run."""
    with dg.instance_for_test() as instance:
        _add_run(instance, ["pin_raw_json", "df_pin"], dg.DagsterRunStatus.STARTED)
        bucket_land(s3_bucket, PIN, 0)
        with dg.build_sensor_context(instance=instance, resources={"s3_mount": s3_mount}) as ctx:
            result = new_objects_sensor(ctx)
        assert accounted(result.run_requests) == {PIN: 1}


def test_partitions_each_have_their_cursor(s3_mount, s3_bucket, bucket_land):
    bucket_land(s3_bucket, PIN, 0, partition=0)
    requests, cursor = tick(s3_mount)
    p1 = bucket_land(s3_bucket, PIN, 0, partition=1)
    requests, cursor = tick(s3_mount, cursor)
    assert accounted(requests) == {PIN: 1}
    assert requests[0].run_key == f"pin_raw_json:{p1}"
    assert sorted(json.loads(cursor)[PIN]) == [f"topics/{PIN}/partition=0/", f"topics/{PIN}/partition=1/"]


def test_a_tick_lists_only_what_is_new(s3_mount, s3_bucket, s3_requests, bucket_land):
    for offset in range(60):
        bucket_land(s3_bucket, PIN, offset)
    _, cursor = tick(s3_mount)
    new = [bucket_land(s3_bucket, PIN, offset) for offset in (60, 61, 62)]

    s3_requests.clear()
    requests, cursor = tick(s3_mount, cursor)
    assert accounted(requests) == {PIN: 3}
    assert requests[0].run_key == f"pin_raw_json:{new[-1]}"
    assert s3_requests["keys listed"] == 3  # not the 60 behind the cursor
    # One partition listing per topic, plus one page of new keys for the pin partition.
    assert s3_requests["ListObjectsV2"] == len(TOPICS_BY_NAME) + 1
    assert s3_requests["GetObject"] == 0


def test_an_unreachable_bucket_skips_with_the_reason(tmp_path, unreachable_s3_resource):
    s3_mount = S3MountResource(
        bucket_url="s3://lake-bucket", mount_dir=str(tmp_path), user_id="u", s3=unreachable_s3_resource
    )
    requests, cursor = tick(s3_mount)
    assert (requests, cursor) == ([], None)
    with dg.build_sensor_context(instance=_INSTANCE, resources={"s3_mount": s3_mount}) as context:
        result = new_objects_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "PINTREST_S3_ENDPOINT_URL" in result.skip_message


def test_the_sensor_runs_by_itself_every_few_seconds():
    assert new_objects_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # A tick lists only what is new, so it may come often: landing -> run request within seconds.
    assert new_objects_sensor.minimum_interval_seconds <= 5
    assert "{topic: {partition_prefix: last_key_seen}}" in new_objects_sensor.description
