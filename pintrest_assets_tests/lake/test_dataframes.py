import collections
import json
import math
import random
import shutil
import statistics
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pintrest_assets.defs.lake.dataframes import cursor_after, dataframe_assets
from pintrest_assets.defs.lake.raw_json import raw_json_assets
from pintrest_assets.lake.schemas import SCHEMAS
from pintrest_assets.lake.statistics import merge_stats, summary_markdown
from pintrest_assets.lake import delta as lake_delta
from pintrest_assets.lake.mount.resource import MountedSelection
from pintrest_assets.lake.spark import SparkResource
from pintrest_assets.lake.warehouse import TableState, WarehouseTable
from pintrest_assets.kafka.sink_layout import object_key
from pintrest_assets.topics import TOPICS


def _put_lines(lake, topic_name: str, start_offset: int, lines: list[str], partition: int = 0) -> str:
    key = object_key(lake.topic(topic_name), partition, start_offset)
    lake.bucket.put(key, "".join(line + "\n" for line in lines).encode())
    return key


def _parquet(table: WarehouseTable) -> pa.Table:
    """The table's committed rows, read without Spark."""
    return DeltaTable(str(table.path)).to_pyarrow_table()


def _quarantine(table: WarehouseTable) -> list[dict]:
    if not DeltaTable.is_deltatable(str(table.quarantine_path)):
        return []
    return DeltaTable(str(table.quarantine_path)).to_pyarrow_table().to_pylist()


# --- definitions ----------------------------------------------------------------------------------


def test_one_dataframe_asset_per_topic_downstream_of_its_raw_json():
    assert [a.key for a in dataframe_assets] == [dg.AssetKey(spec.dataframe) for spec in TOPICS]
    for asset, spec in zip(dataframe_assets, TOPICS):
        asset_spec = next(iter(asset.specs))
        assert asset_spec.group_name == "lake"
        assert [dep.asset_key for dep in asset_spec.deps] == [dg.AssetKey(spec.raw_asset)]
        assert set(asset_spec.kinds) == {"spark", "delta"}
        assert {"s3_mount", "spark", "warehouse_io_manager"} <= asset.required_resource_keys
        assert asset.get_io_manager_key_for_asset_key(asset.key) == "warehouse_io_manager"
        assert [c.name for c in asset_spec.metadata["dagster/column_schema"].columns] == SCHEMAS[spec.name].fieldNames()


def test_schemas_follow_the_source_tables():
    simple = {name: {f.name: f.dataType.simpleString() for f in schema.fields} for name, schema in SCHEMAS.items()}
    assert simple == {
        "pin": {
            "index": "bigint",
            "unique_id": "string",
            "title": "string",
            "description": "string",
            "poster_name": "string",
            "follower_count": "string",
            "tag_list": "string",
            "is_image_or_video": "string",
            "image_src": "string",
            "downloaded": "bigint",
            "save_location": "string",
            "category": "string",
        },
        "geo": {
            "ind": "bigint",
            "timestamp": "string",
            "latitude": "double",
            "longitude": "double",
            "country": "string",
        },
        "user": {
            "ind": "bigint",
            "first_name": "string",
            "last_name": "string",
            "age": "bigint",
            "date_joined": "string",
        },
    }
    assert all(spec.index_column in SCHEMAS[spec.name].fieldNames() for spec in TOPICS)


# --- pure functions -------------------------------------------------------------------------------


def _stats(values: list) -> dict:
    """Column statistics computed directly, as ``profile`` computes them in Spark."""
    if not values:
        return {"count": 0, "min": None, "max": None}
    stats = {"count": len(values), "min": min(values), "max": max(values)}
    if isinstance(values[0], (int, float)):
        mean = statistics.fmean(values)
        stats.update(mean=mean, m2=sum((v - mean) ** 2 for v in values))
    return stats


