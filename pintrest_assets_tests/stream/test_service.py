"""The streaming service in Dagster, on a real kinesalite: its micro-batches recorded as
materialisations without a run, its checks evaluated as it commits, a click that waits for it
instead of racing it (or says why it gave up), and the freshness check."""

from __future__ import annotations

import collections
import contextlib
import threading
import time

import dagster as dg
import pytest
from deltalake import DeltaTable

from pintrest_assets.defs.stream.freshness import (
    FRESHNESS_CHECK,
    build_freshness_sensor,
    evaluate_freshness,
)
from pintrest_assets.defs.stream.reporting import DagsterReporter
from pintrest_assets.stream.service import SERVICE, StreamService, WriterLock
from pintrest_assets.stream.tables import StreamTable
from pintrest_assets.topics import TOPICS, TOPICS_BY_NAME
from pintrest_assets_tests.kinesis.helpers import put
from pintrest_assets_tests.stream.helpers import ASSETS, STREAM_TABLES, draw, emulate, metadata

pytestmark = pytest.mark.kinesis  # kinesalite: Node.js and npm

PIN = TOPICS_BY_NAME["pin"]


def rows_of(path) -> int:
    try:
        return DeltaTable(str(path)).to_pyarrow_dataset().count_rows()
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def wait_for_rows(path, rows: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while rows_of(path) < rows:
        assert time.monotonic() < deadline, f"{path}: {rows_of(path)} rows, not {rows}, after {timeout}s"
        time.sleep(0.2)


@contextlib.contextmanager
def running_service(resources, spark, instance, maintain_seconds: float = 3600):
    """The streaming service in a thread of this process (this module's Spark session), its
    micro-batches recorded in ``instance``, its tables maintained every ``maintain_seconds``."""
    kinesis, warehouse = resources["kinesis"], resources["warehouse_io_manager"]
    reporter = DagsterReporter(instance, kinesis, check_every=0.5, log=lambda line: None)
    lines: list[str] = []
    service = StreamService(
        list(TOPICS),
        kinesis,
        warehouse.base_dir,
        lambda: spark,
        trigger_seconds=0.5,
        maintain_seconds=maintain_seconds,
        maintain=lambda table: warehouse.maintain_stream_table(table.table),
        on_commit=reporter,
        log=lines.append,
    )
    stop = threading.Event()
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(code=service.run(stop)))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while len(service.queries) < len(TOPICS):
            assert thread.is_alive(), lines
            assert time.monotonic() < deadline, lines
            time.sleep(0.2)
        yield service, reporter
    finally:
        stop.set()
        thread.join(timeout=120)
        reporter.close()
    assert not thread.is_alive() and outcome["code"] == 0, lines


