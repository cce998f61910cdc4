"""A refresh of the cleaned tables cleans only the DataFrame rows appended since their last
cleaning, and leaves the tables and their counts as cleaning the whole DataFrames does; a
DataFrame table rewritten or compacted, or cleaning rules changed, make it clean whole again."""

import dagster as dg
import pytest

from pintrest_assets.defs.transform import clean_tables
from pintrest_assets.defs.transform.clean_tables import VALUES_CONVERTED, clean_table_assets
from pintrest_assets.lake import delta as lake_delta
from pintrest_assets.lake.schemas import SCHEMAS
from pintrest_assets.lake.spark import SparkResource, spark_config
from pintrest_assets.lake.warehouse import TableAppend, WarehouseIOManager
from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.transform.frames import raw_frame
from pintrest_assets_tests.transform.hand_made import RESENT, raw_rows

DATAFRAMES = [dg.AssetSpec(spec.dataframe).with_io_manager_key("warehouse_io_manager") for spec in TOPICS]


def batches() -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """The hand-made rows in two batches: posts 1 to 6 (post 3 twice), then posts 5 to 11 and
    post 3 again (posts already cleaned arriving again), with a follower count and a timestamp
    that do not convert among the new ones."""
    first, second = {}, {}
    for spec in TOPICS:
        rows = raw_rows()[spec.name]
        key = spec.index_column
        first[spec.name] = [r for r in rows if r[key] <= 6][:-1]
        second[spec.name] = [r for r in rows if r[key] >= 5] + [r for r in rows if r[key] == RESENT][:1]
    second["pin"][2] = {**second["pin"][2], "follower_count": "lots"}
    second["geo"][2] = {**second["geo"][2], "timestamp": "yesterday"}
    return first, second


def append(io_manager: WarehouseIOManager, spark, rows_by_topic: dict[str, list[dict]]) -> None:
    for spec in TOPICS:
        rows = rows_by_topic[spec.name]

        def build(state, spec=spec, rows=rows):
            return TableAppend(
                base=state, schema=SCHEMAS[spec.name], rows=raw_frame(spark, spec.name, rows), row_count=len(rows),
                quarantine=None, quarantined=0, objects=1, cursor={"batch": str(state.appends + 1)},
            )  # fmt: skip

        io_manager.append_with_retry(spec.dataframe, build)


def clean(io_manager: WarehouseIOManager) -> dict[str, dict]:
    """A run of the cleaned tables: per table, its materialisation's metadata and its check's."""
    result = dg.materialize(
        [*DATAFRAMES, *clean_table_assets],
        resources={"warehouse_io_manager": io_manager},
        instance=dg.DagsterInstance.ephemeral(),
    )
    shown = {}
    for event in result.get_asset_materialization_events():
        shown[event.asset_key.to_user_string()] = {k: v.value for k, v in event.materialization.metadata.items()}
    for evaluation in result.get_asset_check_evaluations():
        assert evaluation.check_name == VALUES_CONVERTED
        shown[evaluation.asset_key.to_user_string()]["check"] = (
            evaluation.passed,
            {k: v.value for k, v in evaluation.metadata.items()},
        )
    return shown


def state(io_manager: WarehouseIOManager, spark, shown: dict[str, dict]) -> dict:
    """What a cleaning leaves: each table's rows and the counts it reports."""
    tables = {}
    for spec in TOPICS:
        name = spec.clean_asset
        metadata = shown[name]
        tables[name] = (
            sorted(tuple(r) for r in io_manager.table(name).read(spark).collect()),
            {k: metadata[k] for k in ("dagster/row_count", "rows_in", "duplicates_removed")},
            [tuple(r.data.values()) for r in metadata["nulls"].records],
            metadata["check"],
        )
    return tables


@pytest.fixture
def warehouse(tmp_path, spark_session_for_transform):
    """``warehouse(name)``: an empty warehouse's IO manager."""
    resource = SparkResource(spark_config=spark_config("local[2]"))
    return lambda name: WarehouseIOManager(base_dir=str(tmp_path / name), spark=resource)


def test_a_refresh_cleans_the_new_rows_only_and_gives_the_whole_cleaning(warehouse, spark):
    first, second = batches()
    refreshed = warehouse("refreshed")
    append(refreshed, spark, first)
    clean(refreshed)
    append(refreshed, spark, second)
    shown = clean(refreshed)
    whole = warehouse("whole")
    append(whole, spark, first)
    append(whole, spark, second)
    expected = clean(whole)
    for spec in TOPICS:
        name = spec.clean_asset
        assert shown[name]["rows_read"] == len(second[spec.name])
        assert expected[name]["rows_read"] == len(first[spec.name]) + len(second[spec.name])
    assert state(refreshed, spark, shown) == state(whole, spark, expected)
    # The values that did not convert are counted, whichever way the table was cleaned.
    assert shown["pin_clean"]["check"] == (False, {"unconverted_follower_count": 1})
    assert shown["geo_clean"]["check"] == (False, {"unconverted_timestamp": 1})
    # Nothing new: nothing read, nothing changed.
    again = clean(refreshed)
    assert {again[spec.clean_asset]["rows_read"] for spec in TOPICS} == {0}
    assert state(refreshed, spark, again) == state(whole, spark, expected)


def _cleans_whole_after(change, warehouse, spark) -> None:
    first, second = batches()
    io_manager = warehouse("changed")
    append(io_manager, spark, first)
    clean(io_manager)
    append(io_manager, spark, second)
    change(io_manager)
    shown = clean(io_manager)
    for spec in TOPICS:
        assert shown[spec.clean_asset]["rows_read"] == len(first[spec.name]) + len(second[spec.name])
    whole = warehouse("whole")
    append(whole, spark, first)
    append(whole, spark, second)
    assert state(io_manager, spark, shown) == state(whole, spark, clean(whole))


def test_a_compacted_dataframe_table_is_cleaned_whole(warehouse, spark):
    def compact(io_manager):
        for spec in TOPICS:
            assert io_manager.maintain(io_manager.table(spec.dataframe))["compacted_files"] > 1

    _cleans_whole_after(compact, warehouse, spark)


def test_a_rewritten_dataframe_table_is_cleaned_whole(warehouse, spark):
    def rewrite(io_manager):
        for spec in TOPICS:
            table = io_manager.table(spec.dataframe)
            rows = table.read(spark)
            adds = lake_delta.write_files(rows, table.path)
            lake_delta.commit(table, table.delta(), adds, rows.schema, mode="overwrite")

    _cleans_whole_after(rewrite, warehouse, spark)


def test_changed_cleaning_rules_clean_whole(warehouse, spark, monkeypatch):
    _cleans_whole_after(lambda _: monkeypatch.setattr(clean_tables, "RULES", "other rules"), warehouse, spark)


def test_a_cleaned_table_written_by_another_writer_is_cleaned_whole(warehouse, spark):
    def overwrite(io_manager):
        for spec in TOPICS:
            table = io_manager.table(spec.clean_asset)
            rows = table.read(spark).limit(1)
            adds = lake_delta.write_files(rows, table.path)
            lake_delta.commit(table, table.delta(), adds, rows.schema, mode="overwrite")

    _cleans_whole_after(overwrite, warehouse, spark)
