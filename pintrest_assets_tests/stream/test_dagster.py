"""The stream group in Dagster: the Kinesis streams materialised through the local gateway's
Kinesis proxy, the stream tables through their availableNow queries, the reconciliation check
and the sensor, on a real kinesalite."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
import uuid

import dagster as dg
import pytest

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.defs.sources.assets import source_tables
from pintrest_assets.defs.stream import assets as stream_assets
from pintrest_assets.defs.stream.assets import kinesis_streams, stream_tables
from pintrest_assets.defs.stream.checks import stream_reconciliation_checks
from pintrest_assets.defs.stream.sensors import FOLLOW_SECONDS, stream_tables_sensor
from pintrest_assets.gateway import Gateway
from pintrest_assets.kinesis.streams import kinesis_client
from pintrest_assets.resources.kinesis_proxy import KinesisProxyResource
from pintrest_assets.resources.spark import SparkResource, spark_config
from pintrest_assets.resources.warehouse import WarehouseIOManager
from pintrest_assets.stream.resource import KinesisResource
from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.net import free_port
from pintrest_assets_tests.stream.conftest import SHARDS, draw, put, put_raw

STREAM_TABLES = [dg.AssetKey(spec.stream_table_asset) for spec in TOPICS]
ASSETS = [*source_tables, kinesis_streams, stream_tables, *stream_reconciliation_checks]

pytestmark = pytest.mark.kinesis  # kinesalite: Node.js and npm


@pytest.fixture
def gateway(tmp_path, kinesalite):
    """The local gateway with its Kinesis-proxy routes in front of the module's kinesalite."""
    client = kinesis_client(kinesalite.endpoint_url, "us-east-1", max_attempts=1, read_timeout=29)
    gateway = Gateway(LocalBucket(tmp_path / "bucket"), tmp_path / "state", port=0, fsync=False, kinesis=client)
    gateway.start()
    yield gateway
    gateway.shutdown()


@pytest.fixture
def resources(tmp_path, user_id, gateway, kinesalite, posts_database, spark) -> dict:
    session = SparkResource(spark_config={**spark_config("local[2]"), "spark.sql.shuffle.partitions": "2"})
    return {
        "database": posts_database,
        "kinesis_proxy": KinesisProxyResource(url=gateway.url, user_id=user_id),
        "kinesis": KinesisResource(endpoint_url=kinesalite.endpoint_url, region="us-east-1", user_id=user_id),
        "spark": session,
        "warehouse_io_manager": WarehouseIOManager(base_dir=str(tmp_path / "warehouse"), spark=session),
    }


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def emulate(instance, resources, posts: int, seed: int = 5):
    return dg.materialize(
        ASSETS,
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.assets(*[spec.kinesis_asset for spec in TOPICS]),
        run_config={"ops": {"kinesis_streams": {"config": {"posts": posts, "seed": seed}}}},
    )


def refresh(instance, resources):
    """The three stream tables and their checks, in one run."""
    return dg.materialize(
        ASSETS, resources=resources, instance=instance, selection=dg.AssetSelection.assets(*STREAM_TABLES)
    )


def check_only(instance, resources):
    result = dg.materialize(
        ASSETS,
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.checks_for_assets(*STREAM_TABLES),
        raise_on_error=False,
    )
    return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}


