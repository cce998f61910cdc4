"""A real HTTP server that misbehaves on cue, for the tests of the two proxy clients (the Kafka
REST proxy's and the Kinesis proxy's, which share ``pintrest_assets/proxy_client.py``).

A test scripts the server's answers, one step per request: a step is called with the server and
the request seen, and returns a ``Reply``, or None to hang up without answering. Once the script
runs out the server takes ``otherwise``: a healthy proxy unless the test says otherwise. The two
proxies differ in their subclasses: the type of their answers (``content_type``), what they read
of a request (``seen_as``, a ``Seen`` that knows its records) and their healthy answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict | None


@dataclass
class Reply:
    status: int
    body: object = None  # JSON, or raw bytes, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)


Step = Callable[["ScriptedProxy", Seen], "Reply | None"]


def reply(status, body=None, headers=None) -> Step:
    return lambda server, seen: Reply(status, body, headers or {})


def drop(server, seen):
    """Close the connection without answering."""
    return None


def stall(seconds) -> Step:
    """Answer nothing for ``seconds`` (longer than the client waits), then hang up."""

    def step(server, seen):
        time.sleep(seconds)
        return None

    return step


class ScriptedProxy(ThreadingHTTPServer):
    daemon_threads = True
    content_type = "application/json"  # of the answers that have a body
    seen_as: type[Seen] = Seen

    def __init__(self, otherwise: Step):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: deque[Step] = deque()
        self.otherwise = otherwise
        self.keep_alive = True  # False: every answer closes its connection
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_step(self, seen: Seen) -> Step:
        with self.lock:
            self.seen.append(seen)
            return self.script.popleft() if self.script else self.otherwise

    def handle_error(self, request, client_address):
        pass  # clients that gave up on a stalled answer are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real proxies

    def do_GET(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = self.server.seen_as(
            self.command,
            self.path,
            {name.lower(): value for name, value in self.headers.items()},
            json.loads(raw) if raw else None,
        )
        answer = self.server.next_step(seen)(self.server, seen)
        if answer is None:
            self.close_connection = True
            return
        data = answer.body if isinstance(answer.body, bytes) else b""
        if answer.body is not None and not isinstance(answer.body, bytes):
            data = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        if answer.body is not None:
            self.send_header("Content-Type", self.server.content_type)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if not self.server.keep_alive:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_PUT = do_POST = do_GET

    def log_message(self, format, *args):
        pass


STAGE = "/dev"  # the API's stage: the clients' URLs end with it


def client_settings(proxy: ScriptedProxy, **overrides) -> dict:
    """A client's settings for the scripted proxy: its URL with the stage, a short timeout, three
    retries and quick back-off, then ``overrides``."""
    settings = dict(
        url=f"{proxy.url}{STAGE}",
        timeout_seconds=2.0,
        max_retries=3,
        backoff_seconds=0.001,
        max_backoff_seconds=0.01,
    )
    return {**settings, **overrides}


@contextmanager
def serving(server: ScriptedProxy) -> Iterator[ScriptedProxy]:
    """The server answering on a thread of its own until the block ends."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# -- a Kafka REST proxy (v2) -----------------------------------------------------------------------


class Produced(Seen):
    @property
    def values(self) -> list:
        return [record["value"] for record in self.body["records"]]


def accept_produce(error_for=None) -> Step:
    """A healthy REST proxy: offsets in arrival order; ``error_for(value)`` may fail single records
    with ``(error_code, message)``."""

    def step(server, seen):
        offsets = []
        for value in seen.values:
            error = error_for(value) if error_for else None
            if error:
                offsets.append({"partition": None, "offset": None, "error_code": error[0], "error": error[1]})
            else:
                offsets.append({"partition": 0, "offset": server.take_offset(), "error_code": None, "error": None})
        return Reply(200, {"key_schema_id": None, "value_schema_id": None, "offsets": offsets})

    return step


class ScriptedRestProxy(ScriptedProxy):
    content_type = "application/vnd.kafka.v2+json"
    seen_as = Produced

    def __init__(self):
        super().__init__(otherwise=accept_produce())
        self._offset = 0

    def take_offset(self) -> int:
        with self.lock:
            self._offset += 1
            return self._offset - 1


# -- an API Gateway Kinesis proxy ------------------------------------------------------------------

BASE_SEQUENCE = 49_680_723_867_804_691_172_407_549_663_292_214_441_732_564_752_353_198_082  # as long as Kinesis's


class Put(Seen):
    @property
    def records(self) -> list[tuple[object, str]]:
        """``(data, partition key)`` of each record the request carried."""
        if self.path.endswith("/record"):
            return [(self.body["Data"], self.body["PartitionKey"])]
        return [(r["data"], r["partition-key"]) for r in self.body["records"]]

    @property
    def data(self) -> list:
        return [data for data, _ in self.records]


def kinesis_error(status: int, error_type: str, message: str = "refused") -> Step:
    """Kinesis's error as API Gateway passes it through."""
    return reply(status, {"__type": error_type, "message": message})


def accept_put(error_for=None) -> Step:
    """A healthy Kinesis proxy: each record the next sequence number of one of two shards, by
    partition key; ``error_for(data)`` may refuse single records with ``(code, message)``."""

    def step(server, seen):
        entries = []
        for data, key in seen.records:
            error = error_for(data) if error_for else None
            entries.append({"ErrorCode": error[0], "ErrorMessage": error[1]} if error else server.put(key))
        if seen.path.endswith("/record"):
            return (
                Reply(200, entries[0])
                if "ErrorCode" not in entries[0]
                else Reply(400, {"__type": entries[0]["ErrorCode"], "message": entries[0]["ErrorMessage"]})
            )
        failed = sum(1 for e in entries if "ErrorCode" in e)
        return Reply(200, {"FailedRecordCount": failed, "Records": entries})

    return step


class ScriptedKinesisProxy(ScriptedProxy):
    seen_as = Put  # answers in application/json, the default

    def __init__(self):
        super().__init__(otherwise=accept_put())
        self._sequence = BASE_SEQUENCE

    def put(self, key: str) -> dict:
        with self.lock:
            self._sequence += 1
            shard = f"shardId-00000000000{hash(key) % 2}"
            return {"SequenceNumber": str(self._sequence), "ShardId": shard}
