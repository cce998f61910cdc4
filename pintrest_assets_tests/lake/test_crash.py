"""A refresh killed with SIGKILL (Dagster and Spark together) leaves df_pin at its old version,
and the next refresh reads what the dead one did not commit: every record once."""

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

pytestmark = pytest.mark.slow

# Generous: the child starts a JVM on a shared two-core machine.
MARK_TIMEOUT = 240


def _kill_when_marked(process: subprocess.Popen, marker: Path, then=lambda: None) -> None:
    deadline = time.monotonic() + MARK_TIMEOUT
    try:
        while not marker.exists():
            if process.poll() is not None:
                pytest.fail(f"the refresh ended (exit code {process.returncode}) before it got there")
            if time.monotonic() > deadline:
                pytest.fail("the refresh did not get there in time")
            time.sleep(0.05)
        then()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the Python process and its Spark JVM
        process.wait()


def _refresh_in_child(lake, tmp_path: Path, mode: str) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / f"{mode}.marker"
    args = [str(lake.bucket.root), lake.s3_mount.mount_dir, lake.warehouse.base_dir, lake.s3_mount.user_id]
    with open(tmp_path / f"{mode}.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pintrest_assets_tests.lake.refresh_child", *args, str(marker), mode],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
        )
    return process, marker


def _land(lake, bucket_land, offsets) -> None:
    for offset in offsets:
        bucket_land(lake.bucket, lake.topic("pin"), offset)


def _indices(lake) -> collections.Counter:
    return collections.Counter(DeltaTable(str(lake.table("df_pin").path)).to_pandas()["index"])


@pytest.mark.parametrize("moment", ["during-write", "before-commit"])
def test_a_refresh_killed_leaves_the_old_version_and_the_next_reads_every_record_once(
    moment, spark_lake, bucket_land, tmp_path
):
    lake = spark_lake
    _land(lake, bucket_land, range(100))
    assert lake.refresh("pin").success
    before = DeltaTable(str(lake.table("df_pin").path))
    version, state = before.version(), lake.table("df_pin").state()

    _land(lake, bucket_land, range(100, 500))
    process, marker = _refresh_in_child(lake, tmp_path, moment)
    table_path = lake.table("df_pin").path

    def writing() -> bool:
        return any(table_path.glob("*/_temporary"))

    def until_spark_writes():
        deadline = time.monotonic() + 30
        while not writing() and time.monotonic() < deadline:
            time.sleep(0.02)

    _kill_when_marked(process, marker, then=until_spark_writes if moment == "during-write" else lambda: None)

    if moment == "during-write":
        assert writing(), "Spark's write had not begun, or had finished, at the kill"
    else:
        assert not writing() and len(list(table_path.glob("*/part-*.parquet"))) > len(before.file_uris())
    after = DeltaTable(str(table_path))
    assert after.version() == version
    assert lake.table("df_pin").state() == state
    assert _indices(lake) == collections.Counter(range(100))

    _land(lake, bucket_land, range(500, 520))
    metadata = lake.metadata(lake.refresh("pin"), "df_pin")
    assert (metadata["objects_read"], metadata["rows_read"], metadata["dagster/row_count"]) == (420, 420, 520)
    assert _indices(lake) == collections.Counter(range(520))  # each record once
