"""The consumer SIGKILLed under load (records still arriving, micro-batches in flight), then
restarted: every record put is in the stream table exactly once, none lost, none doubled. The
consumer is a refresh's availableNow query, or the streaming service (``pintrest stream``)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pintrest_assets.stream.tables import StreamTable
from pintrest_assets.topics import TOPICS_BY_NAME
from pintrest_assets_tests.kinesis.helpers import put

pytestmark = [pytest.mark.slow, pytest.mark.kinesis]  # kinesalite: Node.js and npm

PIN = TOPICS_BY_NAME["pin"]
BEFORE, DURING = 6000, 3000  # records put before the consumer starts, and while it runs
MARK_TIMEOUT = 300  # the child starts a JVM on a shared two-core machine
MARK_AFTER_BATCH = 2  # consumer_child marks once this micro-batch is committed
# Where in a micro-batch a kill lands: seeded, and printed by each test (shown when it fails).
KILL_DELAYS = random.Random(14)


def posts(first: int, count: int) -> list[dict]:
    return [{"index": i, "title": f"post {i}", "follower_count": f"{i % 90}k"} for i in range(first, first + count)]


def producing(kinesis, stream: str) -> tuple[threading.Thread, list[Exception]]:
    """A thread (not started) that puts the DURING records after the BEFORE ones, 250 every 0.2 s,
    and the list in which it leaves what failed (for the test to report)."""
    errors: list[Exception] = []

    def produce() -> None:
        try:
            for first in range(BEFORE, BEFORE + DURING, 250):
                put(kinesis, stream, posts(first, 250))
                time.sleep(0.2)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    return threading.Thread(target=produce), errors


def consumer(kinesalite, user_id: str, tmp_path: Path, marker: Path, mode: str) -> subprocess.Popen:
    with open(tmp_path / f"{mode}.log", "ab") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pintrest_assets_tests.stream.consumer_child",
                kinesalite.endpoint_url,
                user_id,
                str(tmp_path / "warehouse"),
                str(marker),
                mode,
                "500",
            ],
            stdout=subprocess.PIPE if mode == "finish" else log,
            stderr=log,
            start_new_session=True,  # its own group: the kill reaches Python and the Spark JVM together
            env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
        )


def finish(kinesalite, user_id: str, tmp_path: Path) -> dict:
    process = consumer(kinesalite, user_id, tmp_path, tmp_path / "unused", "finish")
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, (tmp_path / "finish.log").read_text()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


def indexes(table: StreamTable) -> collections.Counter:
    return collections.Counter(DeltaTable(str(table.path)).to_pandas(columns=["ind"])["ind"])


@pytest.mark.parametrize("moment", ["mid-run", "after-commit"])
def test_a_consumer_killed_under_load_loses_and_doubles_nothing(kinesalite, kinesis, user_id, tmp_path, moment):
    stream = PIN.kinesis_stream(user_id)
    put(kinesis, stream, posts(0, BEFORE))
    marker = tmp_path / "marker"
    process = consumer(kinesalite, user_id, tmp_path, marker, moment)
    producer, errors = producing(kinesis, stream)
    producer.start()
    try:
        deadline = time.monotonic() + MARK_TIMEOUT
        while not marker.exists():
            assert process.poll() is None, (tmp_path / f"{moment}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the consumer did not commit its micro-batches in time"
            time.sleep(0.05)
        if moment == "mid-run":
            delay = KILL_DELAYS.uniform(0.0, 1.5)  # somewhere in the next micro-batch
            print(f"killing the consumer {delay:.3f} s after micro-batch {MARK_AFTER_BATCH} committed")
            time.sleep(delay)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        producer.join()
    assert not errors, errors

    table = StreamTable.for_user(tmp_path / "warehouse", PIN, user_id)
    killed_at = table.state()
    assert 3 * 500 <= killed_at.records_read < BEFORE + DURING, killed_at
    assert set(indexes(table).values()) == {1}

    done = finish(kinesalite, user_id, tmp_path)
    if moment == "after-commit":
        # Batch 2 was in the table, not in the checkpoint: replayed and skipped.
        assert done["replayed"] == [2]
    assert done["records"] == BEFORE + DURING - killed_at.records_read
    found = indexes(table)
    assert sorted(found) == list(range(BEFORE + DURING)), "records lost"
    assert set(found.values()) == {1}, f"records doubled: {[i for i, n in found.items() if n > 1][:10]}"
    state = table.state()
    assert (state.records_read, state.rows, state.quarantined) == (BEFORE + DURING, BEFORE + DURING, 0)


def service(kinesalite, user_id: str, home: Path, log_name: str) -> subprocess.Popen:
    """``pintrest stream`` on ``home``, reading the session's kinesalite."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith("PINTREST_")},
        "PINTREST_HOME": str(home),
        "PINTREST_KINESIS_ENDPOINT_URL": kinesalite.endpoint_url,
        "PINTREST_USER_ID": user_id,
        "PINTREST_SPARK_MASTER": "local[2]",
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    with open(home / log_name, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pintrest_assets.cli", "stream", "--trigger-seconds", "0.5"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, as a server runs it (the Spark JVM has a session of its own)
            env=env,
        )


