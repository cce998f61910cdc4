import json

import dagster as dg
import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T

from pintrest_assets.resources.spark import SparkResource
from pintrest_assets.resources.warehouse import (
    ConcurrentCommitError,
    TableAppend,
    TableState,
    WarehouseIOManager,
    WarehouseTable,
    merge_start,
)

SCHEMA = T.StructType([T.StructField("ind", T.LongType()), T.StructField("country", T.StringType())])


def _state(**fields) -> TableState:
    return TableState(schema=SCHEMA, **fields)


# --- the state file, without Spark ----------------------------------------------------------------


def test_state_survives_its_file():
    state = _state(
        version=3,
        batches=("batch-000001-aa", "batch-000003-bb"),
        batch_rows=(7, 5),
        quarantine_batches=("batch-000002-cc",),
        rows=12,
        quarantined=2,
        objects=5,
        cursor={"topics/u.geo/partition=0/": "topics/u.geo/partition=0/u.geo+0+0000000004.json"},
        summary={"ind": {"count": 12, "min": 0, "max": 11, "mean": 5.5, "m2": 143.0}},
    )
    assert TableState.from_json(state.to_json()) == state
    assert TableState.from_json(TableState().to_json()) == TableState()
    with pytest.raises(ValueError, match="format"):
        TableState.from_json('{"format": 99}')


def test_a_state_written_before_batch_rows_has_batches_of_unknown_size():
    data = json.loads(_state(batches=("batch-000001-aa", "batch-000002-bb"), rows=9).to_json())
    del data["batch_rows"]
    assert TableState.from_json(json.dumps(data)).batch_rows == (0, 0)  # merged on the next append


@pytest.mark.parametrize(
    "rows, start",
    [
        ((), None),
        ((100,) * 7, None),  # seven refreshes: not yet
        ((100,) * 8, 0),
        ((800,) + (100,) * 7, None),  # the merged batch is bigger than the seven after it
        ((800,) + (100,) * 8, 0),  # ...and no bigger than eight: the next merge takes it along
        ((5000, 64, 32, 16, 8, 4, 2, 1, 1), 1),  # each no bigger than those after it; not the big one
        ((5000, 40, 30, 20, 10, 10, 5, 1, 1, 1), None),  # 5 is bigger than the three after it: a run of 3
        ((5000, 1, 1, 1, 1, 1, 1, 1), None),  # a run of seven
        ((1, 1000) + (1,) * 8, 2),  # an early small batch stays behind a bigger one
    ],
)
def test_the_newest_batches_of_comparable_size_merge_eight_at_a_time(rows, start):
    assert merge_start(rows) == start


def test_merging_keeps_the_batch_count_logarithmic():
    rows, rewritten = [], 0
    for refresh in range(20_000):
        rows.append(100 if refresh % 3 else 1)
        start = merge_start(tuple(rows))
        if start is not None:
            rewritten += sum(rows[start:])
            rows[start:] = [sum(rows[start:])]
        assert len(rows) <= 40
    assert sum(rows) == 20_000 // 3 * 1 + 1 + (20_000 - 20_000 // 3 - 1) * 100
    assert rewritten / sum(rows) < 8  # each row rewritten a few times, not once per refresh


def test_a_commit_lists_batches_and_drops_the_unlisted(tmp_path):
    table = WarehouseTable(tmp_path, "df_geo")
    assert table.state() == TableState()
    kept, rejects_only, dead = table.new_batch(1), table.new_batch(2), table.new_batch(2)
    assert len({kept, rejects_only, dead}) == 3 and kept.startswith("batch-000001-")
    for name in (kept, dead):
        (table.path / name).mkdir(parents=True)
    for name in (kept, rejects_only, dead):
        (table.quarantine_path / name).mkdir(parents=True)

    new = _state(version=1, batches=(kept,), quarantine_batches=(kept, rejects_only), rows=4)
    table.commit(TableState(), new)
    assert table.state() == new
    assert sorted(p.name for p in table.path.iterdir() if p.is_dir()) == [kept]
    assert sorted(p.name for p in table.quarantine_path.iterdir()) == sorted([kept, rejects_only])


def test_a_commit_from_a_stale_state_changes_nothing(tmp_path):
    table = WarehouseTable(tmp_path, "df_geo")
    table.commit(TableState(), _state(version=1, rows=4))
    (table.path / "batch-000001-late").mkdir()
    with pytest.raises(ConcurrentCommitError, match="another run committed version 1"):
        table.commit(TableState(), _state(version=1, rows=9))
    assert table.state().rows == 4
    assert (table.path / "batch-000001-late").is_dir()  # another run's batch in flight is not touched


# --- through Dagster, on Spark --------------------------------------------------------------------


def _materialize(assets, io_manager, spark_resource, selection=None):
    return dg.materialize(
        assets,
        selection=selection,
        resources={"warehouse_io_manager": io_manager, "spark": spark_resource},
    )