@pytest.mark.parametrize("split", [0, 1, 7, 20])
def test_merged_stats_equal_the_stats_of_all_rows(split):
    rng = random.Random(split)
    ages = [rng.randint(20, 59) for _ in range(20)]
    names = [rng.choice(["Ada", "Bo", "Cy", "Zoë"]) for _ in range(20)]
    merged = merge_stats(
        {"age": _stats(ages[:split]), "name": _stats(names[:split])},
        {"age": _stats(ages[split:]), "name": _stats(names[split:])},
    )
    whole = {"age": _stats(ages), "name": _stats(names)}
    assert merged["name"] == whole["name"]
    assert {k: merged["age"][k] for k in ("count", "min", "max")} == {
        k: whole["age"][k] for k in ("count", "min", "max")
    }
    assert merged["age"]["mean"] == pytest.approx(whole["age"]["mean"])
    assert merged["age"]["m2"] == pytest.approx(whole["age"]["m2"])


def test_summary_markdown_reads_like_describe():
    stats = {
        "age": _stats([20, 30, 40]),
        "title": _stats(["a | b", "x" * 50]),
        "empty": _stats([]),
        "one": _stats([7]),
    }
    lines = summary_markdown(stats, ["age", "title", "empty", "one"], "Summary").splitlines()
    assert lines[0] == "**Summary**"
    assert lines[2] == "| summary | age | title | empty | one |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[4:]}
    assert list(rows) == ["count", "mean", "stddev", "min", "max"]
    assert rows["count"] == "| count | 3 | 2 | 0 | 1 |"
    assert rows["mean"] == "| mean | 30 |  |  | 7 |"
    assert rows["stddev"] == "| stddev | 10 |  |  |  |"  # no sample deviation of one value
    assert rows["min"] == "| min | 20 | a \\| b |  | 7 |"
    assert rows["max"].startswith("| max | 40 | " + "x" * 31 + "… |")
    assert math.isclose(float(rows["stddev"].split(" | ")[1]), statistics.stdev([20, 30, 40]))


def test_cursor_moves_per_partition_to_the_last_key_read():
    before = {
        "topics/u.pin/partition=0/": object_key("u.pin", 0, 4),
        "topics/u.pin/partition=2/": object_key("u.pin", 2, 9),
    }
    read = MountedSelection(
        objects=4,
        last_keys={
            "topics/u.pin/partition=0/": object_key("u.pin", 0, 12),
            "topics/u.pin/partition=1/": object_key("u.pin", 1, 3),
        },
    )
    assert cursor_after(before, read) == {
        "topics/u.pin/partition=0/": object_key("u.pin", 0, 12),
        "topics/u.pin/partition=1/": object_key("u.pin", 1, 3),
        "topics/u.pin/partition=2/": object_key("u.pin", 2, 9),
    }
    assert cursor_after(before, MountedSelection()) == before


# --- on Spark -------------------------------------------------------------------------------------


