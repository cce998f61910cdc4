"""The REST proxy client against a real HTTP server that misbehaves on cue.

Each test scripts the server's answers, one per request; once the script runs out the server
behaves like a healthy Kafka REST proxy (or as the test's ``otherwise`` says). What the client
shares with the Kinesis proxy's (Retry-After, back-off, an unreachable proxy, secrets) is tested
over both in ``pintrest_assets_tests/test_proxy_client.py``.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import pydantic
import pytest

from pintrest_assets.kafka.client import (
    ProduceResult,
    RecordFailure,
    RestProxyError,
    RestProxyResource,
)
from pintrest_assets.settings import ConfigError
from pintrest_assets_tests.scripted_proxy import (
    STAGE,
    ScriptedRestProxy,
    client_settings,
    drop,
    reply,
    serving,
    stall,
)
from pintrest_assets_tests.scripted_proxy import accept_produce as accept

TOPIC = "0e95b18877fd.pin"
TOPIC_PATH = f"{STAGE}/topics/{TOPIC}"


# -- a scripted REST proxy ---------------------------------------------------------------------


@pytest.fixture
def proxy():
    with serving(ScriptedRestProxy()) as server:
        yield server


def make_client(proxy: ScriptedRestProxy, **overrides) -> RestProxyResource:
    return RestProxyResource(**client_settings(proxy, **overrides))


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


# -- reaching the proxy at all ------------------------------------------------------------------


def test_proxy_going_away_mid_run_is_not_a_settings_problem(proxy, client):
    proxy.keep_alive = False  # so that stopping the server really ends every connection
    client.produce(TOPIC, posts(2))
    proxy.shutdown()
    proxy.server_close()

    with pytest.raises(RestProxyError, match="gave up after 3 retries: connection refused") as caught:
        client.produce(TOPIC, posts(2))
    assert not isinstance(caught.value, ConfigError)


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
