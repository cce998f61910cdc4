"""The Delta layer shared by the warehouse and the stream tables: commits with a writer's app
transaction and state, the history walk back to a writer's latest commit, the quarantine table,
concurrent commits and their retry, maintenance. Files are written by pyarrow, so no Spark but
for the one test of Spark's own write."""

import json
import os
import uuid
from dataclasses import asdict

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from deltalake.transaction import AddAction
from pyspark.sql import types as T

from pintrest_assets.lake import delta as lake_delta
from pintrest_assets.lake.delta import ConcurrentCommitError, LakeTable, Writer

SCHEMA = T.StructType([T.StructField("ind", T.LongType()), T.StructField("key", T.StringType())])
BATCHES = Writer(app_id="test.batches", info_key="test.state", version_field="batch", unit="batch")
OTHER = Writer(app_id="test.other", info_key="test.other", version_field="n", unit="run")


def _files(directory, rows: list[tuple[int, str]], schema: pa.Schema | None = None) -> list[AddAction]:
    """One parquet file of ``rows`` in a new directory of the table, as ``write_files`` returns it."""
    schema = schema or pa.schema([("ind", pa.int64()), ("key", pa.string())])
    name = f"{uuid.uuid4().hex[:8]}/part-0.parquet"
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    pq.write_table(pa.table([pa.array(c, f.type) for c, f in zip(columns, schema)], schema=schema), path)
    stat = path.stat()
    return [
        AddAction(
            path=name,
            size=stat.st_size,
            partition_values={},
            modification_time=stat.st_mtime_ns // 1_000_000,
            data_change=True,
            stats=json.dumps({"numRecords": len(rows)}),
        )
    ]


def _quarantine_files(table: LakeTable, source_key: str) -> tuple[dict, ...]:
    schema = pa.schema([(c, pa.string()) for c in ("source_key", "line", "reason")])
    adds = _files(table.quarantine_path, [(source_key, "not json", "not valid JSON")], schema)
    return tuple(asdict(a) for a in adds)


def _keys(path) -> list[str]:
    return sorted(DeltaTable(str(path)).to_pandas()["key"])


def test_a_commit_carries_its_app_transaction_and_state_and_the_history_walk_finds_it(tmp_path):
    table = LakeTable(tmp_path, "places")
    assert BATCHES.latest_info(table.delta()) is None and BATCHES.committed(table.delta()) is None
    info = {"batch": 0, "rows": 1, "positions": {"shard-1": "49"}, "nested": {"x": [1, 2]}}
    version = lake_delta.commit(
        table, None, _files(table.path, [(1, "a")]), SCHEMA, writer=BATCHES, version=0, info=info
    )
    assert version == 0
    # Batch 0 is a batch: a version of 0 is committed, not "none yet".
    assert BATCHES.committed(table.delta()) == 0
    assert BATCHES.latest_info(table.delta()) == info
    assert OTHER.latest_info(table.delta()) is None

    # Forty commits of another writer later, the walk back through the history still finds it.
    for n in range(1, 41):
        lake_delta.commit(
            table, table.delta(), _files(table.path, [(n, f"k{n}")]), SCHEMA, writer=OTHER, version=n, info={"n": n}
        )
    assert table.delta().version() == 40
    assert BATCHES.latest_info(table.delta()) == info
    assert OTHER.latest_info(table.delta()) == {"n": 40}
    assert len(_keys(table.path)) == 41


def test_an_app_transaction_without_its_commit_in_the_history_is_an_error(tmp_path):
    table = LakeTable(tmp_path, "places")
    # The app transaction, but no state under the writer's key (a commit of another program).
    properties = BATCHES.properties(3)
    lake_delta.commit_files(table.path, None, _files(table.path, [(1, "a")]), SCHEMA, "append", properties)
    with pytest.raises(RuntimeError, match="no commit of batch 3 in the table's log"):
        BATCHES.latest_info(table.delta())


@pytest.mark.parametrize("rebase", [True, False], ids=["rebased", "not-rebased"])
def test_two_commits_of_one_writer_from_one_snapshot_commit_once(tmp_path, rebase):
    table = LakeTable(tmp_path, "places")
    lake_delta.create_empty(table.path, SCHEMA)
    snapshot = table.delta()
    lake_delta.commit(
        table, snapshot, _files(table.path, [(1, "first")]), SCHEMA, writer=BATCHES, version=1, info={"batch": 1}
    )
    with pytest.raises(ConcurrentCommitError, match="places: another writer committed to the table while batch 1"):
        lake_delta.commit(
            table,
            snapshot,
            _files(table.path, [(2, "replayed")]),
            SCHEMA,
            writer=BATCHES,
            version=1,
            info={"batch": 1},
            rebase=rebase,
        )
    assert _keys(table.path) == ["first"] and table.delta().version() == 1