def test_reads_three_topics_and_quarantines_what_does_not_parse(spark_lake, bucket_land):
    lake = spark_lake
    bucket_land(lake.bucket, lake.topic("pin"), 0, records=3)
    bucket_land(lake.bucket, lake.topic("pin"), 3, records=2)
    pin_lines = [
        json.dumps({"index": 5, "follower_count": "892k", "downloaded": 0, "category": "art"}),
        '{"index": 6, "title": "cut short',
        json.dumps({"index": "seven", "follower_count": "1M"}),
        "   ",
        json.dumps([{"index": 8}, {"index": 9}]),
        json.dumps({"title": "no index"}),
        json.dumps({"index": 10, "follower_count": 437}),
    ]
    odd_key = _put_lines(lake, "pin", 5, pin_lines)
    bucket_land(lake.bucket, lake.topic("geo"), 0, records=2)
    geo_key = _put_lines(
        lake, "geo", 2, [json.dumps({"ind": 2, "latitude": "north", "longitude": 1.5}), json.dumps({"ind": 3})]
    )
    bucket_land(lake.bucket, lake.topic("user"), 0, records=4)
    bucket_land(lake.bucket, lake.topic("user"), 0, records=1, partition=1)

    result = lake.refresh()
    assert result.success

    expected = {  # rows, quarantined, objects, records (non-blank lines)
        "df_pin": (7, 4, 3, 11),
        "df_geo": (3, 1, 2, 4),
        "df_user": (5, 0, 2, 5),
    }
    for asset, (rows, quarantined, objects, records) in expected.items():
        metadata = lake.metadata(result, asset)
        assert (
            metadata["rows_read"],
            metadata["dagster/row_count"],
            metadata["quarantined"],
            metadata["quarantined_total"],
            metadata["objects_read"],
            metadata["records_in_objects"],
        ) == (rows, rows, quarantined, quarantined, objects, records), asset
        assert [c.name for c in metadata["dagster/column_schema"].columns] == SCHEMAS[asset[3:]].fieldNames()
        assert f"| count | {rows} |" in metadata["describe"]
        assert _parquet(lake.table(asset)).num_rows == rows

    pins = _parquet(lake.table("df_pin"))
    assert pins.schema.field("index").type == pa.int64()
    assert pins.schema.field("follower_count").type == pa.string()
    assert pins.schema.names == SCHEMAS["pin"].fieldNames()
    assert sorted(pins.column("index").to_pylist()) == [0, 1, 2, 3, 4, 5, 10]
    assert {"26k", "892k", "437"} <= set(pins.column("follower_count").to_pylist())

    assert sorted(_quarantine(lake.table("df_pin")), key=lambda q: q["line"]) == sorted(
        [
            {"source_key": odd_key, "line": pin_lines[1], "reason": "not valid JSON"},
            {"source_key": odd_key, "line": pin_lines[2], "reason": "does not match the schema"},
            {"source_key": odd_key, "line": pin_lines[4], "reason": "does not match the schema"},
            {"source_key": odd_key, "line": pin_lines[5], "reason": "no index"},
        ],
        key=lambda q: q["line"],
    )
    assert _quarantine(lake.table("df_geo")) == [
        {
            "source_key": geo_key,
            "line": json.dumps({"ind": 2, "latitude": "north", "longitude": 1.5}),
            "reason": "does not match the schema",
        }
    ]
    assert _quarantine(lake.table("df_user")) == []


def test_a_refresh_reads_only_new_objects_and_appends_them(spark_lake, bucket_land):
    lake = spark_lake
    landed = collections.Counter()
    for offset in (0, 2, 4):
        bucket_land(lake.bucket, lake.topic("pin"), offset, records=2)
        landed.update([offset, offset + 1])

    first = lake.metadata(lake.refresh("pin"), "df_pin")
    assert (first["objects_read"], first["rows_read"], first["dagster/row_count"]) == (3, 6, 6)

    # k = 4 new objects, in the known partition and in a new one.
    for partition, offset, records in [(0, 6, 2), (0, 8, 3), (1, 0, 1), (1, 1, 1)]:
        bucket_land(lake.bucket, lake.topic("pin"), offset, records=records, partition=partition)
        landed.update(range(offset, offset + records))
    second = lake.metadata(lake.refresh("pin"), "df_pin")
    assert (second["objects_read"], second["rows_read"]) == (4, 7)
    assert (second["dagster/row_count"], second["objects_total"]) == (6 + 7, 3 + 4)
    assert second["cursor"] == {
        "topics/u.pin/partition=0/": object_key("u.pin", 0, 8),
        "topics/u.pin/partition=1/": object_key("u.pin", 1, 1),
    }

    # Nothing new: no Spark at all, and the counts stay.
    class NoSpark(SparkResource):
        @property
        def spark_session(self):
            raise AssertionError("a refresh without new objects started Spark")

    third = lake.metadata(lake.refresh("pin", spark=NoSpark(spark_config={})), "df_pin")
    assert (third["objects_read"], third["rows_read"], third["quarantined"]) == (0, 0, 0)
    assert (third["dagster/row_count"], third["objects_total"]) == (13, 7)
    assert third["describe"] == second["describe"].replace("7 of them", "0 of them")

    # Downstream assets load the whole table, each landed record exactly once.
    seen = {}

    @dg.asset(ins={"df_pin": dg.AssetIn()})
    def pin_indices(df_pin) -> None:
        seen["indices"] = collections.Counter(r["index"] for r in df_pin.select("index").collect())
        seen["describe"] = {r["summary"]: r["index"] for r in df_pin.describe("index").collect()}

    result = dg.materialize(
        [*dataframe_assets, pin_indices], selection=[pin_indices], resources=lake.resources(), instance=lake.instance
    )
    assert result.success
    assert seen["indices"] == landed
    # The running summary agrees with Spark's describe() of the whole table.
    summary_rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in third["describe"].splitlines()[4:]
    }
    assert summary_rows["count"] == seen["describe"]["count"] == "13"
    assert float(summary_rows["mean"]) == pytest.approx(float(seen["describe"]["mean"]), rel=1e-5)
    assert float(summary_rows["stddev"]) == pytest.approx(float(seen["describe"]["stddev"]), rel=1e-5)
    assert (summary_rows["min"], summary_rows["max"]) == (seen["describe"]["min"], seen["describe"]["max"])


