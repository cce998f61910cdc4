"""The source's reader on its own (no Spark): offsets, batches, replay, options, reshards."""

from __future__ import annotations

import json
import time
from typing import ClassVar

import pytest

from pintrest_assets.kinesis import spark_source
from pintrest_assets.kinesis.spark_source import (
    SHARD_END,
    STARTED_AT,
    TRIM_HORIZON,
    KinesisDataSource,
    KinesisOptions,
    KinesisStreamReader,
    read_summaries,
)
from pintrest_assets.kinesis.streams import create_stream, kinesis_client, wait_until_active
from pintrest_assets_tests.kinesis.helpers import put_posts

# Tests marked kinesis run kinesalite (Node.js and npm); the others need neither.


def reader(endpoint_url: str, stream: str, **options) -> KinesisStreamReader:
    """A reader as Spark makes it: options lower-cased."""
    given = {"streamName": stream, "endpointUrl": endpoint_url, "region": "us-east-1", **options}
    return KinesisDataSource({k.lower(): str(v) for k, v in given.items()}).simpleStreamReader(None)


def rows_of(batches) -> list[tuple]:
    """The source's Arrow record batches as rows: tuples in the columns' order."""
    return [tuple(row.values()) for batch in batches for row in batch.to_pylist()]


def shard_positions(offset: dict) -> dict:
    """An offset's shards and positions, without what the batch read (``@read:...``)."""
    return {k: v for k, v in offset.items() if not k.startswith("@")}


def indexes(rows) -> list[int]:
    return [json.loads(row[1])["index"] for row in rows]


def read_all(source: KinesisStreamReader, start: dict) -> tuple[list[tuple], dict, int]:
    """Read batch after batch until the offset stops moving: (rows, last offset, batches)."""
    rows, batches = [], 0
    while True:
        batch, end = source.read(start)
        batch = rows_of(batch)
        if end == start:
            assert not batch
            return rows, end, batches
        rows += batch
        batches += 1
        start = end


@pytest.mark.kinesis
def test_reads_every_shard_in_batches_and_resumes(kinesalite, kinesis, new_stream):
    stream = new_stream(3)
    put_posts(kinesis, stream, 0, 1000)
    source = reader(kinesalite.endpoint_url, stream, initialPosition="earliest", maxRecordsPerBatch=300)
    start = source.initialOffset()
    assert start == {f"shardId-00000000000{i}": TRIM_HORIZON for i in range(3)}

    rows, end, batches = read_all(source, start)
    assert sorted(indexes(rows)) == list(range(1000))
    assert batches >= 4  # at most 300 a batch
    assert {row[3] for row in rows} == set(start) and {row[2] for row in rows} == {stream}
    # The offset holds each shard's last sequence number: the largest read from it.
    for shard_id, last in shard_positions(end).items():
        assert int(last) == max(int(row[4]) for row in rows if row[3] == shard_id)

    put_posts(kinesis, stream, 1000, 50)
    more, _, _ = read_all(reader(kinesalite.endpoint_url, stream), end)  # a new reader, from the offset
    assert sorted(indexes(more)) == list(range(1000, 1050))


@pytest.mark.kinesis
def test_a_first_batch_with_nothing_to_read_says_so(kinesalite, kinesis, new_stream):
    # Spark runs a query's first batch whatever its end offset is: the offset says that batch
    # read nothing, so its writer skips the Spark job (which costs seconds in a cold JVM).
    stream = new_stream(2)
    source = reader(kinesalite.endpoint_url, stream, initialPosition="earliest")
    start = source.initialOffset()
    batches, end = source.read(start)
    assert rows_of(batches) == []
    assert shard_positions(end) == start and read_summaries(end) == {}
    # From then on, nothing new is the same offset: Spark runs no batch.
    batches, again = source.read(end)
    assert rows_of(batches) == [] and again == end
    put_posts(kinesis, stream, 0, 10)
    batches, after = source.read(end)
    assert sorted(indexes(rows_of(batches))) == list(range(10))
    assert sum(shard["records"] for shard in read_summaries(after).values()) == 10


