"""The warehouse IO manager: every table a Delta Lake table, written by Spark, committed by delta-rs."""

import os
import time

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T

from pintrest_assets.lake.spark import SparkResource
from pintrest_assets.lake.warehouse import (
    APP_ID,
    ConcurrentCommitError,
    OldWarehouseFormatError,
    TableAppend,
    TableState,
    WarehouseIOManager,
    WarehouseTable,
)

SCHEMA = T.StructType([T.StructField("ind", T.LongType()), T.StructField("country", T.StringType())])
QUARANTINE = T.StructType([T.StructField(c, T.StringType()) for c in ("source_key", "line", "reason")])


def _materialize(assets, io_manager, spark_resource, selection=None, **kwargs):
    return dg.materialize(
        assets,
        selection=selection,
        resources={"warehouse_io_manager": io_manager, "spark": spark_resource},
        **kwargs,
    )


def _metadata(result, name: str) -> dict:
    [materialization] = result.asset_materializations_for_node(name)
    return {k: v.value for k, v in materialization.metadata.items()}


def _io_manager(tmp_path, spark_resource, **config) -> WarehouseIOManager:
    return WarehouseIOManager(base_dir=str(tmp_path / "warehouse"), spark=spark_resource, **config)


def test_a_dataframe_replaces_the_table_and_loads_downstream(tmp_path, spark_resource):
    io_manager = _io_manager(tmp_path, spark_resource)
    size = {"rows": 5}
    loaded = []

    @dg.asset(io_manager_key="warehouse_io_manager")
    def countries(spark: SparkResource):
        return spark.spark_session.range(size["rows"]).selectExpr(
            "id AS ind", "concat('country ', id) AS country", "timestamp_ntz'2020-01-02 03:04:05' AS seen"
        )

    @dg.asset
    def country_count(countries) -> None:
        loaded.append(sorted(r["ind"] for r in countries.collect()))

    first = _metadata(_materialize([countries, country_count], io_manager, spark_resource), "countries")
    assert first["dagster/row_count"] == 5
    assert first["path"] == str(tmp_path / "warehouse" / "countries")
    assert (first["delta_version"], first["delta_last_operation"]) == (0, "CREATE TABLE")

    size["rows"] = 3
    second = _metadata(_materialize([countries, country_count], io_manager, spark_resource), "countries")
    assert (second["delta_version"], second["delta_last_operation"]) == (1, "WRITE")
    assert second["delta_files"] >= 1
    assert loaded == [[0, 1, 2, 3, 4], [0, 1, 2]]

    table = DeltaTable(str(tmp_path / "warehouse" / "countries"))
    pandas = table.to_pandas().sort_values("ind")
    assert pandas["country"].tolist() == ["country 0", "country 1", "country 2"]
    assert str(pandas["seen"].iloc[0]) == "2020-01-02 03:04:05"  # timestamp_ntz, microseconds
    assert [c["operation"] for c in table.history()] == ["WRITE", "CREATE TABLE"]
    table.load_as_version(0)  # time travel: the table as the first run left it
    assert len(table.to_pandas()) == 5


def test_a_pyarrow_table_replaces_the_table_as_a_dataframe_of_its_rows_does(tmp_path, spark_resource):
    io_manager = _io_manager(tmp_path, spark_resource)
    tables = [
        pa.table({"ind": pa.array([1, 2], pa.int64()), "country": ["Aruba", None], "median": [1.5, 2.0]}),
        pa.table({"ind": [1, 2], "country": ["Aruba", None], "median": [1.5, 2.0]}).slice(0, 0),
    ]
    loaded = []

    @dg.asset(io_manager_key="warehouse_io_manager")
    def medians():
        return tables[len(loaded)]

    @dg.asset
    def median_rows(medians) -> None:
        loaded.append((medians.schema.simpleString(), sorted(tuple(r) for r in medians.collect())))

    for rows in (2, 0):
        metadata = _metadata(_materialize([medians, median_rows], io_manager, spark_resource), "medians")
        assert metadata["dagster/row_count"] == rows
    assert loaded == [
        ("struct<ind:bigint,country:string,median:double>", [(1, "Aruba", 1.5), (2, None, 2.0)]),
        ("struct<ind:bigint,country:string,median:double>", []),
    ]
    assert [c["operation"] for c in DeltaTable(str(tmp_path / "warehouse" / "medians")).history()] == [
        "WRITE",
        "CREATE TABLE",
    ]