def materialisations(result, asset: str) -> list[dict]:
    """The metadata of each materialisation of ``asset`` in the run, in order."""
    return [
        {k: v.value for k, v in e.event_specific_data.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == asset
    ]


def metadata(result, asset: str) -> dict:
    [only] = materialisations(result, asset)
    return only


def test_streams_to_stream_tables_reconciled(instance, resources, user_id, kinesis, tmp_path):
    sent = emulate(instance, resources, 120)
    for spec in TOPICS:
        meta = metadata(sent, spec.kinesis_asset)
        assert (meta["stream"], meta["records_sent"], meta["records_failed"]) == (spec.kinesis_stream(user_id), 120, 0)
        assert len(meta["offset_ranges"]) == SHARDS
        assert all(k.startswith("shardId-") and all(v.isdigit() for v in r) for k, r in meta["offset_ranges"].items())

    done = refresh(instance, resources)
    for spec in TOPICS:
        meta = metadata(done, spec.stream_table_asset)
        assert meta["table"] == spec.stream_table(user_id)
        assert (meta["rows_appended"], meta["records_read"], meta["quarantined"]) == (120, 120, 0)
        assert (meta["dagster/row_count"], meta["records_read_total"], meta["micro_batches"]) == (120, 120, 1)
        assert (meta["records_behind"], meta["shards_behind"], meta["first_unread_age_s"]) == (0, 0, 0.0)
        lag = meta["lag"]
        assert len(lag.records) == SHARDS and all(r.data["at_tip"] for r in lag.records)
        assert set(meta["positions"]) == {r.data["shard"] for r in lag.records}
        assert meta["dagster/column_schema"].columns[0].name == "ind"
    evaluations = {e.asset_key.to_user_string(): e for e in done.get_asset_check_evaluations()}
    assert set(evaluations) == {spec.stream_table_asset for spec in TOPICS}
    assert all(e.passed for e in evaluations.values()), [e.description for e in evaluations.values()]

    # More sent, not yet read: the check says how many and that the table is behind.
    emulate(instance, resources, 30, seed=6)
    evaluation = check_only(instance, resources)["pin_stream_table"]
    assert not evaluation.passed
    assert "150 records acknowledged, 120 read from the stream: 30 not read" in evaluation.description
    assert "pin_stream_table was not refreshed since the last batch sent" in evaluation.description

    # A record put outside any emulation batch: read and quarantined, and the check says so.
    put_raw(kinesis, TOPICS[0].kinesis_stream(user_id), b"not json")
    done = refresh(instance, resources)
    meta = metadata(done, "pin_stream_table")
    assert (meta["rows_appended"], meta["quarantined"], meta["quarantined_total"], meta["dagster/row_count"]) == (
        30,
        1,
        1,
        150,
    )
    evaluations = {e.asset_key.to_user_string(): e for e in done.get_asset_check_evaluations()}
    assert evaluations["geo_stream_table"].passed and evaluations["user_stream_table"].passed
    assert not evaluations["pin_stream_table"].passed
    assert "150 records acknowledged, 151 read from the stream: 1 more than acknowledged" in (
        evaluations["pin_stream_table"].description
    )

    # Nothing waits: a refresh starts no query and appends nothing.
    meta = metadata(refresh(instance, resources), "geo_stream_table")
    assert (meta["rows_appended"], meta["micro_batches"], meta["dagster/row_count"]) == (0, 0, 150)

    # A table whose checkpoint is gone is refused alone: the other two refresh.
    shutil.rmtree(tmp_path / "warehouse" / "_checkpoints" / TOPICS[0].stream_table(user_id))
    emulate(instance, resources, 10, seed=8)
    result = dg.materialize(
        ASSETS,
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.assets(*STREAM_TABLES),
        raise_on_error=False,
    )
    assert not result.success
    done = {e.event_specific_data.materialization.asset_key for e in result.get_asset_materialization_events()}
    assert done == {dg.AssetKey("geo_stream_table"), dg.AssetKey("user_stream_table")}
    assert metadata(result, "user_stream_table")["dagster/row_count"] == 160
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "its checkpoint" in str(failure.event_specific_data.error)


def tick(instance, kinesis: KinesisResource, cursor=None):
    with dg.build_sensor_context(cursor=cursor, instance=instance, resources={"kinesis": kinesis}) as context:
        return stream_tables_sensor(context)


def test_the_sensor_requests_a_refresh_while_records_wait(instance, resources, user_id):
    kinesis = resources["kinesis"]
    result = tick(instance, kinesis)
    assert not result.run_requests and "no record waits" in result.skip_reason.skip_message
    assert json.loads(result.cursor) == {spec.kinesis_stream(user_id): {} for spec in TOPICS}

    emulate(instance, resources, 40)
    result = tick(instance, kinesis, result.cursor)
    [request] = result.run_requests
    assert set(request.asset_selection) == set(STREAM_TABLES)
    # The run follows the streams: its config is valid for the job the daemon launches.
    assert request.run_config == {"ops": {"stream_tables": {"config": {"follow_seconds": FOLLOW_SECONDS}}}}
    job = dg.Definitions(assets=ASSETS, resources=resources).resolve_implicit_job_def_def_for_assets(STREAM_TABLES)
    assert dg.validate_run_config(job, request.run_config)["ops"]["stream_tables"]["config"]["follow_seconds"] == 600
    cursor = json.loads(result.cursor)
    assert all(len(cursor[spec.kinesis_stream(user_id)]) == SHARDS for spec in TOPICS)

    # A run in progress that refreshes pin_stream_table: the tick leaves that table to it.
    instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            asset_selection=frozenset({dg.AssetKey("pin_stream_table")}),
        )
    )
    [request] = tick(instance, kinesis, result.cursor).run_requests
    assert set(request.asset_selection) == {dg.AssetKey("geo_stream_table"), dg.AssetKey("user_stream_table")}

    refresh(instance, resources)
    result = tick(instance, kinesis, result.cursor)
    assert not result.run_requests
    assert json.loads(result.cursor) == {spec.kinesis_stream(user_id): {} for spec in TOPICS}


