"""The sink lands records as the S3 sink connector does, in a local directory and in S3 alike."""

import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pintrest_assets.emulation.landing import LandingWatcher
from pintrest_assets.kafka.sink_layout import object_key, parse_object_key
from pintrest_assets_tests.gateway.helpers import landed_objects, produce, wait_until


@pytest.fixture(params=["local", "s3"])
def any_bucket(request):
    return request.getfixturevalue("bucket" if request.param == "local" else "s3_bucket")


def test_objects_follow_the_connector_layout_and_hold_values_only(start_gateway, any_bucket):
    gateway = start_gateway(bucket=any_bucket, flush_size=100, rotate_interval_ms=60_000)
    values = [{"index": i, "title": "Café ☕", "tags": "a,b"} for i in range(250)]
    for start in range(0, 250, 50):
        assert produce(gateway.url, "0e95b18877fd.pin", values[start : start + 50]).status_code == 200

    def keys():
        return [info.key for info in any_bucket.list("topics/")]

    assert wait_until(lambda: len(keys()) == 2) and keys() == [
        "topics/0e95b18877fd.pin/partition=0/0e95b18877fd.pin+0+0000000000.json",
        "topics/0e95b18877fd.pin/partition=0/0e95b18877fd.pin+0+0000000100.json",
    ]
    first = any_bucket.get(keys()[0])
    assert first.startswith('{"index":0,"title":"Café ☕","tags":"a,b"}\n{"index":1,'.encode())
    assert first.endswith(b'{"index":99,"title":"Caf\xc3\xa9 \xe2\x98\x95","tags":"a,b"}\n')
    assert first.count(b"\n") == 100

    assert gateway.shutdown() == 0  # the partial third file lands at shutdown
    objects = landed_objects(any_bucket, "0e95b18877fd.pin")
    assert [(start, len(lines)) for start, lines in objects] == [(0, 100), (100, 100), (200, 50)]
    assert [line for _, lines in objects for line in lines] == values


def test_flush_size_one_lands_one_object_per_record_as_the_original(start_gateway, bucket):
    gateway = start_gateway(flush_size=1, rotate_interval_ms=60_000)
    produce(gateway.url, "u.geo", [{"ind": 1}, {"ind": 2}, {"ind": 3}])
    wait_until(lambda: len(landed_objects(bucket, "u.geo")) == 3)
    assert landed_objects(bucket, "u.geo") == [(0, [{"ind": 1}]), (1, [{"ind": 2}]), (2, [{"ind": 3}])]


def test_wall_clock_rotation_commits_a_partial_file(start_gateway, bucket):
    gateway = start_gateway(flush_size=100, rotate_interval_ms=1000)
    sent = time.monotonic()
    produce(gateway.url, "u.user", [1, 2, 3])
    # Not full: it waits for the rotation. Polled from the send on, so a file landed early would be
    # seen early; a slow machine only sees it later.
    wait_until(lambda: landed_objects(bucket, "u.user"), timeout=30)
    assert time.monotonic() - sent >= 0.9
    assert landed_objects(bucket, "u.user") == [(0, [1, 2, 3])]

    produce(gateway.url, "u.user", [4])  # the next file opens with its first record
    wait_until(lambda: len(landed_objects(bucket, "u.user")) == 2)
    assert landed_objects(bucket, "u.user") == [(0, [1, 2, 3]), (3, [4])]
    wait_until(lambda: gateway.status()["topics"]["u.user"]["pending"] == 0)  # the mark follows the upload


def test_a_failing_bucket_is_retried_and_reported_without_losing_records(start_gateway, bucket):
    class FlakyBucket:
        url = bucket.url
        failures = 2

        def put(self, key, data):
            if self.failures:
                self.failures -= 1
                raise ConnectionError("bucket unreachable")
            bucket.put(key, data)

        def get(self, key):
            return bucket.get(key)

        def list(self, prefix, start_after=None):
            return bucket.list(prefix, start_after)

    gateway = start_gateway(bucket=FlakyBucket(), flush_size=2, rotate_interval_ms=60_000)
    produce(gateway.url, "u.pin", [1, 2, 3, 4])
    assert wait_until(lambda: gateway.status()["topics"]["u.pin"]["last_error"]) == (
        "ConnectionError: bucket unreachable"
    )
    # The sink clears its error once the landing that succeeded returns, just after the mark moves.
    topic = wait_until(
        lambda: (t := gateway.status()["topics"]["u.pin"])["landed_offset"] == 4 and t["last_error"] is None and t
    )
    assert (topic["landed_offset"], topic["last_error"]) == (4, None)
    assert landed_objects(bucket, "u.pin") == [(0, [1, 2]), (2, [3, 4])]


def test_shutdown_reports_records_it_could_not_land_and_the_next_start_lands_them(start_gateway, bucket, tmp_path):
    class DownBucket:
        url = "s3://down"

        def list(self, prefix, start_after=None):
            return iter(())

        def put(self, key, data):
            raise ConnectionError("bucket unreachable")

    gateway = start_gateway(bucket=DownBucket(), state_dir=tmp_path / "state", rotate_interval_ms=60_000)
    produce(gateway.url, "u.pin", [1, 2, 3])
    assert gateway.shutdown(timeout=0.5) == 3

    class HeldBucket:
        """The bucket, its PUTs held until released: the next start redoes the partial file at once."""

        url = bucket.url
        released = threading.Event()

        def list(self, prefix, start_after=None):
            return bucket.list(prefix, start_after)

        def put(self, key, data):
            self.released.wait()
            bucket.put(key, data)

    held = HeldBucket()
    gateway = start_gateway(bucket=held, state_dir=tmp_path / "state", rotate_interval_ms=60_000)
    assert gateway.status()["topics"]["u.pin"] == {
        "next_offset": 3,
        "landed_offset": 0,
        "pending": 3,
        "objects_landed": 0,
        "last_error": None,
    }
    held.released.set()
    assert gateway.shutdown() == 0
    assert landed_objects(bucket, "u.pin") == [(0, [1, 2, 3])]


