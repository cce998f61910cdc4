"""A stream table's query on a real kinesalite: every record once, cleaned as the batch path
cleans it, bad records quarantined, a second run reading only what is new, a replayed batch
skipped, and a table and checkpoint that do not belong together refused."""

from __future__ import annotations

import shutil

import pytest
from pyspark.sql import functions as F

from pintrest_assets.kinesis import proxy_contract as kinesis_proxy
from pintrest_assets.lake.parsing import good_rows, parse_records
from pintrest_assets.lake.schemas import SCHEMAS
from pintrest_assets.stream.query import run_available_now, source_options
from pintrest_assets.stream.tables import EMPTY_RECORD, StreamStateMismatch, StreamTable
from pintrest_assets.topics import TOPICS, TOPICS_BY_NAME
from pintrest_assets.transform.cleaning import CLEANED_COLUMNS, CLEANERS
from pintrest_assets_tests.kinesis.helpers import put, put_raw
from pintrest_assets_tests.stream.helpers import SHARDS, draw

PIN = TOPICS_BY_NAME["pin"]

pytestmark = pytest.mark.kinesis  # kinesalite: Node.js and npm


def table_of(tmp_path, spec, user_id) -> StreamTable:
    return StreamTable.for_user(tmp_path / "warehouse", spec, user_id)


def run(spark, kinesalite, table: StreamTable, user_id: str, **options):
    opts = source_options(table.spec.kinesis_stream(user_id), kinesalite.endpoint_url, "us-east-1", **options)
    return run_available_now(spark, table, opts, timeout=300)


def batch_path_cleaning(spark, spec, values: list):
    """The same records read and cleaned by the batch path: lines parsed with the topic's schema,
    the good ones cleaned by the topic's cleaning function."""
    lines = spark.createDataFrame(
        [(f"k{i}", kinesis_proxy.record_bytes(v).decode()) for i, v in enumerate(values)], "key string, line string"
    )
    return CLEANERS[spec.name](good_rows(parse_records(lines, SCHEMAS[spec.name], spec.index_column)))


def rows(df) -> list[str]:
    return sorted(repr(tuple(r)) for r in df.collect())


@pytest.mark.parametrize("spec", TOPICS, ids=[s.name for s in TOPICS])
def test_every_record_becomes_a_row_cleaned_as_the_batch_path_cleans_it(
    spark, kinesalite, kinesis, user_id, posts_database, tmp_path, spec
):
    values = [post[spec.name] for post in draw(posts_database, 150)]
    put(kinesis, spec.kinesis_stream(user_id), values)
    table = table_of(tmp_path, spec, user_id)

    done = run(spark, kinesalite, table, user_id)
    assert (done.records, done.rows, done.quarantined, done.micro_batches) == (150, 150, 0, 1)
    stored = table.read(spark)
    assert stored.columns == list(CLEANED_COLUMNS[spec.name])
    assert rows(stored) == rows(batch_path_cleaning(spark, spec, values))
    # A stream table holds records: a post drawn twice is two rows.
    assert stored.select("ind").distinct().count() < stored.count() == 150
    assert table.path.name == f"{user_id}_{spec.name}_table"


def test_bad_records_are_quarantined_and_a_second_run_reads_only_new_records(
    spark, kinesalite, kinesis, user_id, posts_database, tmp_path
):
    stream = PIN.kinesis_stream(user_id)
    values = [post["pin"] for post in draw(posts_database, 300, seed_value=1)]
    acknowledged = put(kinesis, stream, values[:200])
    for data in (b"not json", b'{"title": "a post without its index"}', b'{"index": "twelve"}', b""):
        put_raw(kinesis, stream, data)
    table = table_of(tmp_path, PIN, user_id)

    # Small micro-batches: several of them, over both shards.
    first = run(spark, kinesalite, table, user_id, max_records_per_batch=60)
    assert (first.records, first.rows, first.quarantined) == (204, 200, 4)
    assert first.micro_batches >= 4
    reasons = sorted(r.reason for r in table.read_quarantine(spark).collect())
    assert reasons == sorted(["not valid JSON", "no index", "does not match the schema", EMPTY_RECORD])
    sources = [r.source_key for r in table.read_quarantine(spark).collect()]
    assert all(key.startswith("shardId-") and "/" in key for key in sources)
    # The positions are the last sequence number read from each shard.
    assert len(first.after.positions) == SHARDS
    for shard, position in first.after.positions.items():
        assert int(position) >= max(int(seq) for s, seq in acknowledged if s == shard)

    put(kinesis, stream, values[200:])
    second = run(spark, kinesalite, table, user_id)
    assert (second.records, second.rows, second.quarantined, second.micro_batches) == (100, 100, 0, 1)
    third = run(spark, kinesalite, table, user_id)
    assert (third.records, third.micro_batches) == (0, 0)

    assert table.read(spark).count() == 300
    state = table.state()
    assert (state.records_read, state.rows, state.quarantined) == (304, 300, 4)
    assert rows(table.read(spark)) == rows(batch_path_cleaning(spark, PIN, values))


def test_a_batch_replayed_after_its_commit_is_skipped(spark, kinesalite, kinesis, user_id, posts_database, tmp_path):
    stream = PIN.kinesis_stream(user_id)
    values = [post["pin"] for post in draw(posts_database, 60, seed_value=2)]
    put(kinesis, stream, values[:30])
    table = table_of(tmp_path, PIN, user_id)
    run(spark, kinesalite, table, user_id)
    put(kinesis, stream, values[30:50])
    assert run(spark, kinesalite, table, user_id).rows == 20  # micro-batch 1

    # The consumer died after the Delta commit of batch 1, before the checkpoint marked it done.
    commits = table.checkpoint / "commits"
    (commits / "1").unlink()
    (commits / ".1.crc").unlink(missing_ok=True)
    put(kinesis, stream, values[50:])
    again = run(spark, kinesalite, table, user_id)
    assert [(b.batch_id, b.replayed) for b in again.batches] == [(1, True), (2, False)]
    assert (again.records, again.rows) == (10, 10)
    assert table.read(spark).count() == 60


def test_a_table_and_a_checkpoint_that_do_not_belong_together_are_refused(
    spark, kinesalite, kinesis, user_id, posts_database, tmp_path
):
    stream = PIN.kinesis_stream(user_id)
    put(kinesis, stream, [post["pin"] for post in draw(posts_database, 10, seed_value=3)])
    table = table_of(tmp_path, PIN, user_id)
    run(spark, kinesalite, table, user_id)

    saved = tmp_path / "checkpoint"
    shutil.copytree(table.checkpoint, saved)
    shutil.rmtree(table.checkpoint)
    with pytest.raises(StreamStateMismatch, match="would read the stream again from its trim horizon"):
        run(spark, kinesalite, table, user_id)

    shutil.copytree(saved, table.checkpoint)
    shutil.rmtree(table.path)
    with pytest.raises(StreamStateMismatch, match="Delete the checkpoint too"):
        run(spark, kinesalite, table, user_id)

    # Deleting the checkpoint too rebuilds the table from the stream: every record once.
    shutil.rmtree(table.checkpoint)
    shutil.rmtree(table.quarantine_path, ignore_errors=True)
    assert run(spark, kinesalite, table, user_id).rows == 10
    assert table.read(spark).agg(F.count("*")).first()[0] == 10
