"""The consumer SIGKILLed under load (records still arriving, micro-batches in flight), then
restarted: every record put is in the stream table exactly once, none lost, none doubled."""

from __future__ import annotations

import collections
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
from pintrest_assets_tests.stream.conftest import put

pytestmark = [pytest.mark.slow, pytest.mark.kinesis]  # kinesalite: Node.js and npm

PIN = TOPICS_BY_NAME["pin"]
BEFORE, DURING = 6000, 3000  # records put before the consumer starts, and while it runs
MARK_TIMEOUT = 300  # the child starts a JVM on a shared two-core machine


def posts(first: int, count: int) -> list[dict]:
    return [{"index": i, "title": f"post {i}", "follower_count": f"{i % 90}k"} for i in range(first, first + count)]


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
    producing = threading.Event()
    errors = []

    def produce() -> None:
        try:
            for first in range(BEFORE, BEFORE + DURING, 250):
                put(kinesis, stream, posts(first, 250))
                time.sleep(0.2)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            producing.set()

    marker = tmp_path / "marker"
    process = consumer(kinesalite, user_id, tmp_path, marker, moment)
    producer = threading.Thread(target=produce)
    producer.start()
    try:
        deadline = time.monotonic() + MARK_TIMEOUT
        while not marker.exists():
            assert process.poll() is None, (tmp_path / f"{moment}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the consumer did not commit its micro-batches in time"
            time.sleep(0.05)
        if moment == "mid-run":
            time.sleep(random.uniform(0.0, 1.5))  # somewhere in the next micro-batch
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