def appending_places(io_manager, rows_per_refresh, rejected_per_refresh=0):
    """An incremental asset: each materialisation appends the next rows_per_refresh places."""

    @dg.asset(io_manager_key="warehouse_io_manager")
    def places(spark: SparkResource):
        base = io_manager.table("places").state()
        first = base.rows
        session = spark.spark_session
        rows = session.createDataFrame([(first + i, f"c{first + i}") for i in range(rows_per_refresh)], SCHEMA)
        rejects = session.createDataFrame(
            [(f"key{base.appends}", f"bad {i}", "not valid JSON") for i in range(rejected_per_refresh)], QUARANTINE
        )
        cursor = {"p/": f"key{base.appends}"}
        return TableAppend(
            base, SCHEMA, rows, rows_per_refresh, rejects, rejected_per_refresh, objects=1, cursor=cursor
        )

    return places


def test_appends_commit_rows_and_cursor_together(tmp_path, spark_resource):
    io_manager = _io_manager(tmp_path, spark_resource)
    loaded = []

    places = appending_places(io_manager, rows_per_refresh=2, rejected_per_refresh=1)

    @dg.asset
    def place_list(places) -> None:
        loaded.append(sorted(r["ind"] for r in places.collect()))

    for _ in range(3):
        assert _materialize([places, place_list], io_manager, spark_resource).success
    assert loaded == [[0, 1], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]

    table = io_manager.table("places")
    state = table.state()
    assert (state.appends, state.rows, state.quarantined, state.objects, state.cursor) == (3, 6, 3, 3, {"p/": "key2"})
    delta = DeltaTable(str(table.path))
    # One commit per append, each carrying the app transaction and the state it leaves.
    assert delta.version() == 2 and delta.transaction_version(APP_ID) == 3
    [latest] = delta.history(1)
    assert latest["pintrest"]["cursor"] == {"p/": "key2"} and latest["pintrest"]["rows"] == 6
    # The rejected lines: a Delta table of their own, one batch per append.
    quarantine = DeltaTable(str(table.quarantine_path))
    assert sorted(quarantine.to_pandas()["source_key"]) == ["key0", "key1", "key2"]
    assert quarantine.transaction_version(APP_ID) == 3
    assert table.read_quarantine(spark_resource.spark_session).count() == 3


def test_an_append_from_a_stale_state_changes_nothing(tmp_path, spark_resource):
    io_manager = _io_manager(tmp_path, spark_resource)
    places = appending_places(io_manager, rows_per_refresh=2)
    assert _materialize([places], io_manager, spark_resource).success
    stale = io_manager.table("places").state()
    assert _materialize([places], io_manager, spark_resource).success

    @dg.asset(io_manager_key="warehouse_io_manager", name="places")
    def late(spark: SparkResource):
        rows = spark.spark_session.createDataFrame([(99, "late")], SCHEMA)
        return TableAppend(stale, SCHEMA, rows, 1, None, 0, objects=1, cursor={"p/": "late"})

    with pytest.raises(ConcurrentCommitError, match="another run committed append 2 after this run read append 1"):
        _materialize([late], io_manager, spark_resource)
    assert io_manager.table("places").state().rows == 4


def test_two_appends_racing_from_one_state_commit_once(tmp_path, spark_resource):
    """The app transaction makes the second of two commits from the same snapshot fail."""
    io_manager = _io_manager(tmp_path, spark_resource)
    table = io_manager.table("places")
    session = spark_resource.spark_session
    from pintrest_assets.lake import delta as lake_delta

    racing = {}
    commit_files = lake_delta.commit_files

    def commit_after_the_other(path, delta, adds, schema, mode, properties):
        if not racing:
            racing["first"] = True
            other = TableAppend(
                TableState(appends=1), SCHEMA, session.createDataFrame([(7, "b")], SCHEMA), 1, None, 0, 1, {"p/": "b"}
            )
            io_manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("places")), other)
        return commit_files(path, delta, adds, schema, mode, properties)

    first = TableAppend(TableState(), SCHEMA, session.createDataFrame([(1, "a")], SCHEMA), 1, None, 0, 1, {"p/": "a"})
    io_manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("places")), first)
    base = table.state()
    mine = TableAppend(base, SCHEMA, session.createDataFrame([(2, "c")], SCHEMA), 1, None, 0, 1, {"p/": "c"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lake_delta, "commit_files", commit_after_the_other)
        with pytest.raises(ConcurrentCommitError):
            io_manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("places")), mine)
    assert sorted(r["ind"] for r in table.read(session).collect()) == [1, 7]
    assert table.state().cursor == {"p/": "b"}