def test_a_topic_cannot_be_created_while_the_bucket_cannot_be_listed(start_gateway, bucket):
    class UnlistableBucket:
        url = bucket.url

        def list(self, prefix, start_after=None):
            raise ConnectionError("bucket unreachable")

    gateway = start_gateway(bucket=UnlistableBucket())
    response = produce(gateway.url, "u.pin", [1])
    assert response.status_code == 503
    assert response.json() == {"error_code": 50302, "message": "Cannot create topic u.pin: bucket unreachable"}


# -- landing order: the readers list a partition with StartAfter = the last key they saw ----------

SLOW = object_key("u.pin", 0, 0)  # the first file of the partition: the one that lands late, if any can


def _land_while_a_reader_lists(gateway, bucket, records: int) -> int:
    """Sends ``records`` records to u.pin while a reader lists the partition from the last key it
    saw, as the new-objects sensor and the landing watcher do; once all have landed, how many that
    reader has seen."""
    reader = LandingWatcher(bucket, "u.pin")
    done = threading.Event()

    def poll():
        while not done.is_set():
            reader.refresh()
            time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        assert produce(gateway.url, "u.pin", list(range(records))).status_code == 200
        wait_until(lambda: gateway.status()["topics"]["u.pin"]["landed_offset"] == records)
    finally:
        done.set()
        poller.join()
    return reader.landed(0, records - 1)


def _in_offset_order(keys: list[str]) -> bool:
    return keys == sorted(keys, key=lambda key: parse_object_key(key).start_offset)


def test_a_partition_lands_in_offset_order_however_long_a_put_takes(start_gateway, any_bucket):
    landed = []

    class SlowFirstPut:
        """The bucket with the first file's PUT slow: the later files are ready long before it lands."""

        url = any_bucket.url

        def put(self, key, data):
            if key == SLOW:
                time.sleep(0.3)
            any_bucket.put(key, data)
            landed.append(key)

        def get(self, key):
            return any_bucket.get(key)

        def list(self, prefix, start_after=None):
            return any_bucket.list(prefix, start_after)

    gateway = start_gateway(bucket=SlowFirstPut(), flush_size=1, rotate_interval_ms=60_000)
    assert _land_while_a_reader_lists(gateway, any_bucket, 20) == 20
    assert len(landed) == 20 and _in_offset_order(landed)


@pytest.mark.parametrize("slow_step", ["write", "rename"])
def test_a_local_bucket_shows_a_partition_s_files_in_offset_order(start_gateway, bucket, monkeypatch, slow_step):
    """A file of a local-directory bucket is written beside its key, then renamed to it: it is
    visible from the rename. Either step of the first file being slow must not let a later file
    show first."""
    root = str(bucket.root.resolve())
    visible = []
    mkstemp, replace = tempfile.mkstemp, os.replace

    def slow_mkstemp(*args, prefix=None, **kwargs):
        if slow_step == "write" and prefix == f".{Path(SLOW).name}.":
            time.sleep(0.3)
        return mkstemp(*args, prefix=prefix, **kwargs)

    def recorded_replace(src, dst, **kwargs):
        key = os.path.relpath(os.path.realpath(dst), root)
        if slow_step == "rename" and key == SLOW:
            time.sleep(0.3)
        replace(src, dst, **kwargs)
        if parse_object_key(key) is not None:
            visible.append(key)

    monkeypatch.setattr(tempfile, "mkstemp", slow_mkstemp)
    monkeypatch.setattr(os, "replace", recorded_replace)
    gateway = start_gateway(flush_size=1, rotate_interval_ms=60_000)
    assert _land_while_a_reader_lists(gateway, bucket, 20) == 20
    assert len(visible) == 20 and _in_offset_order(visible)
    assert landed_objects(bucket, "u.pin") == [(i, [i]) for i in range(20)]
    assert not [p for p in bucket.root.rglob(".*") if p.is_file()]  # nothing staged is left behind


def test_a_failed_write_in_a_local_bucket_shows_no_later_file_and_leaves_nothing_behind(
    start_gateway, bucket, monkeypatch
):
    root = str(bucket.root.resolve())
    first_seen = []
    mkstemp, replace = tempfile.mkstemp, os.replace
    failing = f".{Path(object_key('u.pin', 0, 3)).name}."

    def failing_once_mkstemp(*args, prefix=None, **kwargs):
        nonlocal failing
        if prefix == failing:
            failing = None
            time.sleep(0.1)  # the files after it are written by then
            raise OSError("disk full")
        return mkstemp(*args, prefix=prefix, **kwargs)

    def recorded_replace(src, dst, **kwargs):
        replace(src, dst, **kwargs)
        key = os.path.relpath(os.path.realpath(dst), root)
        if parse_object_key(key) is not None and key not in first_seen:
            first_seen.append(key)

    monkeypatch.setattr(tempfile, "mkstemp", failing_once_mkstemp)
    monkeypatch.setattr(os, "replace", recorded_replace)
    gateway = start_gateway(flush_size=1, rotate_interval_ms=60_000)
    assert _land_while_a_reader_lists(gateway, bucket, 20) == 20
    assert failing is None  # the write did fail, and the sink landed the files again from its mark
    assert len(first_seen) == 20 and _in_offset_order(first_seen)
    assert landed_objects(bucket, "u.pin") == [(i, [i]) for i in range(20)]
    assert not [p for p in bucket.root.rglob(".*") if p.is_file()]