@pytest.mark.kinesis
def test_columns_are_those_of_databricks(kinesalite, kinesis, new_stream):
    stream = new_stream(1)
    before = time.time()
    kinesis.put_record(StreamName=stream, Data=b'{"index": 7}', PartitionKey="key-7")
    batches, end = reader(kinesalite.endpoint_url, stream, initialPosition="trim_horizon").read({})
    [row] = rows_of(batches)
    partition_key, data, stream_column, shard_id, sequence, arrived = row
    assert (partition_key, data, stream_column, shard_id) == ("key-7", b'{"index": 7}', stream, "shardId-000000000000")
    assert sequence.isdigit() and len(sequence) > 20
    assert before - 1 <= arrived.timestamp() <= time.time() + 1
    # The end offset says what the batch read from each shard: records, last one, newest arrival.
    assert read_summaries(end) == {
        "shardId-000000000000": {"records": 1, "last": sequence, "arrived": round(arrived.timestamp() * 1000) / 1000}
    }
    assert KinesisDataSource.name() == "pintrest_kinesis"
    assert KinesisDataSource({"streamname": stream}).schema() == (
        "partitionKey string, data binary, stream string, shardId string, "
        "sequenceNumber string, approximateArrivalTimestamp timestamp"
    )


@pytest.mark.kinesis
def test_replay_reads_exactly_the_batch_between_two_offsets(kinesalite, kinesis, new_stream):
    stream = new_stream(2)
    put_posts(kinesis, stream, 0, 200)
    source = reader(kinesalite.endpoint_url, stream, initialPosition="earliest")
    first, middle = source.read(source.initialOffset())
    first = rows_of(first)
    put_posts(kinesis, stream, 200, 100)
    second, end = source.read(middle)
    second = rows_of(second)
    put_posts(kinesis, stream, 300, 100)  # after the batch: not part of its replay

    fresh = reader(kinesalite.endpoint_url, stream, initialPosition="earliest")
    assert sorted(rows_of(fresh.readBetweenOffsets(fresh.initialOffset(), middle))) == sorted(first)
    assert sorted(rows_of(fresh.readBetweenOffsets(middle, end))) == sorted(second)
    assert list(fresh.readBetweenOffsets(end, end)) == []
    assert sorted(indexes(second)) == list(range(200, 300))


@pytest.mark.kinesis
def test_available_now_stops_at_what_had_arrived(kinesalite, kinesis, new_stream):
    stream = new_stream(2)
    put_posts(kinesis, stream, 0, 400)
    source = reader(kinesalite.endpoint_url, stream, initialPosition="earliest", maxRecordsPerBatch=100)
    source.prepareForTriggerAvailableNow()
    time.sleep(0.01)
    put_posts(kinesis, stream, 400, 100)  # arrives after the query started
    rows, end, _ = read_all(source, source.initialOffset())
    assert sorted(indexes(rows)) == list(range(400))
    rest, _, _ = read_all(reader(kinesalite.endpoint_url, stream), end)
    assert sorted(indexes(rest)) == list(range(400, 500))


@pytest.mark.kinesis
def test_latest_starts_at_the_tip(kinesalite, kinesis, new_stream):
    stream = new_stream(2)
    put_posts(kinesis, stream, 0, 100)
    source = reader(kinesalite.endpoint_url, stream)  # latest: Databricks' default
    start = source.initialOffset()
    started = start.pop(STARTED_AT)
    assert start == {shard: f"AT_TIMESTAMP:{started}" for shard in ("shardId-000000000000", "shardId-000000000001")}
    assert source.initialOffset()[STARTED_AT] == started  # asked again, the same answer
    nothing, unchanged = source.read(source.initialOffset())
    assert list(nothing) == []
    time.sleep(0.01)
    put_posts(kinesis, stream, 100, 30)
    rows, end, _ = read_all(source, unchanged)
    assert sorted(indexes(rows)) == list(range(100, 130))
    assert end[STARTED_AT] == started

    # Replaying the first batch after a restart: Spark passes the new reader's initial offset,
    # a later time; the records are those the query read from the time it started.
    put_posts(kinesis, stream, 130, 5)
    fresh = reader(kinesalite.endpoint_url, stream)
    time.sleep(0.01)
    later = fresh.initialOffset()
    assert later[STARTED_AT] > started
    assert sorted(rows_of(fresh.readBetweenOffsets(later, end))) == sorted(rows)