def service_materialisations(instance, asset: str) -> list[dict]:
    """The metadata of the materialisations the service recorded (runless), oldest first."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    found = [
        {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in records
        if not r.run_id and r.asset_materialization is not None
    ]
    return list(reversed(found))


def latest_check(instance, asset: str, check: str):
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    [execution] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    return execution.event.dagster_event.event_specific_data


def test_the_service_appends_as_records_arrive_and_dagster_sees_each_micro_batch(
    instance, resources, user_id, kinesis, posts_database, spark, tmp_path
):
    warehouse = tmp_path / "warehouse"
    pin_table = warehouse / PIN.stream_table(user_id)
    emulate(instance, resources, 40)
    with running_service(resources, spark, instance) as (service, reporter):
        wait_for_rows(pin_table, 40)
        for spec in TOPICS:
            wait_for_rows(warehouse / spec.stream_table(user_id), 40)
        # Sent while it runs: appended by the same service, a micro-batch or more later.
        emulate(instance, resources, 25, seed=6)
        wait_for_rows(pin_table, 65)

        # A click now neither races the service nor fails: it waits for what had arrived.
        put(kinesis, PIN.kinesis_stream(user_id), [post["pin"] for post in draw(posts_database, 5, seed_value=9)])
        clicked = dg.materialize(
            ASSETS, resources=resources, instance=instance, selection=dg.AssetSelection.assets(*STREAM_TABLES)
        )
        assert clicked.success
        meta = metadata(clicked, "pin_stream_table")
        assert meta["appended_by"] == "stream service"
        assert (meta["dagster/row_count"], meta["records_read_total"], meta["records_behind"]) == (70, 70, -5)
        assert rows_of(pin_table) == 70
        assert metadata(clicked, "geo_stream_table")["dagster/row_count"] == 65

    # Each micro-batch the service committed is a materialisation of its own, with no run.
    recorded = service_materialisations(instance, "pin_stream_table")
    assert recorded and all(m["appended_by"] == "stream service" for m in recorded)
    assert [m["batch_id"] for m in recorded] == list(range(len(recorded)))
    assert sum(m["rows_appended"] for m in recorded) == 70
    assert recorded[-1]["dagster/row_count"] == 70 and recorded[-1]["records_read_total"] == 70
    assert reporter.reported == sum(len(service_materialisations(instance, spec.stream_table_asset)) for spec in TOPICS)
    geo = service_materialisations(instance, "geo_stream_table")
    assert sum(m["rows_appended"] for m in geo) == 65 and geo[-1]["shards_behind"] == 0
    # ... and the reconciliation checks were evaluated as it committed, without a run.
    geo_check = latest_check(instance, "geo_stream_table", "records_reconciled")
    assert geo_check.passed, geo_check.description
    pin_check = latest_check(instance, "pin_stream_table", "records_reconciled")
    assert "65 records acknowledged, 70 read from the stream: 5 more than acknowledged" in pin_check.description

    # Every record once: the table holds each post sent, as often as it was sent.
    sent = draw(posts_database, 40, seed_value=5) + draw(posts_database, 25, seed_value=6) + draw(posts_database, 5, seed_value=9)
    stored = collections.Counter(DeltaTable(str(pin_table)).to_pandas(columns=["ind"])["ind"])
    assert stored == collections.Counter(post["pin"][PIN.index_column] for post in sent)
    table = StreamTable.for_user(warehouse, PIN, user_id)
    assert table.checkpoint_batches() == list(range(table.state().batch_id + 1))


def test_a_click_while_the_service_is_stuck_fails_saying_so_then_refreshes_once_it_stops(
    instance, resources, user_id, kinesis, posts_database, tmp_path
):
    lock = WriterLock(tmp_path / "warehouse")
    assert lock.acquire(SERVICE)  # a service that holds the tables and commits nothing
    try:
        put(kinesis, PIN.kinesis_stream(user_id), [post["pin"] for post in draw(posts_database, 12)])
        stuck = dg.materialize(
            ASSETS,
            resources=resources,
            instance=instance,
            selection=dg.AssetSelection.assets(dg.AssetKey("pin_stream_table")),
            run_config={"ops": {"stream_tables": {"config": {"wait_seconds": 2}}}},
            raise_on_error=False,
        )
        assert not stuck.success
        [failure] = [e for e in stuck.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        message = str(failure.event_specific_data.error)
        assert "the stream service" in message and "did not commit the records that waited" in message
        assert "stop it (Ctrl-C) and refresh again" in message
    finally:
        lock.release()
    # No service: the click runs the query itself, once.
    done = dg.materialize(
        ASSETS,
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.assets(dg.AssetKey("pin_stream_table")),
    )
    meta = metadata(done, "pin_stream_table")
    assert "appended_by" not in meta and (meta["rows_appended"], meta["micro_batches"]) == (12, 1)


def test_freshness_fails_when_records_wait_and_the_table_does_not_advance(
    instance, resources, user_id, kinesis, posts_database, tmp_path
):
    kinesis_resource, warehouse = resources["kinesis"], str(tmp_path / "warehouse")
    assert evaluate_freshness(PIN, kinesis_resource, warehouse, threshold=0.5).passed  # nothing waits

    put(kinesis, PIN.kinesis_stream(user_id), [post["pin"] for post in draw(posts_database, 3)])
    time.sleep(1.5)
    stale = evaluate_freshness(PIN, kinesis_resource, warehouse, threshold=0.5)
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
    assert "hold records the table has not read" in stale.description and "never committed" in stale.description
    assert "no stream service is running: start `pintrest stream`" in stale.description

    lock = WriterLock(warehouse)
    assert lock.acquire(SERVICE)
    try:
        stuck = evaluate_freshness(PIN, kinesis_resource, warehouse, threshold=0.5)
        assert not stuck.passed and "holds the stream tables but has not appended them" in stuck.description
    finally:
        lock.release()

    # The sensor records the evaluations without a run (only the changes, and every few minutes).
    sensor = build_freshness_sensor(threshold=0.5)
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        sensor(context)
        cursor = context.cursor
    evaluation = latest_check(instance, "pin_stream_table", FRESHNESS_CHECK)
    assert not evaluation.passed and "no stream service is running" in evaluation.description
    assert latest_check(instance, "geo_stream_table", FRESHNESS_CHECK).passed

    dg.materialize(ASSETS, resources=resources, instance=instance, selection=dg.AssetSelection.assets(*STREAM_TABLES))
    assert evaluate_freshness(PIN, kinesis_resource, warehouse, threshold=0.5).passed
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        sensor(context)
    assert latest_check(instance, "pin_stream_table", FRESHNESS_CHECK).passed


def test_the_service_compacts_its_tables_between_its_own_micro_batches(
    instance, resources, user_id, kinesis, posts_database, spark, tmp_path
):
    pin_table = tmp_path / "warehouse" / PIN.stream_table(user_id)
    values = [post["pin"] for post in draw(posts_database, 60)]
    with running_service(resources, spark, instance, maintain_seconds=0.0):
        for first in range(0, 60, 10):  # a micro-batch each, or more
            put(kinesis, PIN.kinesis_stream(user_id), values[first : first + 10])
            wait_for_rows(pin_table, first + 10)
    delta = DeltaTable(str(pin_table))
    operations = [commit["operation"] for commit in delta.history()]
    assert "OPTIMIZE" in operations
    # Its files and log kept for an hour, not the batch tables' day: a commit a second adds up.
    assert delta.metadata().configuration["delta.logRetentionDuration"] == "interval 1 hours"
    # Compacted as it went: fewer files than micro-batches, and still every record once.
    batches = StreamTable.for_user(tmp_path / "warehouse", PIN, user_id).state().batch_id + 1
    assert len(delta.file_uris()) < batches
    stored = collections.Counter(delta.to_pandas(columns=["ind"])["ind"])
    assert stored == collections.Counter(value[PIN.index_column] for value in values)
    recorded = service_materialisations(instance, "pin_stream_table")
    assert any(m.get("maintenance_compacted_files", 0) > 0 for m in recorded)