def test_a_run_that_dies_before_its_commit_is_read_again_once(spark_lake, bucket_land, monkeypatch):
    lake = spark_lake
    bucket_land(lake.bucket, lake.topic("user"), 0, records=3)
    _put_lines(lake, "user", 3, [json.dumps({"ind": 3, "age": "forty"}), json.dumps({"ind": 4, "age": 40})])

    def crash(*args, **kwargs):
        raise RuntimeError("killed between the parquet and the commit")

    with monkeypatch.context() as patch:
        patch.setattr(lake_delta, "commit_files", crash)
        assert not lake.refresh("user", raise_on_error=False).success
    table = lake.table("df_user")
    assert not DeltaTable.is_deltatable(str(table.path))  # written, never committed
    assert table.state() == TableState()

    bucket_land(lake.bucket, lake.topic("user"), 5, records=2)
    metadata = lake.metadata(lake.refresh("user"), "df_user")
    assert (metadata["objects_read"], metadata["rows_read"], metadata["quarantined"]) == (3, 6, 1)
    assert metadata["dagster/row_count"] == _parquet(table).num_rows == 6
    assert len(_quarantine(table)) == 1
    # The dead run's files are on disk, listed by no commit: readers never see them.
    written = [p for p in table.path.rglob("*.parquet")]
    assert len(written) > len(DeltaTable(str(table.path)).file_uris())