@pytest.mark.kinesis
def test_a_reshard_is_followed_parent_before_children(kinesalite, kinesis, new_stream):
    stream = new_stream(1)
    by_key = lambda i: f"key-{i % 7}"  # a few keys, each in every generation of shards
    put_posts(kinesis, stream, 0, 100, by_key)
    source = reader(kinesalite.endpoint_url, stream, initialPosition="earliest")
    rows, offset, _ = read_all(source, source.initialOffset())
    assert len(rows) == 100

    put_posts(kinesis, stream, 100, 50, by_key)  # unread when the shard closes
    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    wait_until_active(kinesis, [stream], timeout=30)
    time.sleep(1.1)  # kinesalite's new shards start one second ahead: their records would wait for the next run
    put_posts(kinesis, stream, 150, 100, by_key)
    kinesis.merge_shards(
        StreamName=stream, ShardToMerge="shardId-000000000001", AdjacentShardToMerge="shardId-000000000002"
    )
    wait_until_active(kinesis, [stream], timeout=30)
    time.sleep(1.1)
    put_posts(kinesis, stream, 250, 100, by_key)

    more, end, _ = read_all(reader(kinesalite.endpoint_url, stream, maxRecordsPerBatch=20), offset)
    assert sorted(indexes(more)) == list(range(100, 350))
    assert end["shardId-000000000000"] == end["shardId-000000000001"] == end["shardId-000000000002"] == SHARD_END
    assert end["shardId-000000000003"].isdigit()
    # Per key, the records come in the order they were put, across the three generations of shards.
    for key in {by_key(i) for i in range(7)}:
        of_key = [i for i in indexes(more) if by_key(i) == key]
        assert of_key == sorted(of_key)


def test_sequence_numbers_compare_as_numbers_on_moto(moto_endpoint_url):
    """moto numbers a shard's records 1, 2, ...: "9" < "10" only as numbers."""
    client = kinesis_client(moto_endpoint_url, "us-east-1", "testing", "testing")
    create_stream(client, "numbers", 2)
    wait_until_active(client, ["numbers"])
    put_posts(client, "numbers", 0, 8)
    source = reader(
        moto_endpoint_url,
        "numbers",
        initialPosition="earliest",
        maxRecordsPerFetch=4,
        awsAccessKey="testing",
        awsSecretKey="testing",
    )
    first, middle = source.read(source.initialOffset())
    first = rows_of(first)
    put_posts(client, "numbers", 8, 30)
    second, end = source.read(middle)
    second = rows_of(second)
    assert sorted(indexes(first)) == list(range(8)) and sorted(indexes(second)) == list(range(8, 38))
    assert sorted(rows_of(source.readBetweenOffsets(middle, end))) == sorted(second)
    assert any(len(middle[shard]) < len(end[shard]) for shard in shard_positions(end))  # e.g. "5" -> "19"


def test_options_are_read_case_insensitively_and_checked():
    options = KinesisOptions({"STREAMNAME": "s", "InitialPosition": "TRIM_HORIZON", "maxrecordsperfetch": "7"})
    assert (options.stream_name, options.initial_position, options.max_records_per_fetch) == ("s", TRIM_HORIZON, 7)
    assert KinesisOptions({"streamname": "s"}).initial_position == "latest"
    with pytest.raises(ValueError, match="streamName"):
        KinesisOptions({})
    with pytest.raises(ValueError, match="initialPosition"):
        KinesisOptions({"streamname": "s", "initialposition": "at_timestamp"})
    with pytest.raises(ValueError, match="awsSecretKey"):
        KinesisOptions({"streamname": "s", "awsaccesskey": "AKIA"})
    with pytest.raises(ValueError, match="maxrecordsperfetch"):
        KinesisOptions({"streamname": "s", "maxrecordsperfetch": "20000"})


@pytest.mark.kinesis
def test_a_missing_stream_is_named(kinesalite):
    with pytest.raises(ValueError, match="'nowhere' does not exist"):
        reader(kinesalite.endpoint_url, "nowhere").initialOffset()


def test_register_chooses_the_python_of_the_workers_when_nothing_did(monkeypatch):
    import sys

    class Context:
        master = "local[2]"
        pythonExec = "python3"  # pyspark's default
        conf: ClassVar[dict] = {}

        def getConf(self):
            return self.conf

    class Session:
        sparkContext = Context()
        registered: ClassVar[list] = []
        dataSource = type("Registry", (), {"register": lambda self, cls: Session.registered.append(cls)})()

    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    spark_source.register(Session)
    assert Session.sparkContext.pythonExec == sys.executable and Session.registered == [KinesisDataSource]

    # The setting pyspark itself ignores in a session built in Python.
    Session.sparkContext.pythonExec = "python3"
    Context.conf = {"spark.pyspark.python": "/opt/venv/bin/python"}
    spark_source.register(Session)
    assert Session.sparkContext.pythonExec == "/opt/venv/bin/python"

    # The environment chose: left alone.
    Session.sparkContext.pythonExec = "python3"
    monkeypatch.setenv("PYSPARK_PYTHON", "/usr/bin/python3.11")
    spark_source.register(Session)
    assert Session.sparkContext.pythonExec == "python3"

    # A cluster that chose nothing: this interpreter's path may not exist on its workers.
    monkeypatch.delenv("PYSPARK_PYTHON")
    Context.conf, Context.master = {}, "spark://somewhere:7077"
    spark_source.register(Session)
    assert Session.sparkContext.pythonExec == "python3"