def test_a_dataframe_replaces_the_table_and_loads_downstream(tmp_path, spark_resource):
    io_manager = WarehouseIOManager(base_dir=str(tmp_path / "warehouse"), spark=spark_resource)
    size = {"rows": 5}
    loaded = []

    @dg.asset(io_manager_key="warehouse_io_manager")
    def countries(spark: SparkResource):
        return spark.spark_session.range(size["rows"]).selectExpr("id AS ind", "concat('country ', id) AS country")

    @dg.asset
    def country_count(countries) -> None:
        loaded.append(sorted(r["ind"] for r in countries.collect()))

    result = _materialize([countries, country_count], io_manager, spark_resource)
    [materialization] = result.asset_materializations_for_node("countries")
    assert materialization.metadata["dagster/row_count"].value == 5
    assert materialization.metadata["path"].value == str(tmp_path / "warehouse" / "countries")

    size["rows"] = 3
    _materialize([countries, country_count], io_manager, spark_resource)
    assert loaded == [[0, 1, 2, 3, 4], [0, 1, 2]]
    table = io_manager.table("countries")
    [batch] = table.state().batches
    assert [p.name for p in table.path.iterdir() if p.is_dir()] == [batch]
    assert pq.read_table(table.path / batch).column("country").to_pylist() == ["country 0", "country 1", "country 2"]


def appending_places(io_manager, rows_per_refresh):
    """An incremental asset: each materialisation appends the next rows_per_refresh places."""

    @dg.asset(io_manager_key="warehouse_io_manager")
    def places(spark: SparkResource):
        base = io_manager.table("places").state()
        first = base.rows
        new = [(first + i, f"c{first + i}") for i in range(rows_per_refresh)]
        rows = spark.spark_session.createDataFrame(new, SCHEMA)
        cursor = {"p/": f"key{base.version}"}
        return TableAppend(base, SCHEMA, rows, rows_per_refresh, None, 0, objects=1, cursor=cursor)

    return places


def test_appended_batches_load_as_one_table(tmp_path, spark_resource):
    io_manager = WarehouseIOManager(base_dir=str(tmp_path / "warehouse"), spark=spark_resource)
    loaded = []

    places = appending_places(io_manager, rows_per_refresh=2)

    @dg.asset
    def place_list(places) -> None:
        loaded.append(sorted(r["ind"] for r in places.collect()))

    for _ in range(3):
        assert _materialize([places, place_list], io_manager, spark_resource).success
    assert loaded == [[0, 1], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    state = io_manager.table("places").state()
    assert (state.version, state.rows, state.objects, len(state.batches), state.cursor) == (3, 6, 3, 3, {"p/": "key2"})


def test_appended_batches_merge_as_they_pile_up(tmp_path, spark_resource):
    io_manager = WarehouseIOManager(base_dir=str(tmp_path / "warehouse"), spark=spark_resource)
    batches_after = []

    places = appending_places(io_manager, rows_per_refresh=1)

    for _ in range(9):
        result = _materialize([places], io_manager, spark_resource)
        [materialization] = result.asset_materializations_for_node("places")
        batches_after.append(materialization.metadata["warehouse_batches"].value)
    assert batches_after == [1, 2, 3, 4, 5, 6, 7, 1, 2]  # the eighth refresh merged the eight batches

    table = io_manager.table("places")
    state = table.state()
    assert (state.rows, state.batch_rows, state.cursor) == (9, (8, 1), {"p/": "key8"})
    assert sorted(p.name for p in table.path.iterdir() if p.is_dir()) == sorted(state.batches)  # merged-away gone
    assert sorted(r["ind"] for r in table.read(spark_resource.spark_session).collect()) == list(range(9))


def test_an_empty_table_loads_with_its_schema(tmp_path, spark_resource):
    io_manager = WarehouseIOManager(base_dir=str(tmp_path / "warehouse"), spark=spark_resource)
    loaded = []

    @dg.asset(io_manager_key="warehouse_io_manager")
    def places():
        return TableAppend(TableState(), SCHEMA, None, 0, None, 0, objects=0, cursor={})

    @dg.asset
    def place_list(places) -> None:
        loaded.append((places.schema, places.count()))

    assert _materialize([places, place_list], io_manager, spark_resource).success
    assert loaded == [(SCHEMA, 0)]


def test_bad_outputs_and_inputs_fail_clearly(tmp_path, spark_resource):
    io_manager = WarehouseIOManager(base_dir=str(tmp_path / "warehouse"), spark=spark_resource)

    @dg.asset(io_manager_key="warehouse_io_manager")
    def places():
        return {"not": "a DataFrame"}

    @dg.asset
    def place_list(places) -> None:
        pass

    with pytest.raises(TypeError, match="places: the warehouse stores Spark DataFrames or TableAppend"):
        _materialize([places], io_manager, spark_resource)
    with pytest.raises(FileNotFoundError, match="places has no table .*: materialize it first"):
        _materialize([places, place_list], io_manager, spark_resource, selection=[place_list])

    other = T.StructType([T.StructField("ind", T.StringType())])

    @dg.asset(io_manager_key="warehouse_io_manager", name="places")
    def drifted():
        return TableAppend(_state(version=0), other, None, 0, None, 0, objects=0, cursor={})

    with pytest.raises(ValueError, match="places: the batch's schema differs from the table's"):
        _materialize([drifted], io_manager, spark_resource)
