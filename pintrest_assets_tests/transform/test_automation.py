"""The daily schedule (no catch-up) and the switchable refresh on new DataFrames."""

import datetime as dt

import dagster as dg
import pytest

from pintrest_assets.defs.transform.answers import answer_assets
from pintrest_assets.defs.transform.automation import ON_NEW_DATA, transform_daily_schedule, transform_on_new_dataframes
from pintrest_assets.defs.transform.clean_tables import clean_table_assets
from pintrest_assets.lake.spark import SparkResource
from pintrest_assets.lake.warehouse import WarehouseIOManager
from pintrest_assets.topics import TOPICS


def _tick(instance, late: dt.timedelta):
    scheduled = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - late
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=scheduled)
    return transform_daily_schedule(context)


def _materialise_dataframes(instance, topics=TOPICS):
    for spec in topics:
        instance.report_runless_asset_event(dg.AssetMaterialization(spec.dataframe))


@pytest.fixture
def instance():
    # A schedule's context needs an instance it can refer to, not an in-memory one.
    with dg.instance_for_test() as instance:
        yield instance


def test_daily_tick_refreshes_the_transform_group(instance):
    _materialise_dataframes(instance)
    request = _tick(instance, dt.timedelta(minutes=1))
    assert isinstance(request, dg.RunRequest)
    day = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).date().isoformat()
    assert request.run_key == f"transform-{day}"
    assert transform_daily_schedule.cron_schedule == "0 0 * * *"
    assert transform_daily_schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_a_tick_a_day_late_is_not_caught_up(instance):
    _materialise_dataframes(instance)
    skipped = _tick(instance, dt.timedelta(days=1, minutes=5))
    assert isinstance(skipped, dg.SkipReason)
    assert "not catching up" in skipped.skip_message
    # Less than a day late (the daemon was down for a few hours): still today's run.
    assert isinstance(_tick(instance, dt.timedelta(hours=23)), dg.RunRequest)


def test_nothing_runs_before_the_dataframes_exist(instance):
    _materialise_dataframes(instance, TOPICS[:1])
    skipped = _tick(instance, dt.timedelta(minutes=1))
    assert isinstance(skipped, dg.SkipReason)
    assert skipped.skip_message == "nothing to clean yet: df_geo, df_user never materialised"


def test_refresh_on_new_dataframes_is_on_every_transform_asset_and_off_until_turned_on():
    assert transform_on_new_dataframes.default_status == dg.DefaultSensorStatus.STOPPED
    specs = [spec for asset in [*clean_table_assets, *answer_assets] for spec in asset.specs]
    assert len(specs) == 3 + 9
    for spec in specs:
        assert spec.automation_condition == ON_NEW_DATA, spec.key


def test_schedule_and_sensor_cover_exactly_the_transform_assets(tmp_path):
    stage = dg.Definitions(
        assets=[*clean_table_assets, *answer_assets, *(dg.AssetSpec(spec.dataframe) for spec in TOPICS)],
        schedules=[transform_daily_schedule],
        sensors=[transform_on_new_dataframes],
        resources={
            "warehouse_io_manager": WarehouseIOManager(base_dir=str(tmp_path), spark=SparkResource(spark_config={}))
        },
    )
    dg.Definitions.validate_loadable(stage)
    repository = stage.get_repository_def()
    transform = {key for a in [*clean_table_assets, *answer_assets] for key in a.keys}
    graph = repository.asset_graph
    assert transform_on_new_dataframes.asset_selection.resolve(graph) == transform
    job = repository.get_job(transform_daily_schedule.job_name)
    assert {key for key in job.asset_layer.selected_asset_keys} == transform


def test_a_dataframe_refreshed_during_a_transform_run_is_cleaned_again_after_it():
    """df_pin refreshed while the transform's run is in progress (after the run read it): once that
    run ends, pin_clean and the answer that reads it are requested again, so the new rows reach the
    answers; then nothing more is requested."""
    df_pin = dg.AssetSpec("df_pin")
    evaluations = {}
    refreshed_during_the_run = []

    def evaluate(instance, name, cursor):
        result = dg.evaluate_automation_conditions(defs=[df_pin, pin_clean, answer], instance=instance, cursor=cursor)
        evaluations[name] = result
        return result.total_requested

    @dg.asset(deps=[df_pin], automation_condition=ON_NEW_DATA)
    def pin_clean(context: dg.AssetExecutionContext) -> None:
        if not refreshed_during_the_run:  # the run has read df_pin; a refresh of it commits now, the sensor ticks
            refreshed_during_the_run.append(True)
            context.instance.report_runless_asset_event(dg.AssetMaterialization("df_pin"))
            evaluate(context.instance, "during", evaluations["requested"].cursor)

    @dg.asset(deps=[pin_clean], automation_condition=ON_NEW_DATA)
    def answer() -> None:
        pass

    job = dg.Definitions(assets=[df_pin, pin_clean, answer]).resolve_implicit_global_asset_job_def()

    def run_transform(instance) -> bool:
        """A run of both, selected as the automation sensor's runs are (the run's asset selection)."""
        selection = [dg.AssetKey("pin_clean"), dg.AssetKey("answer")]
        return job.execute_in_process(instance=instance, asset_selection=selection).success

    with dg.instance_for_test() as instance:
        evaluate(instance, "first", None)
        instance.report_runless_asset_event(dg.AssetMaterialization("df_pin"))
        assert evaluate(instance, "requested", evaluations["first"].cursor) == 2
        assert run_transform(instance)
        assert evaluations["during"].total_requested == 0  # its run is in progress
        assert evaluate(instance, "after", evaluations["during"].cursor) == 2
        assert run_transform(instance)
        assert evaluate(instance, "settled", evaluations["after"].cursor) == 0
        assert evaluate(instance, "still", evaluations["settled"].cursor) == 0
