"""Writers committing to one table at once: optimistic concurrency with a bounded retry.

Two appends read from the same state both commit (the loser starts again from the new state and
reads only what the winner did not), every record once; an overwrite meeting a concurrent commit
commits again over the newer version; a writer that keeps losing fails after its attempts with a
clear message and nothing committed.
"""

import collections
import threading
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T

from pintrest_assets.lake import delta as lake_delta
from pintrest_assets.lake.warehouse import (
    ConcurrentCommitError,
    TableAppend,
    TableState,
    WarehouseIOManager,
)

SCHEMA = T.StructType([T.StructField("ind", T.LongType()), T.StructField("key", T.StringType())])
PREFIX = "p/"


def _io_manager(tmp_path, spark_resource, **config) -> WarehouseIOManager:
    return WarehouseIOManager(
        base_dir=str(tmp_path / "warehouse"), spark=spark_resource, retry_wait_seconds=0.05, **config
    )


def _keys(count: int) -> list[str]:
    return [f"{PREFIX}k{i:03d}" for i in range(count)]


def _batch_after(session, state: TableState, landed: list[str]) -> TableAppend:
    """The objects of ``landed`` after the state's cursor, one record each, as a DataFrame asset reads them."""
    after = state.cursor.get(PREFIX, "")
    new = [k for k in landed if k > after]
    rows = session.createDataFrame([(int(k[-3:]), k) for k in new], SCHEMA) if new else None
    return TableAppend(
        base=state,
        schema=SCHEMA,
        rows=rows,
        row_count=len(new),
        quarantine=None,
        quarantined=0,
        objects=len(new),
        cursor={PREFIX: max([after, *new])} if new else dict(state.cursor),
    )


def _indices(io_manager) -> collections.Counter:
    return collections.Counter(DeltaTable(str(io_manager.table("places").path)).to_pandas()["ind"])


@pytest.mark.parametrize("first_append", [False, True], ids=["new-table", "existing-table"])
def test_two_appends_from_one_state_both_succeed_every_record_once(tmp_path, spark_resource, monkeypatch, first_append):
    io_manager = _io_manager(tmp_path, spark_resource)
    session = spark_resource.spark_session
    if first_append:
        committed = io_manager.append_with_retry("places", lambda s: _batch_after(session, s, _keys(3)))
        assert committed.attempts == 1
    base = io_manager.table("places").state()

    # Both writers have read the same state and written their files before either commits: the
    # commit of each waits at a barrier for the other's, then both go.
    barrier = threading.Barrier(2, timeout=120)
    commit_files = lake_delta.commit_files
    first_commit = threading.local()

    def commit_together(path, delta, adds, schema, mode, properties):
        if properties is not None and not getattr(first_commit, "done", False):  # an append's commit
            first_commit.done = True
            barrier.wait()
        return commit_files(path, delta, adds, schema, mode, properties)

    monkeypatch.setattr(lake_delta, "commit_files", commit_together)
    # The sensor's refresh saw 8 objects landed, `pintrest run` a moment later 10.
    landed = {"sensor": _keys(8), "run": _keys(10)}
    states, results, errors = collections.defaultdict(list), {}, []

    def writer(name: str) -> None:
        def build(state: TableState) -> TableAppend:
            states[name].append(state)
            return _batch_after(session, state, landed[name])

        try:
            results[name] = io_manager.append_with_retry("places", build)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append((name, exc))

    threads = [threading.Thread(target=writer, args=(name,)) for name in landed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert all(states[name][0] == base for name in landed)  # both started from one state
    attempts = sorted(r.attempts for r in results.values())
    assert attempts == [1, 2]  # the loser started again once, from the winner's state
    [loser] = [name for name in landed if results[name].attempts == 2]
    [winner] = [name for name in landed if name != loser]
    assert states[loser][1].cursor == results[winner].batch.cursor
    assert _indices(io_manager) == collections.Counter(range(10))
    state = io_manager.table("places").state()
    assert state.cursor == {PREFIX: _keys(10)[-1]} and state.objects == state.rows == 10
    # The loser's first files stay in the directory, listed by no commit: vacuum's to delete.
    path = io_manager.table("places").path
    files = {p.resolve().as_uri() for p in path.glob("*/*.parquet")}
    listed = {Path(uri.removeprefix("file://")).resolve().as_uri() for uri in DeltaTable(str(path)).file_uris()}
    assert listed < files


def test_an_append_that_keeps_losing_fails_after_its_attempts(tmp_path, spark_resource, monkeypatch):
    io_manager = _io_manager(tmp_path, spark_resource, commit_attempts=3)
    session = spark_resource.spark_session
    io_manager.append_with_retry("places", lambda s: _batch_after(session, s, _keys(2)))
    landed = [2]
    calls = []

    def build(state: TableState) -> TableAppend:
        # Each attempt, one more object lands, and another writer commits it right after this
        # one read the state.
        calls.append(state.appends)
        landed[0] += 1
        batch = _batch_after(session, state, _keys(landed[0]))
        other = _batch_after(session, state, _keys(landed[0]))
        io_manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("places")), other)
        return batch

    with pytest.raises(
        ConcurrentCommitError, match=r"places: other runs committed to the table during each of 3 attempts"
    ):
        io_manager.append_with_retry("places", build)
    assert calls == [1, 2, 3]
    # Only the other writer's appends are committed, each record once.
    assert _indices(io_manager) == collections.Counter(range(5))


