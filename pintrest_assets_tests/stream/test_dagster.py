"""The stream group in Dagster: the Kinesis streams materialised through the local gateway's
Kinesis proxy, the stream tables through their availableNow queries (no streaming service
running) and the reconciliation check, on a real kinesalite."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.kinesis.helpers import put_raw
from pintrest_assets_tests.stream.helpers import ASSETS, SHARDS, STREAM_TABLES, check_only, emulate, metadata, refresh


pytestmark = pytest.mark.kinesis  # kinesalite: Node.js and npm


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


def test_a_click_compacts_a_stream_table_every_maintain_every_commits(instance, resources, user_id, tmp_path):
    """Clicks' refreshes (no service running) compact and vacuum a stream table every
    ``maintain_every`` Delta commits: its files stay few however many clicks append to it."""
    from deltalake import DeltaTable

    from pintrest_assets.lake.warehouse import WarehouseIOManager

    every = 3
    warehouse = WarehouseIOManager(base_dir=str(tmp_path / "warehouse"), spark=resources["spark"], maintain_every=every)
    resources = {**resources, "warehouse_io_manager": warehouse}
    path = tmp_path / "warehouse" / TOPICS[0].stream_table(user_id)
    sent, files, maintained = 0, [], []
    for click in range(7):
        emulate(instance, resources, 20, seed=20 + click)
        sent += 20
        meta = metadata(refresh(instance, resources), "pin_stream_table")
        assert (meta["rows_appended"], meta["dagster/row_count"]) == (20, sent)
        files.append(len(DeltaTable(str(path)).file_uris()))
        if "maintenance_compacted_files" in meta:
            maintained.append((click, meta["maintenance_compacted_files"], files[-1]))
    # Seven clicks of a micro-batch each: without maintenance, seven files and more.
    assert max(files) <= every, (files, maintained)
    assert len(maintained) >= 2 and all(left == 1 for _, _, left in maintained), maintained
    assert any(compacted >= 2 for _, compacted, _ in maintained), maintained
    assert DeltaTable(str(path)).to_pyarrow_table().num_rows == sent
