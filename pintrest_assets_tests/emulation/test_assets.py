import dagster as dg

from pintrest_assets.defs.ingest.assets import topic_streams
from pintrest_assets.defs.ingest.schedules import emulation_schedule
from pintrest_assets.defs.sources.assets import source_tables


def test_materialising_the_topic_streams_runs_one_emulation_batch(database, rest_proxy):
    result = dg.materialize(
        [*source_tables, topic_streams],
        resources={"database": database, "rest_proxy": rest_proxy},
        run_config={"ops": {"topic_streams": {"config": {"posts": 120, "seed": 9}}}},
    )
    assert result.success
    materialized = {
        e.asset_key.path[-1]: e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert set(materialized) == {"pin_topic", "geo_topic", "user_topic"}
    for name, metadata in materialized.items():
        topic = name.removesuffix("_topic")
        assert metadata["topic"].value == f"tester.{topic}"
        assert metadata["records_sent"].value == 120
        assert metadata["records_failed"].value == 0
        assert (metadata["first_offset"].value, metadata["last_offset"].value) == (0, 119)
        assert metadata["offset_ranges"].value == {"0": [0, 119]}
        assert metadata["records_per_second"].value > 0


def test_a_failed_batch_fails_the_run_but_keeps_its_counts(database, gateway):
    from pintrest_assets.kafka.client import RestProxyResource

    proxy = RestProxyResource(url=gateway.url, user_id="tester", max_retries=0)
    gateway.shutdown()
    result = dg.materialize(
        [*source_tables, topic_streams],
        resources={"database": database, "rest_proxy": proxy},
        run_config={"ops": {"topic_streams": {"config": {"posts": 10}}}},
        raise_on_error=False,
    )
    assert not result.success
    sent = [e.event_specific_data.materialization.metadata["records_sent"].value for e in result.get_asset_materialization_events()]
    assert sent == [0, 0, 0]
    failure = result.failure_data_for_node("topic_streams")
    assert "PINTREST_REST_PROXY_URL" in failure.error.message


def test_lineage_runs_from_each_source_table_to_its_stream():
    deps = {spec.key: set() for spec in source_tables}
    for key, spec_deps in topic_streams.asset_deps.items():
        deps[key] = spec_deps
    assert deps[dg.AssetKey("pin_topic")] == {dg.AssetKey("pinterest_data")}
    assert deps[dg.AssetKey("geo_topic")] == {dg.AssetKey("geolocation_data")}
    assert deps[dg.AssetKey("user_topic")] == {dg.AssetKey("user_data")}


def test_the_emulation_schedule_is_off_until_turned_on():
    assert emulation_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