def test_a_commit_meeting_another_writers_is_rebased_unless_told_not_to(tmp_path):
    table = LakeTable(tmp_path, "places")
    lake_delta.create_empty(table.path, SCHEMA)
    snapshot = table.delta()
    lake_delta.commit(table, table.delta(), _files(table.path, [(1, "other")]), SCHEMA, writer=OTHER, version=1)
    with pytest.raises(ConcurrentCommitError, match="nothing was committed, the query replays it"):
        lake_delta.commit(
            table,
            snapshot,
            _files(table.path, [(2, "mine")]),
            SCHEMA,
            writer=BATCHES,
            version=0,
            info={"batch": 0},
            rebase=False,
            then="the query replays it",
        )
    assert _keys(table.path) == ["other"]
    lake_delta.commit(
        table, snapshot, _files(table.path, [(2, "mine")]), SCHEMA, writer=BATCHES, version=0, info={"batch": 0}
    )
    assert _keys(table.path) == ["mine", "other"]
    assert BATCHES.latest_info(table.delta()) == {"batch": 0}


def test_a_table_created_by_another_writer_meanwhile_is_a_concurrent_commit(tmp_path):
    table = LakeTable(tmp_path, "places")
    lake_delta.create_empty(table.path, SCHEMA)
    lake_delta.create_empty(table.path, SCHEMA)  # created meanwhile: there all the same
    with pytest.raises(ConcurrentCommitError, match="while this append was written"):
        lake_delta.commit(table, None, _files(table.path, [(1, "a")]), SCHEMA)
    assert table.delta().version() == 0 and _keys(table.path) == []


