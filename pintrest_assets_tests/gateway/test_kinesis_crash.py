"""The local stack killed with SIGKILL under load: no record the client saw acknowledged is lost.

The gateway runs as a process of its own with its embedded kinesalite
(``kinesis_gateway_child``). Clients put uniquely identified records through the Kinesis-proxy
routes, by PutRecords, by PutRecord and through the project's client (which resends after
errors). The stack is killed twice under load, and started again on the same data each time:
first the gateway and kinesalite together, then the gateway alone, whose kinesalite is left
running and must be ended by the next start. Then every acknowledged record is in its stream,
under the shard and sequence number it was acknowledged with; a record is in it twice only if
the project's client sent its request again after an answer was lost.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from pintrest_assets.kinesis import proxy_contract as kinesis_proxy
from pintrest_assets.kinesis.local_server import end_orphan
from pintrest_assets.kinesis.streams import kinesis_client
from pintrest_assets.kinesis.proxy_client import KinesisProxyError, KinesisProxyResource
from pintrest_assets_tests.gateway.helpers import REPO, wait_until
from pintrest_assets_tests.helpers import read_stream
from pintrest_assets_tests.net import free_port

pytestmark = pytest.mark.kinesis  # kinesalite: Node.js and npm

USER_ID = "crash"
STREAMS = tuple(f"streaming-{USER_ID}-{name}" for name in ("pin", "geo", "user"))
BATCH = 97
SHARDS = 2


class LocalStack:
    """``kinesis_gateway_child`` as a subprocess: the gateway, and the kinesalite it starts."""

    def __init__(self, home: Path, kinesis_port: int):
        self.home = home
        env = dict(
            os.environ,
            PINTREST_HOME=str(home),
            PINTREST_USER_ID=USER_ID,
            PINTREST_KINESIS_LOCAL_PORT=str(kinesis_port),
            TEST_KINESIS_SHARDS=str(SHARDS),
        )
        env.pop("PINTREST_KINESIS_ENDPOINT_URL", None)
        home.mkdir(parents=True, exist_ok=True)
        self.stderr = open(home / "gateway.stderr", "a")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pintrest_assets_tests.gateway.kinesis_gateway_child"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        banner = self.proc.stdout.readline()
        if not banner.startswith("gateway listening on "):
            self.proc.kill()
            raise AssertionError(f"gateway did not start: {banner}{self._errors()}")
        self.url = banner.split()[3].rstrip(",")

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self._errors()}")
            kinesis = requests.get(f"{self.url}/status", timeout=5).json()["kinesis"]
            assert kinesis["ready"] or "starting" in (kinesis["error"] or ""), kinesis
            return kinesis["ready"]

        try:
            wait_until(ready, timeout=60, interval=0.1)
        except BaseException:
            self.stop()
            raise
        self.kinesalite_pid = int((home / "kinesis" / "kinesalite.pid").read_text())
        self.endpoint_url = f"http://127.0.0.1:{kinesis_port}"

    def _errors(self) -> str:
        self.stderr.flush()
        return (self.home / "gateway.stderr").read_text()[-3000:]

    def kill(self, kinesalite_too: bool) -> None:
        """SIGKILL the gateway (and its kinesalite), as a crash would."""
        if kinesalite_too:
            os.kill(self.kinesalite_pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
        self.stderr.close()

    def stop(self) -> int:
        """SIGTERM: the gateway stops its kinesalite and exits."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


@pytest.fixture
def start_stack(tmp_path):
    """Start local stacks; at the end, any still running is stopped, and a kinesalite a killed
    gateway left behind is ended."""
    started: list[LocalStack] = []

    def start(home: Path, kinesis_port: int) -> LocalStack:
        stack = LocalStack(home, kinesis_port)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        if stack.proc.poll() is None:
            stack.stop()
    for stack in started[-1:]:
        end_orphan(stack.home / "kinesis" / "kinesalite.pid", stack.home / "kinesis" / "data")


