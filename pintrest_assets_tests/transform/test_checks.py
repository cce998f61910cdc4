"""The cleaned tables' checks fail on bad tables, pass on good ones, and run as Dagster checks."""

import dagster as dg
import pytest
from pyspark.sql import functions as F

from pintrest_assets.defs.transform.checks import (
    JoinCoverage,
    build_clean_table_checks,
    check_results,
    coverage_result,
    inspect_table,
    join_coverage,
)
from pintrest_assets.domain import IMAGE_SRC_ERROR, USER_INFO_ERROR
from pintrest_assets.lake.spark import SparkResource, spark_config
from pintrest_assets.lake.warehouse import WarehouseIOManager
from pintrest_assets.topics import TOPICS_BY_NAME
from pintrest_assets.transform.cleaning import GEO_COLUMNS, PIN_COLUMNS


def _pin(ind, **values):
    return {"ind": ind, "unique_id": f"id-{ind}", "follower_count": 10, "category": "art", **values}


def _results(df, columns):
    return {r.check_name: r for r in check_results(inspect_table(df), columns)}


def test_a_clean_table_passes(cleaned):
    results = _results(cleaned("pin", [_pin(1, title="Nook"), _pin(2, follower_count=None)]), PIN_COLUMNS)
    assert {name: r.passed for name, r in results.items()} == {
        "no_placeholders": True,
        "follower_count_valid": True,
        "ind_unique": True,
        "expected_columns": True,
    }


def test_a_bad_table_fails_every_check_and_says_why(cleaned):
    bad = cleaned(
        "pin",
        [
            _pin(1, image_src=IMAGE_SRC_ERROR, title=" "),
            _pin(2, poster_name=USER_INFO_ERROR, follower_count=-5),
            _pin(2),
            _pin(None),
        ],
    )
    swapped = bad.select("unique_id", "ind", *PIN_COLUMNS[2:])
    results = _results(swapped, PIN_COLUMNS)
    assert not any(r.passed for r in results.values())
    assert results["no_placeholders"].description == (
        "Placeholder or blank strings left: title 1, poster_name 1, image_src 1"
    )
    assert results["follower_count_valid"].description == "1 negative follower counts"
    assert results["ind_unique"].description == "1 rows without an ind; 1 rows repeat an ind of another row"
    assert results["expected_columns"].description.startswith("columns are unique_id, ind, title,")


def test_follower_count_must_be_an_integer_column(cleaned):
    as_text = cleaned("pin", [_pin(1)]).withColumn("follower_count", F.lit("26k"))
    result = _results(as_text, PIN_COLUMNS)["follower_count_valid"]
    assert not result.passed
    assert result.description == "follower_count is string, not an integer column"


def test_geo_table_checks_have_no_follower_count(cleaned):
    geo = cleaned("geo", [{"ind": 1, "country": "", "coordinates": [1.0, 2.0]}])
    results = _results(geo, GEO_COLUMNS)
    assert set(results) == {"no_placeholders", "ind_unique", "expected_columns"}
    assert results["no_placeholders"].description == "Placeholder or blank strings left: country 1"


def test_join_coverage_counts_pins_without_geo_or_user(cleaned):
    pins = cleaned("pin", [_pin(i) for i in (1, 2, 3, 4)])
    geos = cleaned("geo", [{"ind": i, "coordinates": [0.0, 0.0]} for i in (1, 2, 9)])  # 9: a geo row without a pin
    users = cleaned("user", [{"ind": i} for i in (1, 2, 3, 3)])  # 3 twice must not count pin 3 twice
    assert join_coverage(pins, geos, users) == JoinCoverage(pins=4, without_geo=2, without_user=1)


@pytest.mark.parametrize(
    "without_geo, without_user, passed",
    [(0, 0, True), (1, 1, True), (2, 0, False), (0, 2, False)],  # 1 of 100 is at the 1% threshold
)
def test_join_coverage_warns_above_the_threshold(without_geo, without_user, passed):
    result = coverage_result(JoinCoverage(pins=100, without_geo=without_geo, without_user=without_user))
    assert result.passed is passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    if not passed:
        assert "2 of 100 pins (2.0%) have no" in result.description


def test_join_coverage_of_no_pins_passes():
    assert coverage_result(JoinCoverage(pins=0, without_geo=0, without_user=0)).passed


def test_checks_run_on_the_stored_table_and_block_on_a_broken_key(tmp_path, cleaned):
    io_manager = WarehouseIOManager(base_dir=str(tmp_path), spark=SparkResource(spark_config=spark_config("local[2]")))
    broken = cleaned("pin", [_pin(1), _pin(1, follower_count=-1)])
    io_manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("pin_clean")), broken)
    checks = build_clean_table_checks(TOPICS_BY_NAME["pin"])
    result = dg.materialize(
        [dg.AssetSpec("pin_clean").with_io_manager_key("warehouse_io_manager"), checks],
        resources={"warehouse_io_manager": io_manager},
        instance=dg.DagsterInstance.ephemeral(),
        selection=dg.AssetSelection.checks_for_assets("pin_clean"),
        raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {name: e.passed for name, e in evaluations.items()} == {
        "no_placeholders": True,
        "follower_count_valid": False,
        "ind_unique": False,
        "expected_columns": True,
    }
    assert evaluations["ind_unique"].blocking
    assert evaluations["ind_unique"].metadata["duplicate_keys"].value == 1
