"""A sensor-triggered refresh and `pintrest run` append to df_pin at the same moment, round after
round (each holding its commit until the other has read the table); every run succeeds and the
table holds every landed record once."""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pintrest_assets.bucket import LocalBucket
from pintrest_assets_tests.lake.concurrent_child import ANSWER

pytestmark = pytest.mark.slow

ROUNDS = 5
USER_ID = "u"


class Writer:
    """One entry point in a process of its own, refreshing when told to."""

    def __init__(self, mode: str, env: dict, log: Path):
        self.mode = mode
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pintrest_assets_tests.lake.concurrent_child", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
            start_new_session=True,
        )

    def answer(self) -> dict:
        # The child answers each request, or dies and closes stdout. Other lines are what the
        # entry point prints (`pintrest run`'s stage summary).
        for line in self.process.stdout:
            if line.startswith(ANSWER):
                return json.loads(line.removeprefix(ANSWER))
        pytest.fail(f"the {self.mode} writer exited ({self.process.wait()}); see {self.log.name}")

    def go(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.log.close()


def test_a_sensor_refresh_and_pintrest_run_at_the_same_moment_both_succeed(tmp_path, bucket_land):
    home = tmp_path / "home"
    bucket = LocalBucket(home / "bucket")
    (home / "bucket").mkdir(parents=True)
    env = {
        **os.environ,
        "PINTREST_HOME": str(home),
        "PINTREST_USER_ID": USER_ID,
        "PINTREST_SPARK_MASTER": "local[1]",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PINTREST_TEST_MEET_DIR": str(tmp_path / "meet"),
    }
    (tmp_path / "meet").mkdir()
    env.pop("DAGSTER_HOME", None)
    topic = f"{USER_ID}.pin"
    landed = 0

    def land(count: int) -> None:
        nonlocal landed
        for offset in range(landed, landed + count):
            bucket_land(bucket, topic, offset, records=1, partition=offset % 2)
        landed += count

    land(40)  # the table is created in the first round, by one writer or the other
    writers = [Writer(mode, env, tmp_path / f"{mode}.log") for mode in ("sensor", "run")]
    answers = []
    try:
        for writer in writers:
            assert writer.answer() == {"ready": True}
        for round_ in range(ROUNDS):
            if round_:
                land(30)
            for writer in writers:
                writer.go()
            done = {writer.mode: writer.answer() for writer in writers}
            failed = {mode: a["error"] for mode, a in done.items() if not a["ok"]}
            assert not failed, f"round {round_}: {failed}"
            answers.append(done)
    finally:
        for writer in writers:
            writer.stop()

    indices = collections.Counter(DeltaTable(str(home / "warehouse" / "df_pin")).to_pandas()["index"])
    assert indices == collections.Counter(range(landed))  # every landed record, once
    # Each round the two writers read disjoint parts of what landed.
    for round_, done in enumerate(answers):
        assert sum(a["read"] for a in done.values()) == (40 if round_ == 0 else 30)
    # The writers met every round (both read the same version): one of them started again.
    retried = [sum(a["attempts"] - 1 for a in done.values()) for done in answers]
    assert all(retried), f"rounds whose writers never met: {answers}"
