"""The sink lands records as the S3 sink connector does, in a local directory and in S3 alike."""

import threading
import time

import pytest

from pintrest_assets_tests.gateway.conftest import landed_objects, produce, wait_until


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
    assert landed_objects(bucket, "u.user") == []  # not full: it waits for the rotation
    wait_until(lambda: landed_objects(bucket, "u.user"))
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
