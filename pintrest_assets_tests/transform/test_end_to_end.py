"""From df_pin/df_geo/df_user in a warehouse to the cleaned tables, the nine answers and their
checks, in one Dagster run with the real warehouse IO manager."""

import base64

import dagster as dg
import pytest

from pintrest_assets.defs.transform.answers import ANSWERS, answer_assets
from pintrest_assets.defs.transform.checks import clean_table_checks
from pintrest_assets.defs.transform.clean_tables import clean_table_assets
from pintrest_assets.lake.schemas import SCHEMAS
from pintrest_assets.lake.spark import SparkResource, spark_config
from pintrest_assets.lake.warehouse import TableAppend, TableState, WarehouseIOManager
from pintrest_assets.topics import TOPICS
from pintrest_assets.transform.cleaning import CLEANED_COLUMNS
from pintrest_assets_tests.transform.frames import raw_frame
from pintrest_assets_tests.transform.hand_made import EXPECTED, raw_rows

DATAFRAMES = [dg.AssetSpec(spec.dataframe).with_io_manager_key("warehouse_io_manager") for spec in TOPICS]


def write_dataframes(io_manager: WarehouseIOManager, spark, rows_by_topic: dict[str, list[dict]]) -> None:
    """The DataFrame tables as the lake's assets leave them: one appended batch each."""
    for spec in TOPICS:
        rows = raw_frame(spark, spec.name, rows_by_topic[spec.name])
        batch = TableAppend(
            base=TableState(),
            schema=SCHEMAS[spec.name],
            rows=rows,
            row_count=len(rows_by_topic[spec.name]),
            quarantine=None,
            quarantined=0,
            objects=1,
            cursor={},
        )
        io_manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey(spec.dataframe)), batch)


@pytest.fixture(scope="module")
def run(tmp_path_factory, spark_session_for_transform):
    """One run over the hand-made posts: (result, io manager)."""
    io_manager = WarehouseIOManager(
        base_dir=str(tmp_path_factory.mktemp("warehouse")), spark=SparkResource(spark_config=spark_config("local[2]"))
    )
    write_dataframes(io_manager, spark_session_for_transform, raw_rows())
    result = dg.materialize(
        [*DATAFRAMES, *clean_table_assets, *answer_assets, *clean_table_checks],
        resources={"warehouse_io_manager": io_manager},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return result, io_manager


def _metadata(result, asset: str) -> dict:
    [materialization] = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(asset)]
    return {k: v.value for k, v in materialization.materialization.metadata.items()}


def test_the_run_succeeds_and_the_checks_pass_but_join_coverage(run):
    result, _ = run
    assert result.success
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    # Per cleaned table: no_placeholders, ind_unique, expected_columns, values_converted; on
    # pin_clean also follower_count_valid and join_coverage.
    assert len(evaluations) == 3 * 4 + 2
    failed = {key: e for key, e in evaluations.items() if not e.passed}
    # Post 10 has no geo row and post 11 no user row: 1 of 11 pins each, above 1%.
    assert list(failed) == [("pin_clean", "join_coverage")]
    coverage = failed["pin_clean", "join_coverage"]
    assert coverage.severity == dg.AssetCheckSeverity.WARN
    assert {k: coverage.metadata[k].value for k in ("pins", "pins_without_geo", "pins_without_user")} == {
        "pins": 11,
        "pins_without_geo": 1,
        "pins_without_user": 1,
    }


@pytest.mark.parametrize("answer", [a.name for a in ANSWERS])
def test_stored_answer_is_the_hand_worked_one(run, answer, spark_session_for_transform):
    result, io_manager = run
    columns, expected = EXPECTED[answer]
    table = io_manager.table(answer).read(spark_session_for_transform)
    assert table.columns == columns
    assert sorted(tuple(r) for r in table.collect()) == sorted(expected)
    metadata = _metadata(result, answer)
    assert metadata["dagster/row_count"] == len(expected)
    # The metadata table shows the rows under the table's columns.
    shown = metadata["result"]
    assert [c.name for c in shown.schema.columns] == columns
    assert len(shown.records) == len(expected)


def test_cleaned_tables_report_duplicates_and_nulls(run, spark_session_for_transform):
    result, io_manager = run
    for spec in TOPICS:
        table = io_manager.table(f"{spec.name}_clean").read(spark_session_for_transform)
        assert tuple(table.columns) == CLEANED_COLUMNS[spec.name]
        metadata = _metadata(result, f"{spec.name}_clean")
        unique = len(raw_rows()[spec.name]) - 2  # post 3 sent three times
        assert (metadata["dagster/row_count"], metadata["duplicates_removed"]) == (unique, 2)
        assert table.count() == unique
        assert [c.name for c in metadata["dagster/column_schema"].columns] == list(CLEANED_COLUMNS[spec.name])
    pin_nulls = {
        r.data["column"]: (r.data["nulls"], r.data["share"]) for r in _metadata(result, "pin_clean")["nulls"].records
    }
    # Fay's "User Info Error" follower count; images of even posts; titles of posts 4 and 8.
    assert pin_nulls["follower_count"] == (1, 0.0909)
    assert pin_nulls["image_src"] == (5, 0.4545)
    assert pin_nulls["title"] == (2, 0.1818)


def test_charts_are_png_images(run):
    result, _ = run
    for answer in ("posts_per_category_by_year", "median_followers_by_age_group"):
        chart = _metadata(result, answer)["chart"]
        prefix = "](data:image/png;base64,"
        assert prefix in chart
        png = base64.b64decode(chart.split(prefix, 1)[1].rstrip(")"))
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