def test_the_sensor_skips_while_kinesis_is_unreachable(instance, user_id):
    nowhere = KinesisResource(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1", user_id=user_id)
    result = tick(instance, nowhere)
    assert isinstance(result, dg.SkipReason) and "PINTREST_KINESIS_ENDPOINT_URL" in result.skip_message


def follow(instance, resources, seconds: float):
    """The stream tables refreshed by a run that follows the streams for up to ``seconds``."""
    return dg.materialize(
        ASSETS,
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.assets(*STREAM_TABLES),
        run_config={"ops": {"stream_tables": {"config": {"follow_seconds": seconds}}}},
    )


def appended(result, asset: str) -> list[int]:
    """rows_appended of each materialisation of ``asset`` in the run, in order."""
    return [meta["rows_appended"] for meta in materialisations(result, asset)]


def wait_for_rows(path, rows: int, timeout: float = 120) -> None:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(TableNotFoundError):  # not created yet
            if DeltaTable(str(path)).to_pyarrow_dataset().count_rows() >= rows:
                return
        time.sleep(0.2)
    raise AssertionError(f"{path}: fewer than {rows} rows after {timeout}s")


def test_a_following_run_appends_what_arrives_until_another_run_is_queued(
    instance, resources, user_id, kinesis, posts_database, tmp_path, monkeypatch
):
    monkeypatch.setattr(stream_assets, "FOLLOW_POLL_SECONDS", 0.5)
    emulate(instance, resources, 40)
    pin = TOPICS[0]
    table = tmp_path / "warehouse" / pin.stream_table(user_id)
    outcome = {}
    following = threading.Thread(target=lambda: outcome.update(result=follow(instance, resources, 300)))
    started = time.monotonic()
    following.start()
    try:
        wait_for_rows(table, 40)
        # Sent while the run follows: the same run appends them, with its warm Spark session.
        put(kinesis, pin.kinesis_stream(user_id), [post["pin"] for post in draw(posts_database, 25, seed_value=9)])
        wait_for_rows(table, 65)
    finally:
        # Another run waits to start: the following run gives way.
        instance.add_run(
            dg.DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.NOT_STARTED)
        )
        following.join(timeout=120)
    assert not following.is_alive() and time.monotonic() - started < 200
    result = outcome["result"]
    assert result.success
    # A materialisation per refresh that appended, then the last refresh's.
    assert appended(result, "pin_stream_table")[:2] == [40, 25]
    assert sum(appended(result, "pin_stream_table")) == 65
    assert sum(appended(result, "geo_stream_table")) == 40
    assert materialisations(result, "pin_stream_table")[-1]["dagster/row_count"] == 65
    assert any("gives way" in e.user_message for e in instance.all_logs(result.run_id))
    # Its checks ran once, at the end, and found the Kinesis proxy's 40 acknowledged and 65 read.
    evaluations = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    assert evaluations["geo_stream_table"].passed
    assert "40 records acknowledged, 65 read from the stream" in evaluations["pin_stream_table"].description


def test_a_following_run_stops_when_nothing_arrives(instance, resources, monkeypatch):
    monkeypatch.setattr(stream_assets, "FOLLOW_POLL_SECONDS", 0.2)
    monkeypatch.setattr(stream_assets, "FOLLOW_IDLE_SECONDS", 2.0)
    emulate(instance, resources, 10)
    started = time.monotonic()
    result = follow(instance, resources, 300)
    assert time.monotonic() - started < 120
    # The first refresh's materialisation, then the last one's, which found nothing.
    assert appended(result, "user_stream_table") == [10, 0]
    assert any("nothing arrived for 2s" in e.user_message for e in instance.all_logs(result.run_id))