def test_an_append_that_died_before_its_quarantine_commit_is_completed_by_the_next(
    spark_lake, bucket_land, monkeypatch
):
    lake = spark_lake
    bad = _put_lines(lake, "geo", 0, ["not json", json.dumps({"ind": 1})])
    calls = []
    commit_files = lake_delta.commit_files

    def die_at_the_quarantine(path, *args, **kwargs):
        if "_quarantine" in str(path):
            calls.append(path)
            raise RuntimeError("killed between the append and its quarantine")
        return commit_files(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(lake_delta, "commit_files", die_at_the_quarantine)
        assert not lake.refresh("geo", raise_on_error=False).success
    table = lake.table("df_geo")
    assert calls and table.state().quarantined == 1 and _quarantine(table) == []

    bucket_land(lake.bucket, lake.topic("geo"), 2, records=2)
    metadata = lake.metadata(lake.refresh("geo"), "df_geo")
    assert (metadata["rows_read"], metadata["dagster/row_count"], metadata["quarantined_total"]) == (2, 3, 1)
    assert _quarantine(table) == [{"source_key": bad, "line": "not json", "reason": "not valid JSON"}]


def test_a_refresh_of_nothing_but_rejected_lines_keeps_them(spark_lake, bucket_land):
    lake = spark_lake
    bad_key = _put_lines(lake, "geo", 0, ['{"ind": 0, "country": "Chad"'])
    metadata = lake.metadata(lake.refresh("geo"), "df_geo")
    assert (metadata["objects_read"], metadata["rows_read"], metadata["quarantined"]) == (1, 0, 1)

    bucket_land(lake.bucket, lake.topic("geo"), 1, records=2)
    metadata = lake.metadata(lake.refresh("geo"), "df_geo")
    assert (metadata["rows_read"], metadata["dagster/row_count"], metadata["quarantined_total"]) == (2, 2, 1)
    assert _quarantine(lake.table("df_geo")) == [
        {"source_key": bad_key, "line": '{"ind": 0, "country": "Chad"', "reason": "not valid JSON"}
    ]


# Lines that Spark reads in its own way: the mount must leave each of them to Spark (or read it
# exactly as Spark does), so that rows and quarantine are what Spark alone would give.
_TRICKY_PIN_LINES = [
    "\ufeff" + json.dumps({"index": 100, "title": "after a byte-order mark"}),
    json.dumps({"index": 101, "_corrupt_record": "a field named as Spark's marker"}),
    '{"index": 102}{"index": 103}',
    '{"index": 104, "title": 5}',
    '{"index": 105, "downloaded": 1.0}',
    '{"index": 106, "index": 107}',
    "{'index': 108, 'title': 'single quotes'}",
    '{"index": 109, "title": "a\ttab"}',
    '{"index": 110, "title": "\\ud83d"}',
    '{"index": 111, "downloaded": NaN}',
    '{"index": 112, "follower_count": null}',
    '{"index": 113} and more',
    '{"title": "no index"}',
    '{"index": 114, "extra": {"nested": [1, 2, {"x": null}]}}',
    '   {"index": 115, "title": "spaces around"}   ',
    '{"index": 116, "title": "caf\\u00e9 \\u2728", "poster_name": "\\"quoted\\""}',
    '{"index": 117, "downloaded": 99999999999999999999}',
    '{"index": 118, "title": true}',
    '{"index": 119, "title": {"a": 1}}',
    '{"index": -0, "downloaded": -5, "title": ""}',
    "[1, 2]",
    "42",
    '"a string"',
    "null",
]
_TRICKY_GEO_LINES = [
    '{"ind": 200, "latitude": NaN, "longitude": 1.5}',
    '{"ind": 201, "latitude": 1e400, "longitude": 1}',
    '{"ind": 202, "latitude": 5, "longitude": -0.0, "timestamp": "2020-01-01 00:00:00"}',
    '{"ind": 203, "latitude": "5", "longitude": 1.5}',
    '{"ind": 204, "latitude": Infinity, "longitude": 1.5}',
]


def _spark_alone(spark, key: str, lines: list[str], name: str, index_column: str):
    """The rows and quarantine Spark gives when it parses every line itself."""
    from pintrest_assets.lake.parsing import good_rows, parse_records, rejected_lines

    df = spark.createDataFrame([(key, line) for line in lines if line.strip()], "key string, line string")
    parsed = parse_records(df, SCHEMAS[name], index_column)
    rows = [r.asDict() for r in good_rows(parsed).collect()]
    rejected = [r.asDict() for r in rejected_lines(parsed).collect()]
    return rows, rejected


def _sorted_json(rows) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def test_records_parsed_on_mount_are_the_rows_and_quarantine_spark_alone_gives(spark_lake):
    lake = spark_lake
    good = [
        json.dumps({"index": i, "title": f"t{i}", "follower_count": f"{i}k", "downloaded": i % 2}) for i in range(40)
    ]
    pin_lines = good[:20] + _TRICKY_PIN_LINES + good[20:]
    pin_key = _put_lines(lake, "pin", 0, pin_lines)
    geo_good = [json.dumps({"ind": i, "latitude": i / 3, "longitude": -i / 7, "country": "Chad"}) for i in range(30)]
    geo_lines = geo_good[:15] + _TRICKY_GEO_LINES + geo_good[15:]
    geo_key = _put_lines(lake, "geo", 0, geo_lines)

    result = lake.refresh("pin", "geo")
    assert result.success
    spark = lake.spark.spark_session
    for name, key, lines, index_column in [("pin", pin_key, pin_lines, "index"), ("geo", geo_key, geo_lines, "ind")]:
        table = lake.table(f"df_{name}")
        rows, rejected = _spark_alone(spark, key, lines, name, index_column)
        assert _sorted_json(_parquet(table).to_pylist()) == _sorted_json(rows), name
        assert _sorted_json(_quarantine(table)) == _sorted_json(rejected), name
        metadata = lake.metadata(result, f"df_{name}")
        assert (metadata["rows_read"], metadata["quarantined"]) == (len(rows), len(rejected))
        # The good lines around the tricky ones were parsed on mount, not left to Spark.
        assert metadata["rows_parsed_on_mount"] >= len(lines) - len(_TRICKY_PIN_LINES) - 8 * len(_TRICKY_PIN_LINES)
        assert metadata["rows_parsed_on_mount"] >= 30 if name == "pin" else 20

    # describe() of the table: as Spark's own statistics of the same rows give it.
    from pintrest_assets.lake.parsing import parse_records
    from pintrest_assets.lake.statistics import profile

    df = spark.createDataFrame([(pin_key, line) for line in pin_lines if line.strip()], "key string, line string")
    alone = profile(parse_records(df, SCHEMAS["pin"], "index"), SCHEMAS["pin"])
    described = lake.metadata(result, "df_pin")["describe"]
    expected = summary_markdown(alone.stats, SCHEMAS["pin"].fieldNames(), "title")
    assert described.split("\n", 1)[1] == expected.split("\n", 1)[1]


def _batches_in_mount(lake, name: str) -> list[str]:
    root = lake.s3_mount.topic_root(lake.topic(name))
    return sorted(p.name for p in Path(root).glob("*batch-*")) if Path(root).exists() else []


def test_the_mount_keeps_no_copy_of_what_a_refresh_committed_and_a_deleted_table_mounts_again(
    spark_lake, bucket_land
):
    lake = spark_lake
    for offset in range(0, 30, 3):
        bucket_land(lake.bucket, lake.topic("pin"), offset, records=3)
    bad = _put_lines(lake, "pin", 30, ["not json", json.dumps({"index": 30})])
    assert lake.refresh("pin").success
    assert _batches_in_mount(lake, "pin") == []  # read, committed: released

    # The mount alone (no refresh of the DataFrame) keeps the new objects until they are read.
    bucket_land(lake.bucket, lake.topic("pin"), 32, records=2)
    raw = next(a for a in raw_json_assets if a.key == dg.AssetKey("pin_raw_json"))
    assert dg.materialize([raw], resources=lake.resources(), instance=lake.instance).success
    assert _batches_in_mount(lake, "pin") != []
    second = lake.metadata(lake.refresh("pin"), "df_pin")
    assert (second["rows_read"], second["dagster/row_count"]) == (2, 33)
    assert _batches_in_mount(lake, "pin") == []

    # The table deleted: the next refresh mounts the objects again from the bucket, every row back.
    shutil.rmtree(lake.table("df_pin").path)
    shutil.rmtree(lake.table("df_pin").quarantine_path)
    rebuilt = lake.metadata(lake.refresh("pin"), "df_pin")
    assert (rebuilt["objects_read"], rebuilt["rows_read"], rebuilt["quarantined"]) == (12, 33, 1)
    assert collections.Counter(_parquet(lake.table("df_pin")).column("index").to_pylist()) == collections.Counter(
        range(34)
    ) - collections.Counter([31])
    assert _quarantine(lake.table("df_pin")) == [{"source_key": bad, "line": "not json", "reason": "not valid JSON"}]
    assert _batches_in_mount(lake, "pin") == []
    # The mount's totals are the bucket's, as before: the reconciliation still adds up.
    raw_meta = lake.metadata(dg.materialize([raw], resources=lake.resources(), instance=lake.instance), "pin_raw_json")
    assert (raw_meta["objects"], raw_meta["records"]) == (12, 34)
