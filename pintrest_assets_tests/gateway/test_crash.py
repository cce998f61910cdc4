"""A gateway killed with SIGKILL under load loses no acknowledged record and lands none twice."""

import collections
import itertools
import threading
import time

import requests

from pintrest_assets.bucket import LocalBucket
from pintrest_assets_tests.gateway.helpers import landed_objects, produce

TOPICS = ("crash.pin", "crash.geo", "crash.user")
BATCH = 97  # not a multiple of the flush size: kills leave partial files behind


def _load(url: str, topic: str, worker: int, acknowledged: set, sent: set, lock: threading.Lock, stop: threading.Event):
    """Send batches of uniquely identified records until the gateway dies or ``stop`` is set."""
    session = requests.Session()
    for batch in itertools.count():
        if stop.is_set():
            return
        ids = [f"{topic}/{worker}/{batch}/{i}" for i in range(BATCH)]
        with lock:
            sent.update(ids)
        try:
            response = produce(url, topic, [{"id": id_, "payload": "x" * 200} for id_ in ids], session=session)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            return  # killed mid-request: these records are not acknowledged
        assert response.status_code == 200, response.text
        offsets = response.json()["offsets"]
        assert all(o["error_code"] is None for o in offsets)
        with lock:
            acknowledged.update(ids)


def _run_under_load(gateway, round_: int, acknowledged: set, sent: set, kill_after: int) -> None:
    lock, stop = threading.Lock(), threading.Event()
    errors: list[BaseException] = []  # what went wrong in a load thread, raised again here

    def load(*args) -> None:
        try:
            _load(*args)
        except BaseException as exc:  # noqa: BLE001 - raised again by the test
            errors.append(exc)

    threads = [
        threading.Thread(
            target=load, args=(gateway.url, topic, f"{round_}.{worker}", acknowledged, sent, lock, stop), daemon=True
        )
        for topic in TOPICS
        for worker in range(2)
    ]
    for thread in threads:
        thread.start()
    before = len(acknowledged)
    deadline = time.monotonic() + 20
    while len(acknowledged) - before < kill_after and time.monotonic() < deadline:
        time.sleep(0.005)
    gateway.proc.kill()  # SIGKILL, with requests in flight
    gateway.proc.wait()
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    assert len(acknowledged) - before >= kill_after, "the load never got going"


def test_sigkill_under_load_then_restart_lands_every_acknowledged_record_once(gateway_process, tmp_path):
    home = tmp_path / "home"
    acknowledged: set[str] = set()
    sent: set[str] = set()
    args = ("--flush-size", "50", "--rotate-interval-ms", "150")

    for round_, kill_after in enumerate((3_000, 1_500)):  # killed twice: the second restart recovers a recovery
        _run_under_load(gateway_process(*args, home=home), round_, acknowledged, sent, kill_after)

    # The last start keeps partial files open until shutdown, so its status shows what the kill left.
    gateway = gateway_process("--flush-size", "50", "--rotate-interval-ms", "60000", home=home)
    status = requests.get(f"{gateway.url}/status").json()["topics"]
    assert sum(t["next_offset"] - t["landed_offset"] for t in status.values()) > 0, status
    assert produce(gateway.url, "crash.pin", [{"id": "after"}]).status_code == 200
    acknowledged.add("after")
    sent.add("after")
    returncode, out, err = gateway.stop()
    assert returncode == 0, err
    assert "every acknowledged record has landed" in out

    bucket = LocalBucket(home / "bucket")
    landed = collections.Counter()
    for topic in TOPICS:
        objects = landed_objects(bucket, topic)
        # Object keys are unique and contiguous in offsets: each starts where the previous ended.
        expected_start = 0
        for start, values in objects:
            assert start == expected_start, f"{topic}: object at {start}, expected {expected_start}"
            expected_start += len(values)
            landed.update(v["id"] for v in values)
    duplicates = [id_ for id_, n in landed.items() if n > 1]
    assert not duplicates, f"{len(duplicates)} records landed twice, e.g. {duplicates[:3]}"
    missing = acknowledged - landed.keys()
    assert not missing, f"{len(missing)} acknowledged records never landed, e.g. {sorted(missing)[:3]}"
    assert landed.keys() <= sent  # and nothing that was not sent
    assert len(acknowledged) > 4_500