def test_small_files_are_compacted_and_vacuumed_every_few_commits(tmp_path, spark_resource):
    io_manager = _io_manager(tmp_path, spark_resource, maintain_every=4, vacuum_retention_hours=1)
    places = appending_places(io_manager, rows_per_refresh=1)
    files = []
    for _ in range(5):
        metadata = _metadata(_materialize([places], io_manager, spark_resource), "places")
        files.append(metadata["delta_files"])
    # Versions 0..3 add a file each; version 4 adds one and compacts the five (vacuum has nothing
    # old enough to delete, so it commits nothing).
    assert files == [1, 2, 3, 4, 1]
    assert metadata["maintenance_compacted_files"] == 5
    table = io_manager.table("places")
    # The first maintenance also sets how long the log keeps a commit: as long as the vacuum keeps files.
    assert [c["operation"] for c in table.delta().history(2)] == ["SET TBLPROPERTIES", "OPTIMIZE"]
    assert metadata["delta_last_operation"] == "SET TBLPROPERTIES"
    assert table.delta().metadata().configuration["delta.logRetentionDuration"] == "interval 1 hours"
    assert sorted(r["ind"] for r in table.read(spark_resource.spark_session).collect()) == list(range(5))
    assert table.state().rows == 5  # maintenance commits keep the append's state

    # The compacted-away files stay for readers that listed them, until the retention has passed.
    delta = DeltaTable(str(table.path))
    live = {os.path.relpath(uri, table.path) for uri in delta.file_uris()}
    on_disk = {os.path.relpath(os.path.join(d, f), table.path) for d, _, fs in os.walk(table.path) for f in fs}
    data_files = {f for f in on_disk if f.endswith(".parquet") and not f.startswith("_delta_log")}
    assert live < data_files and len(data_files) == 6
    # A run that died before its commit left a file no commit lists, two hours ago.
    orphan = table.path / "0000000000000-dead" / "part-0.parquet"
    orphan.parent.mkdir()
    orphan.write_bytes(b"PAR1")
    long_ago = time.time() - 2 * 3600
    os.utime(orphan, (long_ago, long_ago))
    done = io_manager.maintain(table)
    # The orphan goes; the files compacted away a moment ago stay until the retention has passed.
    assert done["vacuumed_files"] == 1 and not orphan.exists()
    remaining = {os.path.relpath(os.path.join(d, f), table.path) for d, _, fs in os.walk(table.path) for f in fs}
    assert {f for f in remaining if f.endswith(".parquet") and not f.startswith("_delta_log")} == data_files


def test_an_empty_table_loads_with_its_schema(tmp_path, spark_resource):
    io_manager = _io_manager(tmp_path, spark_resource)
    loaded = []

    @dg.asset(io_manager_key="warehouse_io_manager")
    def places():
        return TableAppend(TableState(), SCHEMA, None, 0, None, 0, objects=0, cursor={})

    @dg.asset
    def place_list(places) -> None:
        loaded.append((places.schema, places.count()))

    assert _materialize([places, place_list], io_manager, spark_resource).success
    assert loaded == [(SCHEMA, 0)]
    assert DeltaTable(str(tmp_path / "warehouse" / "places")).to_pandas().empty


def test_an_old_format_table_says_how_to_rebuild(tmp_path, spark_resource):
    io_manager = _io_manager(tmp_path, spark_resource)
    old = tmp_path / "warehouse" / "df_pin"
    (old / "batch-000001-aa").mkdir(parents=True)
    (old / "_table.json").write_text('{"format": 1}')
    with pytest.raises(OldWarehouseFormatError) as raised:
        io_manager.table("df_pin").state()
    assert raised.value.setting == "PINTREST_WAREHOUSE"
    message = str(raised.value)
    assert "before Delta Lake" in message
    assert f"mv {tmp_path / 'warehouse'} {tmp_path / 'warehouse'}.pre-delta" in message


def test_bad_outputs_and_inputs_fail_clearly(tmp_path, spark_resource):
    io_manager = _io_manager(tmp_path, spark_resource)

    @dg.asset(io_manager_key="warehouse_io_manager")
    def places():
        return {"not": "a DataFrame"}

    @dg.asset
    def place_list(places) -> None:
        pass

    with pytest.raises(TypeError, match="places: the warehouse stores Spark DataFrames, pyarrow tables"):
        _materialize([places], io_manager, spark_resource)
    with pytest.raises(FileNotFoundError, match="places has no table .*: materialize it first"):
        _materialize([places, place_list], io_manager, spark_resource, selection=[place_list])

    other = T.StructType([T.StructField("ind", T.StringType())])

    @dg.asset(io_manager_key="warehouse_io_manager", name="places")
    def drifted():
        return TableAppend(TableState(schema=SCHEMA), other, None, 0, None, 0, objects=0, cursor={})

    with pytest.raises(ValueError, match="places: the batch's schema differs from the table's"):
        _materialize([drifted], io_manager, spark_resource)


def test_a_table_is_a_warehouse_table_of_its_asset(tmp_path):
    table = WarehouseTable(tmp_path, "df_geo")
    assert table.path == tmp_path / "df_geo"
    assert table.quarantine_path == tmp_path / "_quarantine" / "df_geo"
    assert table.state() == TableState()