def test_the_service_killed_under_load_and_started_again_appends_every_record_once(
    kinesalite, kinesis, user_id, tmp_path
):
    import dagster as dg

    home = tmp_path / "home"
    home.mkdir()
    table = StreamTable.for_user(home / "warehouse", PIN, user_id)
    stream = PIN.kinesis_stream(user_id)
    put(kinesis, stream, posts(0, BEFORE))
    first = service(kinesalite, user_id, home, "first.log")
    producer, errors = producing(kinesis, stream)
    try:
        deadline = time.monotonic() + MARK_TIMEOUT
        while table.state().batch_id is None:
            assert first.poll() is None, (home / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the service committed nothing in time"
            time.sleep(0.05)
        producer.start()
        delay = KILL_DELAYS.uniform(0.5, 3.0)  # while records arrive and micro-batches follow each other
        print(f"killing the service {delay:.3f} s after its first commit")
        time.sleep(delay)
        children = descendants(first.pid)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    ended(children)  # the Spark JVM, in a session of its own, exits once its stdin from the service closes
    killed_at = table.state()
    assert set(indexes(table).values()) == {1}

    second = service(kinesalite, user_id, home, "second.log")
    try:
        producer.join()
        assert not errors, errors
        deadline = time.monotonic() + MARK_TIMEOUT
        while table.state().records_read < BEFORE + DURING:
            assert second.poll() is None, (home / "second.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"the restarted service read {table.state().records_read} records"
            time.sleep(0.2)
        time.sleep(1.0)  # a micro-batch more, if anything were left to double
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGINT)  # Ctrl-C: stops cleanly, its last reports recorded
        assert second.wait(timeout=120) == 0, (home / "second.log").read_text()[-3000:]

    found = indexes(table)
    assert sorted(found) == list(range(BEFORE + DURING)), "records lost"
    assert set(found.values()) == {1}, f"records doubled: {[i for i, n in found.items() if n > 1][:10]}"
    state = table.state()
    assert (state.records_read, state.rows, state.quarantined) == (BEFORE + DURING, BEFORE + DURING, 0)
    assert state.batch_id > killed_at.batch_id or killed_at.records_read == BEFORE + DURING
    # What Dagster shows: the restarted service's last materialisation has every row.
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        [latest] = instance.fetch_materializations(dg.AssetKey("pin_stream_table"), limit=1).records
        meta = latest.asset_materialization.metadata
        assert meta["dagster/row_count"].value == BEFORE + DURING
        assert meta["appended_by"].value == "stream service"
    assert "stream service stopped" in (home / "second.log").read_text()


def test_a_sigterm_to_the_services_process_group_stops_it_then_its_spark(kinesalite, kinesis, user_id, tmp_path):
    """How a server stops it: a systemd unit's default sends SIGTERM to every process of the
    unit, as GNU ``timeout`` does to its group. The service stops its queries, says what it
    committed and exits 0 with no traceback (its Spark JVM, in a session of its own, does not
    shut down under the queries), and the JVM and its Python workers end after it."""
    home = tmp_path / "home"
    home.mkdir()
    table = StreamTable.for_user(home / "warehouse", PIN, user_id)
    put(kinesis, PIN.kinesis_stream(user_id), posts(0, 500))
    process = service(kinesalite, user_id, home, "service.log")
    log = home / "service.log"
    try:
        deadline = time.monotonic() + MARK_TIMEOUT
        while table.state().records_read < 500:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the service committed nothing in time"
            time.sleep(0.1)
        children = descendants(process.pid)
        assert children, "the service's Spark JVM is not its child"
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log.read_text()
    assert "stream service stopped: " in text and "Traceback" not in text and "Exception" not in text, text[-3000:]
    ended(children)
    assert table.state().rows == 500


def descendants(pid: int) -> list[int]:
    """The processes under ``pid``, from the children lists of /proc."""
    found, pending = [], [pid]
    while pending:
        for task in Path(f"/proc/{pending.pop()}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found += children
                pending += children
    return found


def ended(pids: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while left := [pid for pid in pids if not gone(pid)]:
        assert time.monotonic() < deadline, f"still running after the service: {left}"
        time.sleep(0.2)


def gone(pid: int) -> bool:
    """Whether ``pid`` has ended (gone, or a zombie its parent has not reaped)."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True
