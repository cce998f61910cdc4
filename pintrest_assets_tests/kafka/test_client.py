"""The REST proxy client against a real HTTP server that misbehaves on cue.

Each test scripts the server's answers, one per request; once the script runs out the server
behaves like a healthy Kafka REST proxy (or as the test's ``otherwise`` says).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pydantic
import pytest

from pintrest_assets.kafka.client import (
    ProduceResult,
    RecordFailure,
    RestProxyError,
    RestProxyResource,
    RestProxyUnreachableError,
)
from pintrest_assets.settings import ConfigError
from pintrest_assets_tests.net import free_port

TOPIC = "0e95b18877fd.pin"
STAGE = "/dev"
TOPIC_PATH = f"{STAGE}/topics/{TOPIC}"


# -- a scripted REST proxy ---------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict | None

    @property
    def values(self) -> list:
        return [record["value"] for record in self.body["records"]]


@dataclass
class Reply:
    status: int
    body: object = None  # JSON, or raw bytes, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)


def reply(status, body=None, headers=None):
    return lambda server, seen: Reply(status, body, headers or {})


def accept(error_for=None):
    """A healthy proxy: offsets in arrival order; ``error_for(value)`` may fail single records."""

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


def drop(server, seen):
    """Close the connection without answering."""
    return None


def stall(seconds):
    """Answer nothing for ``seconds`` (longer than the client waits), then hang up."""

    def step(server, seen):
        time.sleep(seconds)
        return None

    return step


class ScriptedProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: deque = deque()
        self.otherwise = accept()
        self.keep_alive = True
        self.seen: list[Seen] = []
        self._offset = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take_offset(self) -> int:
        with self._lock:
            self._offset += 1
            return self._offset - 1

    def next_step(self, seen: Seen):
        with self._lock:
            self.seen.append(seen)
            return self.script.popleft() if self.script else self.otherwise

    def handle_error(self, request, client_address):
        pass  # clients that gave up on a stalled answer are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real proxy

    def do_GET(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = Seen(
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
            self.send_header("Content-Type", "application/vnd.kafka.v2+json")
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if not self.server.keep_alive:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET

    def log_message(self, format, *args):
        pass


@pytest.fixture(autouse=True)
def _no_http_proxy(monkeypatch):
    # An HTTP(S)_PROXY in the environment must not swallow requests to the local server.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def proxy():
    server = ScriptedProxy()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def make_client(proxy: ScriptedProxy, **overrides) -> RestProxyResource:
    settings = dict(
        url=f"{proxy.url}{STAGE}",
        timeout_seconds=2.0,
        max_retries=3,
        backoff_seconds=0.001,
        max_backoff_seconds=0.01,
    )
    return RestProxyResource(**{**settings, **overrides})


@pytest.fixture
def client(proxy):
    resource = make_client(proxy)
    yield resource
    resource.close()


def posts(n: int) -> list[dict]:
    return [{"index": i, "title": f"post {i}", "follower_count": "26k"} for i in range(n)]


# -- the request ---------------------------------------------------------------------------------


def test_request_shape_and_batching(proxy, client):
    values = posts(1200)
    result = client.produce(TOPIC, values)

    assert [len(seen.values) for seen in proxy.seen] == [500, 500, 200]
    for seen in proxy.seen:
        assert seen.method == "POST"
        assert seen.path == TOPIC_PATH
        assert seen.headers["content-type"] == "application/vnd.kafka.json.v2+json"
        assert seen.headers["accept"] == "application/vnd.kafka.v2+json"
        assert "x-api-key" not in seen.headers and "authorization" not in seen.headers
    assert proxy.seen[0].body == {"records": [{"value": v} for v in values[:500]]}
    assert [v for seen in proxy.seen for v in seen.values] == values

    assert result.topic == TOPIC
    assert (result.records, result.sent, result.failed) == (1200, 1200, [])
    assert result.offsets == [(0, i) for i in range(1200)]
    assert (result.first_offset, result.last_offset) == (0, 1199)
    assert (result.requests, result.retries) == (3, 0)


def test_unicode_values_travel_intact(proxy, client):
    values = [{"poster_name": "Ünïcødé 🎨 ", "description": "cut short…"}]
    client.produce(TOPIC, values)
    assert proxy.seen[0].values == values


@pytest.mark.parametrize(
    "auth, expected",
    [
        ({"api_key": "k-123"}, {"x-api-key": "k-123"}),
        (
            {"username": "alice", "password": "s3cret"},
            {"authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()},
        ),
    ],
)
def test_auth_headers(proxy, auth, expected):
    resource = make_client(proxy, **auth)
    proxy.script.extend([accept(), reply(200, [TOPIC])])
    resource.produce(TOPIC, posts(2))
    resource.list_topics()
    assert len(proxy.seen) == 2
    for seen in proxy.seen:
        assert {name: seen.headers.get(name) for name in expected} == expected


def test_empty_batch_sends_nothing(proxy, client):
    result = client.produce(TOPIC, [])
    assert proxy.seen == []
    assert (result.records, result.sent, result.requests, result.first_offset) == (0, 0, 0, None)


@pytest.mark.parametrize("topic", ["", "has space", "slash/topic", "..", "x" * 250])
def test_invalid_topic_names_are_refused_before_sending(proxy, client, topic):
    with pytest.raises(ValueError, match="not a valid Kafka topic name"):
        client.produce(topic, posts(1))
    with pytest.raises(ValueError, match="not a valid Kafka topic name"):
        client.topic_exists(topic)
    assert proxy.seen == []


@pytest.mark.parametrize("bad", [float("nan"), object()])
def test_values_that_are_not_json_are_refused_before_sending(proxy, client, bad):
    values = posts(3)
    values[2]["follower_count"] = bad
    with pytest.raises(ValueError, match=f"record 2 for topic {TOPIC} is not JSON"):
        client.produce(TOPIC, values)
    assert proxy.seen == []


def test_url_that_is_not_http_names_the_setting(proxy):
    resource = make_client(proxy, url="ftp://example.com/dev")
    with pytest.raises(ConfigError, match="PINTREST_REST_PROXY_URL: expected http"):
        resource.produce(TOPIC, posts(1))


def test_settings_are_validated():
    with pytest.raises(pydantic.ValidationError):
        RestProxyResource(url="http://127.0.0.1:8082", records_per_request=0)
    with pytest.raises(pydantic.ValidationError):
        RestProxyResource(url="http://127.0.0.1:8082", max_retries=-1)


# -- retries of whole requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body",
    [
        (500, {"error_code": 50003, "message": "Unexpected Kafka error"}),
        (503, {"error_code": 50302, "message": "Broker not available"}),
        (503, None),  # API Gateway and load balancers answer without a proxy error code
        (502, {"message": "Internal server error"}),
        (504, {"message": "Endpoint request timed out"}),
        (429, {"error_code": 42901, "message": "Too many requests"}),
    ],
)
def test_retriable_answers_are_retried_whole(proxy, client, status, body):
    proxy.script.extend([reply(status, body)])
    values = posts(7)
    result = client.produce(TOPIC, values)

    assert len(proxy.seen) == 2
    assert proxy.seen[0].body == proxy.seen[1].body == {"records": [{"value": v} for v in values]}
    assert (result.sent, result.retries, result.requests) == (7, 1, 2)
    assert result.offsets == [(0, i) for i in range(7)]


def test_timeout_then_success(proxy):
    resource = make_client(proxy, timeout_seconds=0.25)
    proxy.script.append(stall(60.0))
    started = time.monotonic()
    result = resource.produce(TOPIC, posts(5))

    assert len(proxy.seen) == 2
    # It gave up waiting after its timeout; waiting the stall out would take a minute.
    assert 0.25 <= time.monotonic() - started < 30
    assert (result.sent, result.retries) == (5, 1)


def test_dropped_connection_then_success(proxy, client):
    proxy.script.extend([drop, drop])
    result = client.produce(TOPIC, posts(4))
    assert len(proxy.seen) == 3
    assert (result.sent, result.retries, result.requests) == (4, 2, 3)


def test_429_waits_for_retry_after(proxy):
    resource = make_client(proxy, max_backoff_seconds=5.0)
    proxy.script.append(reply(429, {"error_code": 42901, "message": "Too many requests"}, {"Retry-After": "1"}))
    started = time.monotonic()
    result = resource.produce(TOPIC, posts(3))
    assert time.monotonic() - started >= 0.95
    assert (result.sent, result.retries) == (3, 1)


def test_retry_after_is_capped_by_max_backoff(proxy, monkeypatch):
    waits = []
    monkeypatch.setattr("pintrest_assets.proxy_client.sleep", waits.append)
    resource = make_client(proxy, backoff_seconds=0.5, max_backoff_seconds=2.0)
    proxy.script.append(reply(429, {"error_code": 42901, "message": "Too many requests"}, {"Retry-After": "60"}))
    assert resource.produce(TOPIC, posts(3)).sent == 3
    assert waits == [2.0]  # max_backoff_seconds, not the 60 s asked for


def test_gives_up_after_max_retries_with_the_partial_count(proxy, client):
    proxy.script.append(accept())
    proxy.otherwise = reply(503, {"error_code": 50302, "message": "Broker not available"})

    with pytest.raises(RestProxyError) as caught:
        client.produce(TOPIC, posts(1200))

    message = str(caught.value)
    assert "gave up after 3 retries" in message
    assert "500 of 1200 records acknowledged" in message
    assert "HTTP 503, error_code 50302: Broker not available" in message
    assert f"{proxy.url}{TOPIC_PATH}" in message and TOPIC in message
    assert not isinstance(caught.value, ConfigError)  # the proxy was reached: not a settings problem
    partial = caught.value.partial
    assert (partial.records, partial.sent, partial.requests, partial.retries) == (1200, 500, 5, 3)
    assert partial.offsets == [(0, i) for i in range(500)]
    assert len(proxy.seen) == 5


def test_backoff_is_exponential_with_full_jitter(proxy, monkeypatch):
    ranges, waits = [], []

    def uniform(low, high):  # the top of each range, so the waits show the ranges
        ranges.append((low, high))
        return high

    # The module's own names, not random.uniform and time.sleep: those are shared by every
    # thread in the process, and a sleep loop elsewhere would spin on waits.append.
    monkeypatch.setattr("pintrest_assets.proxy_client.uniform", uniform)
    monkeypatch.setattr("pintrest_assets.proxy_client.sleep", waits.append)
    resource = make_client(proxy, max_retries=5, backoff_seconds=1.0, max_backoff_seconds=4.0)
    proxy.otherwise = reply(503)
    with pytest.raises(RestProxyError, match="gave up after 5 retries"):
        resource.produce(TOPIC, posts(1))
    assert ranges == [(0, 1.0), (0, 2.0), (0, 4.0), (0, 4.0), (0, 4.0)]
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]


# -- per-record errors ---------------------------------------------------------------------------


def test_per_record_50003_resends_only_those_records(proxy, client):
    flaky = {2, 5, 7}
    proxy.script.append(accept(lambda v: (50003, "Leader not available") if v["index"] in flaky else None))
    values = posts(10)
    result = client.produce(TOPIC, values)

    assert len(proxy.seen) == 2
    assert proxy.seen[1].body == {"records": [{"value": values[i]} for i in sorted(flaky)]}
    # The first request took offsets 0-6, the resend 7-9; offsets come back in input order.
    assert result.offsets == [(0, 0), (0, 1), (0, 7), (0, 2), (0, 3), (0, 8), (0, 4), (0, 9), (0, 5), (0, 6)]
    assert (result.sent, result.failed, result.retries, result.requests) == (10, [], 1, 2)
    assert (result.first_offset, result.last_offset) == (0, 9)


def test_per_record_50002_is_a_failure_and_not_retried(proxy, client):
    proxy.otherwise = accept(lambda v: (50002, "Record too large") if v["index"] == 3 else None)
    result = client.produce(TOPIC, posts(6))

    assert len(proxy.seen) == 1
    assert result.failed == [RecordFailure(index_in_input=3, error_code=50002, message="Record too large")]
    assert result.sent == 5
    assert result.offsets == [(0, i) for i in range(5)]


def test_per_record_failures_are_indexed_across_requests(proxy):
    resource = make_client(proxy, records_per_request=4)
    proxy.otherwise = accept(lambda v: (50002, "Record too large") if v["index"] in {1, 9} else None)
    result = resource.produce(TOPIC, posts(10))
    assert [f.index_in_input for f in result.failed] == [1, 9]
    assert (result.sent, result.requests) == (8, 3)


def test_per_record_50003_that_persists_gives_up(proxy, client):
    proxy.otherwise = accept(lambda v: (50003, "Leader not available") if v["index"] == 4 else None)
    with pytest.raises(RestProxyError, match=r"error_code 50003 for 1 record\(s\).*5 of 6 records acknowledged"):
        client.produce(TOPIC, posts(6))
    assert len(proxy.seen) == 4
    assert [len(seen.values) for seen in proxy.seen] == [6, 1, 1, 1]


# -- errors that are final -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, code, text",
    [
        (404, {"error_code": 40401, "message": "Topic not found."}, 40401, "the topic does not exist"),
        (422, {"error_code": 42206, "message": "Unrecognized field: valeu"}, 42206, "Unrecognized field"),
        (415, {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"}, 415, "Unsupported Media Type"),
        (401, {"error_code": 40101, "message": "Unauthorized"}, 40101, "check PINTREST_REST_PROXY_API_KEY"),
        (403, {"message": "Forbidden"}, None, "stage path included"),
        (500, {"error_code": 50002, "message": "Kafka error: record too large"}, 50002, "record too large"),
        (500, b"<html>Internal Server Error</html>", None, "Internal Server Error"),
    ],
)
def test_final_errors_raise_without_retrying(proxy, client, status, body, code, text):
    proxy.script.append(reply(status, body))
    with pytest.raises(RestProxyError) as caught:
        client.produce(TOPIC, posts(3))

    assert len(proxy.seen) == 1
    error = caught.value
    assert (error.status, error.error_code) == (status, code)
    message = str(error)
    assert f"HTTP {status}" in message and text in message
    assert TOPIC in message and f"{proxy.url}{TOPIC_PATH}" in message
    assert "0 of 3 records acknowledged" in message
    assert error.partial.sent == 0


def test_an_answer_without_one_offset_per_record_is_an_error(proxy, client):
    proxy.script.append(reply(200, {"offsets": [{"partition": 0, "offset": 1, "error_code": None}]}))
    with pytest.raises(RestProxyError, match="expected 3 offset entries in the answer, got 1"):
        client.produce(TOPIC, posts(3))
    assert len(proxy.seen) == 1


def test_an_answer_that_is_not_json_is_an_error(proxy, client):
    proxy.script.append(reply(200, b"<html>Welcome to nginx</html>"))
    with pytest.raises(RestProxyError, match="is this a Kafka REST proxy"):
        client.produce(TOPIC, posts(3))


# -- reaching the proxy at all ------------------------------------------------------------------


def test_connection_refused_names_the_setting():
    port = free_port()
    resource = RestProxyResource(
        url=f"http://127.0.0.1:{port}/dev", max_retries=2, backoff_seconds=0.001, max_backoff_seconds=0.01
    )
    with pytest.raises(RestProxyUnreachableError) as caught:
        resource.produce(TOPIC, posts(3))

    error = caught.value
    assert str(error) == f"PINTREST_REST_PROXY_URL: cannot reach http://127.0.0.1:{port}/dev: connection refused"
    assert isinstance(error, ConfigError) and isinstance(error, RestProxyError)
    assert error.setting == "PINTREST_REST_PROXY_URL"
    assert (error.partial.sent, error.partial.requests) == (0, 3)


def test_proxy_going_away_mid_run_is_not_a_settings_problem(proxy, client):
    proxy.keep_alive = False  # so that stopping the server really ends every connection
    client.produce(TOPIC, posts(2))
    proxy.shutdown()
    proxy.server_close()

    with pytest.raises(RestProxyError, match="gave up after 3 retries: connection refused") as caught:
        client.produce(TOPIC, posts(2))
    assert not isinstance(caught.value, ConfigError)


def test_secrets_stay_out_of_logs_and_errors(proxy, caplog):
    url_with_login = f"http://bob:url-pass-789@127.0.0.1:{proxy.server_address[1]}{STAGE}"
    resource = make_client(proxy, url=url_with_login, api_key="key-SECRET-123")
    proxy.script.extend([reply(503), reply(503), reply(404, {"error_code": 40401, "message": "Topic not found."})])
    with caplog.at_level("DEBUG"), pytest.raises(RestProxyError) as caught:
        resource.produce(TOPIC, posts(2))

    assert proxy.seen[0].headers["x-api-key"] == "key-SECRET-123"
    assert "retry 2/3" in caplog.text
    for secret in ("key-SECRET-123", "url-pass-789"):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
    assert f"http://***@127.0.0.1:{proxy.server_address[1]}{TOPIC_PATH}" in str(caught.value)


# -- topics --------------------------------------------------------------------------------------


def test_list_topics(proxy, client):
    proxy.script.extend([reply(503), reply(200, ["pintrest.pin", "pintrest.geo"])])
    assert client.list_topics() == ["pintrest.pin", "pintrest.geo"]
    assert [(seen.method, seen.path) for seen in proxy.seen] == [("GET", f"{STAGE}/topics")] * 2


def test_topic_exists(proxy, client):
    proxy.script.extend(
        [
            reply(200, {"name": TOPIC, "configs": {}, "partitions": [{"partition": 0, "leader": 1}]}),
            reply(404, {"error_code": 40401, "message": "Topic not found."}),
        ]
    )
    assert client.topic_exists(TOPIC) is True
    assert client.topic_exists("pintrest.nope") is False
    assert [seen.path for seen in proxy.seen] == [TOPIC_PATH, f"{STAGE}/topics/pintrest.nope"]


def test_a_404_that_is_not_the_proxys_is_an_error(proxy, client):
    # A wrong base URL (say, the stage missing) reaches a server that knows no /topics at all.
    proxy.script.append(reply(404, b"Not Found"))
    with pytest.raises(RestProxyError, match="HTTP 404: Not Found"):
        client.topic_exists(TOPIC)


# -- results and sharing -------------------------------------------------------------------------


def test_results_add_up_as_one_input():
    first = ProduceResult(
        TOPIC, records=3, sent=2, failed=[RecordFailure(1, 50002, "too large")],
        first_offset=10, last_offset=11, offsets=[(0, 10), (0, 11)], retries=1, requests=2,
    )
    second = ProduceResult(
        TOPIC, records=2, sent=1, failed=[RecordFailure(0, 50002, "too large")],
        first_offset=5, last_offset=5, offsets=[(1, 5)], retries=0, requests=1,
    )
    total = ProduceResult(TOPIC)
    total += first
    total += second
    assert total == ProduceResult(
        TOPIC, records=5, sent=3,
        failed=[RecordFailure(1, 50002, "too large"), RecordFailure(3, 50002, "too large")],
        first_offset=5, last_offset=11, offsets=[(0, 10), (0, 11), (1, 5)], retries=1, requests=3,
    )  # fmt: skip
    with pytest.raises(ValueError, match="cannot add results of topic"):
        first + ProduceResult("other.topic")


def test_one_resource_serves_several_threads(proxy, caplog):
    resource = make_client(proxy, records_per_request=100)
    with caplog.at_level("WARNING", logger="urllib3"), ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: resource.produce(TOPIC, posts(300)), range(4)))
    assert "Connection pool is full" not in caplog.text  # every thread keeps its connection
    assert [r.sent for r in results] == [300] * 4
    offsets = [o for r in results for _, o in r.offsets]
    assert sorted(offsets) == list(range(1200))


def test_secrets_come_from_the_environment_in_a_run(proxy, monkeypatch):
    monkeypatch.setenv("TEST_REST_PROXY_API_KEY", "from-env-456")

    @dg.asset
    def emitted(rest_proxy: RestProxyResource) -> dg.MaterializeResult:
        result = rest_proxy.produce(TOPIC, posts(3))
        return dg.MaterializeResult(metadata={"sent": result.sent})

    resource = make_client(proxy, api_key=dg.EnvVar("TEST_REST_PROXY_API_KEY"))
    outcome = dg.materialize([emitted], resources={"rest_proxy": resource})
    assert outcome.success
    assert proxy.seen[0].headers["x-api-key"] == "from-env-456"
    [materialization] = outcome.asset_materializations_for_node("emitted")
    assert materialization.metadata["sent"].value == 3