def test_a_read_failing_after_another_writer_committed_starts_again(tmp_path, spark_resource):
    """The mount deletes the batch files a commit read: a writer still reading them (two runs of
    one DataFrame at once) fails to, and starts again from the table's new state, which no longer
    needs them."""
    io_manager = _io_manager(tmp_path, spark_resource)
    session = spark_resource.spark_session
    io_manager.append_with_retry("places", lambda s: _batch_after(session, s, _keys(2)))
    calls = []

    def build(state: TableState) -> TableAppend:
        calls.append(state.appends)
        if len(calls) == 1:
            other = _batch_after(session, state, _keys(5))
            io_manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("places")), other)
            raise FileNotFoundError("batch-00000001.parquet, released after the other writer's commit")
        return _batch_after(session, state, _keys(6))

    committed = io_manager.append_with_retry("places", build)

    assert committed.attempts == 2 and calls == [1, 2]
    assert _indices(io_manager) == collections.Counter(range(6))


def test_a_read_failing_with_no_other_commit_is_raised(tmp_path, spark_resource):
    io_manager = _io_manager(tmp_path, spark_resource)

    def build(state: TableState) -> TableAppend:
        raise FileNotFoundError("gone")

    with pytest.raises(FileNotFoundError, match="gone"):
        io_manager.append_with_retry("places", build)


def test_an_overwrite_meeting_a_concurrent_commit_commits_over_the_newer_version(tmp_path, spark_resource, monkeypatch):
    io_manager = _io_manager(tmp_path, spark_resource)
    session = spark_resource.spark_session

    def context():
        return dg.build_output_context(asset_key=dg.AssetKey("answer"))

    io_manager.handle_output(context(), session.createDataFrame([(1, "old")], SCHEMA))

    commit_files = lake_delta.commit_files
    raced = []

    def other_commits_first(path, delta, adds, schema, mode, properties):
        if not raced:
            raced.append(True)
            io_manager.handle_output(context(), session.createDataFrame([(2, "other")], SCHEMA))
        return commit_files(path, delta, adds, schema, mode, properties)

    monkeypatch.setattr(lake_delta, "commit_files", other_commits_first)
    io_manager.handle_output(context(), session.createDataFrame([(3, "mine")], SCHEMA))
    table = DeltaTable(str(io_manager.table("answer").path))
    assert table.to_pandas()["key"].tolist() == ["mine"]
    assert table.version() == 2