class Ledger:
    """What the clients sent and what they saw acknowledged, by record id."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent: dict[str, dict] = {}
        self.acknowledged: dict[str, tuple[str, str, int]] = {}  # id -> (stream, shard, sequence number)
        self.resent_by_client: set[str] = set()  # ids the project's client may have sent twice
        self.errors: list[BaseException] = []  # what went wrong in a client thread

    def guard(self, work):
        """``work`` for a thread: an exception is kept for the test to raise, not lost in the thread."""

        def run(*args) -> None:
            try:
                work(*args)
            except BaseException as exc:  # noqa: BLE001 - raised again by the test
                with self.lock:
                    self.errors.append(exc)

        return run

    def send(self, values: list[dict]) -> None:
        with self.lock:
            self.sent.update((v["id"], v) for v in values)

    def acknowledge(self, values: list[dict], entries) -> None:
        with self.lock:
            for value, (shard, sequence) in zip(values, entries, strict=True):
                stream = value["id"].split("/")[0] if "/" in value["id"] else STREAMS[0]
                self.acknowledged[value["id"]] = (stream, shard, int(sequence))


def _values(stream: str, worker: str, batch: int, count: int) -> list[dict]:
    return [{"id": f"{stream}/{worker}/{batch}/{i}", "payload": "x" * 200} for i in range(count)]


def _put_records(url, stream, worker, ledger, stop):
    session = requests.Session()
    for batch in itertools.count():
        if stop.is_set():
            return
        values = _values(stream, worker, batch, BATCH)
        ledger.send(values)
        body = kinesis_proxy.put_records_body([(v, v["id"]) for v in values])
        try:
            response = session.put(f"{url}/streams/{stream}/records", json=body, timeout=30)
        except requests.RequestException:
            return  # killed mid-request: not acknowledged
        if response.status_code != 200:
            return  # kinesalite killed first: 502
        answer = response.json()
        ok = [(v, e) for v, e in zip(values, answer["Records"], strict=True) if "ErrorCode" not in e]
        ledger.acknowledge([v for v, _ in ok], [(e["ShardId"], e["SequenceNumber"]) for _, e in ok])


def _put_record(url, stream, worker, ledger, stop):
    session = requests.Session()
    for batch in itertools.count():
        if stop.is_set():
            return
        [value] = _values(stream, worker, batch, 1)
        ledger.send([value])
        body = kinesis_proxy.put_record_body(stream, value, value["id"])
        try:
            response = session.put(f"{url}/streams/{stream}/record", json=body, timeout=30)
        except requests.RequestException:
            return
        if response.status_code != 200:
            return
        answer = response.json()
        ledger.acknowledge([value], [(answer["ShardId"], answer["SequenceNumber"])])


def _project_client(url, stream, worker, ledger, stop):
    client = KinesisProxyResource(url=url, user_id=USER_ID, max_retries=3, backoff_seconds=0.02, timeout_seconds=10)
    for batch in itertools.count():
        if stop.is_set():
            return
        values = _values(stream, worker, batch, BATCH)
        ledger.send(values)
        try:
            result = client.produce(stream, values)
        except KinesisProxyError as exc:
            result = exc.partial
        with ledger.lock:
            if result.retries:
                ledger.resent_by_client.update(v["id"] for v in values)
        if result.sent != len(values):
            assert result.sent == 0, "one request per batch: all of it acknowledged, or none"
            return
        ledger.acknowledge(values, result.offsets)


def _run_under_load(stack: LocalStack, round_: int, ledger: Ledger, kill_after: int, kinesalite_too: bool) -> None:
    stop = threading.Event()
    workers = [
        threading.Thread(
            target=ledger.guard(work), args=(stack.url, stream, f"{round_}.{work.__name__}", ledger, stop), daemon=True
        )
        for stream in STREAMS
        for work in (_put_records, _put_record, _project_client)
    ]
    for thread in workers:
        thread.start()
    before = len(ledger.acknowledged)
    deadline = time.monotonic() + 30
    while len(ledger.acknowledged) - before < kill_after and time.monotonic() < deadline:
        time.sleep(0.005)
    stack.kill(kinesalite_too)  # with requests in flight
    stop.set()
    for thread in workers:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in workers)
    if ledger.errors:
        raise ledger.errors[0]
    assert len(ledger.acknowledged) - before >= kill_after, "the load never got going"


def test_sigkill_of_the_stack_under_load_loses_no_acknowledged_record(tmp_path, start_stack):
    home, port = tmp_path / "home", free_port()
    ledger = Ledger()

    # Killed twice: the gateway with its kinesalite, then the gateway alone.
    _run_under_load(start_stack(home, port), 0, ledger, kill_after=3_000, kinesalite_too=True)
    _run_under_load(start_stack(home, port), 1, ledger, kill_after=1_500, kinesalite_too=False)

    stack = start_stack(home, port)  # ends the kinesalite the last kill left behind, starts its own
    after = {"id": "after", "payload": "after the crashes"}
    ledger.send([after])
    answer = requests.put(
        f"{stack.url}/streams/{STREAMS[0]}/record", json=kinesis_proxy.put_record_body(STREAMS[0], after, "k")
    ).json()
    ledger.acknowledge([after], [(answer["ShardId"], answer["SequenceNumber"])])

    client = kinesis_client(stack.endpoint_url, "us-east-1")
    stored: dict[str, list[tuple[str, str, int]]] = collections.defaultdict(list)
    positions = collections.Counter()
    for stream in STREAMS:
        for record in read_stream(client, stream):
            value = json.loads(record["Data"])
            assert record["Data"] == kinesis_proxy.record_bytes(ledger.sent[value["id"]])  # only what was sent, intact
            position = (stream, record["ShardId"], int(record["SequenceNumber"]))
            stored[value["id"]].append(position)
            positions[position] += 1
    assert stack.stop() == 0

    assert all(count == 1 for count in positions.values()), "a sequence number was given twice"
    lost = [i for i in ledger.acknowledged if i not in stored]
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    for record_id, position in ledger.acknowledged.items():
        assert position in stored[record_id], record_id  # where it was acknowledged
    twice = {i for i, where in stored.items() if len(where) > 1}
    assert twice <= ledger.resent_by_client, (
        f"in the stream twice without a resend: {sorted(twice - ledger.resent_by_client)[:5]}"
    )
    acknowledged_positions = list(ledger.acknowledged.values())
    assert len(set(acknowledged_positions)) == len(acknowledged_positions)
    in_stream = sum(len(where) for where in stored.values())
    assert len(ledger.acknowledged) <= in_stream
    assert len(ledger.acknowledged) >= 4_500
    print(
        f"acknowledged {len(ledger.acknowledged)} of {len(ledger.sent)} sent; {in_stream} in the streams, "
        f"{len(set(stored) - set(ledger.acknowledged))} of them unacknowledged, {len(twice)} twice"
    )