def test_other_errors_of_a_commit_pass_through(tmp_path, monkeypatch):
    table = LakeTable(tmp_path, "places")
    lake_delta.create_empty(table.path, SCHEMA)

    def disk_full(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(lake_delta, "commit_files", disk_full)
    with pytest.raises(OSError, match="no space left"):
        lake_delta.commit(table, table.delta(), _files(table.path, [(1, "a")]), SCHEMA, writer=BATCHES, version=0)


def test_the_quarantine_is_committed_once_per_version_of_the_writer(tmp_path):
    table = LakeTable(tmp_path, "places")
    table.commit_quarantine(BATCHES, 0, ())  # nothing rejected: no quarantine table
    assert not DeltaTable.is_deltatable(str(table.quarantine_path))

    first = _quarantine_files(table, "shard/1")
    table.commit_quarantine(BATCHES, 0, first)
    table.commit_quarantine(BATCHES, 0, first)  # a writer that died before knowing: done already
    quarantine = DeltaTable(str(table.quarantine_path))
    assert quarantine.version() == 0 and BATCHES.committed(quarantine) == 0
    assert quarantine.to_pandas()["source_key"].tolist() == ["shard/1"]

    table.commit_quarantine(BATCHES, 1, _quarantine_files(table, "shard/2"))
    table.commit_quarantine(BATCHES, 0, first)  # older than what is committed
    quarantine = DeltaTable(str(table.quarantine_path))
    assert quarantine.version() == 1 and BATCHES.committed(quarantine) == 1
    assert sorted(quarantine.to_pandas()["source_key"]) == ["shard/1", "shard/2"]


def test_retry_on_conflict_attempts_again_then_gives_up(monkeypatch):
    monkeypatch.setattr(lake_delta.time, "sleep", lambda seconds: None)
    calls, logged = [], []

    def wins_at_third(n: int) -> str:
        calls.append(n)
        if n < 3:
            raise ConcurrentCommitError(f"lost {n}")
        return "committed"

    done = lake_delta.retry_on_conflict(
        wins_at_third, attempts=5, wait_seconds=0.01, gave_up=lambda n, exc: "never", log=logged.append
    )
    assert (done, calls) == ("committed", [1, 2, 3])
    assert logged == [
        "lost 1; attempt 2 of 5 starts from the new state",
        "lost 2; attempt 3 of 5 starts from the new state",
    ]

    def always_loses(n: int) -> str:
        raise ConcurrentCommitError(f"lost {n}")

    with pytest.raises(ConcurrentCommitError, match=r"^gave up after 2 \(lost 2\)$") as raised:
        lake_delta.retry_on_conflict(
            always_loses, attempts=2, wait_seconds=0.01, gave_up=lambda n, exc: f"gave up after {n} ({exc})"
        )
    assert str(raised.value.__cause__) == "lost 2"

    calls.clear()

    def fails(n: int) -> str:
        calls.append(n)
        raise ValueError("not a conflict")

    with pytest.raises(ValueError):
        lake_delta.retry_on_conflict(fails, attempts=5, wait_seconds=0.01, gave_up=lambda n, exc: "never")
    assert calls == [1]


def test_maintain_compacts_and_vacuums_the_table_and_its_quarantine(tmp_path):
    table = LakeTable(tmp_path, "places")
    for n in range(3):
        adds = _files(table.path, [(n, f"k{n}")])
        lake_delta.commit(table, table.delta(), adds, SCHEMA, writer=BATCHES, version=n, info={"batch": n})
        table.commit_quarantine(BATCHES, n, _quarantine_files(table, f"shard/{n}"))
    # A writer that died before its commit: files no commit lists.
    [stray] = _files(table.path, [(9, "never committed")])
    old = 1_000_000_000
    os.utime(table.path / stray.path, (old, old))

    done = lake_delta.maintain(table, retention_hours=1)
    assert done["compacted_files"] == 3 and done["quarantine_compacted_files"] == 3
    assert done["vacuumed_files"] >= 1
    assert not (table.path / stray.path).exists()
    assert _keys(table.path) == ["k0", "k1", "k2"] and len(DeltaTable(str(table.path)).file_uris()) == 1
    assert BATCHES.latest_info(table.delta()) == {"batch": 2}  # compaction keeps the app transaction
    assert lake_delta.maintain(LakeTable(tmp_path, "never_written"), retention_hours=1) == {}


def test_maintain_deletes_log_commits_older_than_the_retention_and_the_latest_checkpoint(tmp_path):
    table = LakeTable(tmp_path, "places")

    def append(n: int) -> None:
        adds = _files(table.path, [(n, f"k{n}")])
        lake_delta.commit(table, table.delta(), adds, SCHEMA, writer=BATCHES, version=n, info={"batch": n})

    for n in range(3):
        append(n)
    lake_delta.maintain(table, retention_hours=1)
    assert table.delta().metadata().configuration[lake_delta.LOG_RETENTION] == "interval 1 hours"
    table.delta().create_checkpoint()
    checkpoint = table.delta().version()
    append(3)
    log = table.path / "_delta_log"
    old = 1_000_000_000
    for commit in log.glob("*.json"):
        os.utime(commit, (old, old))  # all older than the retention, the latest too

    lake_delta.maintain(table, retention_hours=1)
    kept = sorted(int(p.name[:20]) for p in log.glob("*.json"))
    assert kept[0] == checkpoint  # nothing older than the checkpoint is kept; from it on, all
    assert kept == list(range(checkpoint, table.delta().version() + 1))
    assert _keys(table.path) == ["k0", "k1", "k2", "k3"]
    assert BATCHES.latest_info(table.delta()) == {"batch": 3}
    append(4)
    assert BATCHES.latest_info(table.delta()) == {"batch": 4}


def test_spark_writes_files_that_commit_and_read_back(tmp_path, spark_resource):
    spark = spark_resource.spark_session
    table = LakeTable(tmp_path, "places")
    df = spark.createDataFrame([(i, f"k{i}") for i in range(5)], SCHEMA).repartition(2)
    adds = lake_delta.write_files(df, table.path)
    assert lake_delta.row_count(adds) == 5
    assert not DeltaTable.is_deltatable(str(table.path))  # written, not committed: no table yet
    lake_delta.commit(table, None, adds, SCHEMA, writer=BATCHES, version=0, info={"batch": 0})
    assert sorted(r["ind"] for r in table.read(spark).collect()) == [0, 1, 2, 3, 4]
    assert table.read_quarantine(spark).count() == 0
    assert lake_delta.spark_schema(table.delta()) == SCHEMA


def test_added_since_lists_the_files_appends_added_and_passes_over_a_compaction_of_others(tmp_path):
    table = LakeTable(tmp_path, "places")
    lake_delta.commit(table, None, _files(table.path, [(1, "a")]), SCHEMA)
    lake_delta.commit(table, table.delta(), _files(table.path, [(2, "b")]), SCHEMA)
    lake_delta.maintain(table, retention_hours=1)  # the first two commits' files compacted into one
    new = _files(table.path, [(3, "c")]) + _files(table.path, [(4, "d")])
    lake_delta.commit(table, table.delta(), new[:1], SCHEMA)
    lake_delta.commit(table, table.delta(), new[1:], SCHEMA)
    delta = table.delta()
    assert lake_delta.added_since(delta, delta.version()) == []
    assert lake_delta.added_since(delta, 1) == [str(table.path / a.path) for a in new]
    # Before the compaction: the files added then are no longer in the table.
    assert lake_delta.added_since(delta, 0) is None
    assert lake_delta.added_since(delta, delta.version() + 1) is None


def test_added_since_is_none_after_rows_replaced_or_history_gone(tmp_path):
    table = LakeTable(tmp_path, "places")
    lake_delta.commit(table, None, _files(table.path, [(1, "a")]), SCHEMA)
    lake_delta.commit(table, table.delta(), _files(table.path, [(2, "b")]), SCHEMA, mode="overwrite")
    assert lake_delta.added_since(table.delta(), 0) is None
    lake_delta.commit(table, table.delta(), _files(table.path, [(3, "c")]), SCHEMA)
    table.delta().create_checkpoint()
    (table.path / "_delta_log" / f"{2:020d}.json").unlink()
    assert lake_delta.added_since(table.delta(), 1) is None
