"""The Kinesis source in Spark Structured Streaming: availableNow runs against kinesalite, resumed
and replayed from their checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from pintrest_assets.kinesis.spark_source import FORMAT, SHARD_END, register
from pintrest_assets.kinesis.streams import wait_until_active
from pintrest_assets_tests.kinesis.helpers import put_posts

pytestmark = pytest.mark.kinesis  # kinesalite: Node.js and npm

POST = "index int, title string, follower_count string"


@pytest.fixture(scope="module")
def kinesis_spark(spark):
    register(spark)
    return spark


def run_available_now(spark, endpoint_url: str, stream: str, root: Path, **options) -> list[int]:
    """One availableNow run from ``root/checkpoint``, each batch written to ``root/out/batch=<id>``
    (overwritten when replayed); returns the rows of each batch it ran."""

    def write(batch, batch_id):
        batch.write.mode("overwrite").parquet(str(root / "out" / f"batch={batch_id}"))

    reader = (
        spark.readStream.format(FORMAT)
        .option("streamName", stream)
        .option("endpointUrl", endpoint_url)
        .option("region", "us-east-1")
    )
    for name, value in options.items():
        reader = reader.option(name, value)
    query = (
        reader.load()
        .writeStream.foreachBatch(write)
        .option("checkpointLocation", str(root / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(timeout=120)
    assert not query.isActive, "the availableNow run did not stop"
    assert query.exception() is None
    return [p["numInputRows"] for p in query.recentProgress if p["numInputRows"]]


def last_offset(root: Path) -> dict:
    """The source offset of the last batch in the checkpoint's offset log."""
    offsets = root / "checkpoint" / "offsets"
    latest = max((p for p in offsets.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return json.loads(latest.read_text().splitlines()[-1])


def read_out(spark, root: Path):
    return spark.read.parquet(str(root / "out"))


def test_available_now_reads_what_was_put_then_only_what_came_after(
    kinesis_spark, kinesalite, kinesis, new_stream, tmp_path
):
    spark = kinesis_spark
    stream = new_stream(3)
    before = time.time()
    posts = put_posts(kinesis, stream, 0, 1000)
    after = time.time()

    assert sum(run_available_now(spark, kinesalite.endpoint_url, stream, tmp_path, initialPosition="earliest")) == 1000
    out = read_out(spark, tmp_path)
    assert out.drop("batch").schema.simpleString() == (
        "struct<partitionKey:string,data:binary,stream:string,shardId:string,"
        "sequenceNumber:string,approximateArrivalTimestamp:timestamp>"
    )
    decoded = out.select(F.from_json(F.col("data").cast("string"), POST).alias("post")).select("post.*")
    assert sorted(tuple(r) for r in decoded.collect()) == sorted(
        (p["index"], p["title"], p["follower_count"]) for p in posts
    )
    stats = out.agg(
        F.countDistinct("shardId", "sequenceNumber").alias("distinct"),
        F.countDistinct("shardId").alias("shards"),
        F.countDistinct("stream").alias("streams"),
        F.min("approximateArrivalTimestamp").alias("first"),
        F.max("approximateArrivalTimestamp").alias("last"),
    ).first()
    assert (stats.distinct, stats.shards, stats.streams) == (1000, 3, 1)
    assert before - 1 <= stats.first.timestamp() <= stats.last.timestamp() <= after + 1

    # More posts, some before and some after shard 0 splits: the next run reads those only,
    # the closed shard to its end and its children after it.
    put_posts(kinesis, stream, 1000, 200)
    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126))
    wait_until_active(kinesis, [stream], timeout=30)
    time.sleep(1.1)  # kinesalite's new shards start a second ahead of the clock
    put_posts(kinesis, stream, 1200, 300)
    assert sum(run_available_now(spark, kinesalite.endpoint_url, stream, tmp_path, initialPosition="earliest")) == 500
    out = read_out(spark, tmp_path)
    indexes = [
        r.i
        for r in out.select(F.get_json_object(F.col("data").cast("string"), "$.index").cast("int").alias("i")).collect()
    ]
    assert sorted(indexes) == list(range(1500))
    offset = last_offset(tmp_path)
    assert offset["shardId-000000000000"] == SHARD_END
    assert {"shardId-000000000003", "shardId-000000000004"} <= set(offset)

    # Nothing new: a run reads nothing.
    assert run_available_now(spark, kinesalite.endpoint_url, stream, tmp_path, initialPosition="earliest") == []


def test_an_uncommitted_batch_is_read_again_between_its_offsets(
    kinesis_spark, kinesalite, kinesis, new_stream, tmp_path
):
    spark = kinesis_spark
    stream = new_stream(2)
    run = lambda: run_available_now(spark, kinesalite.endpoint_url, stream, tmp_path, initialPosition="earliest")
    put_posts(kinesis, stream, 0, 200)
    assert run() == [200]
    put_posts(kinesis, stream, 200, 100)
    assert run() == [100]
    batch_1 = sorted(tuple(r) for r in read_out(spark, tmp_path).where("batch = 1").drop("batch").collect())

    # The run stopped after writing batch 1 but before committing it (a crash); more arrived since.
    commits = tmp_path / "checkpoint" / "commits"
    (commits / "1").unlink()
    (commits / ".1.crc").unlink(missing_ok=True)
    put_posts(kinesis, stream, 300, 50)
    assert run() == [100, 50]  # batch 1 again, from its logged offsets, then the new records
    out = read_out(spark, tmp_path)
    assert sorted(tuple(r) for r in out.where("batch = 1").drop("batch").collect()) == batch_1
    assert out.count() == out.select("shardId", "sequenceNumber").distinct().count() == 350


def test_latest_reads_only_what_arrives_after_the_query_starts(
    kinesis_spark, kinesalite, kinesis, new_stream, tmp_path
):
    spark = kinesis_spark
    stream = new_stream(2)
    put_posts(kinesis, stream, 0, 100)
    run = lambda: run_available_now(spark, kinesalite.endpoint_url, stream, tmp_path, initialPosition="latest")
    assert run() == []
    put_posts(kinesis, stream, 100, 40)
    assert run() == [40]
    indexes = read_out(spark, tmp_path).select(F.get_json_object(F.col("data").cast("string"), "$.index").cast("int"))
    assert sorted(r[0] for r in indexes.collect()) == list(range(100, 140))
