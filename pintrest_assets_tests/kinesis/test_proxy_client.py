"""The Kinesis proxy client against a real HTTP server that misbehaves on cue.

Each test scripts the server's answers, one per request; once the script runs out the server
behaves like a healthy API Gateway Kinesis proxy (or as the test's ``otherwise`` says): it
assigns each record the next sequence number of one of two shards, by partition key. What the
client shares with the REST proxy's (Retry-After, back-off, an unreachable proxy, secrets) is
tested over both in ``pintrest_assets_tests/test_proxy_client.py``.
"""

from __future__ import annotations

import uuid

import dagster as dg
import pydantic
import pytest

from pintrest_assets.kinesis import proxy_contract as kinesis_proxy
from pintrest_assets.emulation.emulator import TopicTally
from pintrest_assets.kinesis.proxy_client import (
    KinesisProxyError,
    KinesisProxyResource,
    RecordFailure,
    kinesis_proxy_for,
)
from pintrest_assets.settings import ConfigError, Settings
from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.scripted_proxy import (
    BASE_SEQUENCE,
    STAGE,
    ScriptedKinesisProxy,
    client_settings,
    drop,
    kinesis_error,
    reply,
    serving,
)
from pintrest_assets_tests.scripted_proxy import accept_put as accept

STREAM = "streaming-0e95b18877fd-pin"
RECORDS_PATH = f"{STAGE}/streams/{STREAM}/records"
RECORD_PATH = f"{STAGE}/streams/{STREAM}/record"
THROTTLED = "ProvisionedThroughputExceededException"
# Kinesis's documented limits, written out: the code's own constants must not define what is tested.
KINESIS_MAX_RECORD_BYTES = 1024 * 1024  # 1 MiB per record, data and partition key together
KINESIS_MAX_PUT_RECORDS_BYTES = 5 * 1024 * 1024  # 5 MiB per PutRecords request


# -- a scripted Kinesis proxy --------------------------------------------------------------------


@pytest.fixture
def proxy():
    with serving(ScriptedKinesisProxy()) as server:
        yield server


def make_client(proxy: ScriptedKinesisProxy, **overrides) -> KinesisProxyResource:
    return KinesisProxyResource(**client_settings(proxy, user_id="0e95b18877fd", **overrides))


@pytest.fixture
def client(proxy):
    resource = make_client(proxy)
    yield resource
    resource.close()


def posts(n: int, size: int = 0) -> list[dict]:
    return [{"index": i, "title": f"post {i}", "follower_count": "26k", "pad": "x" * size} for i in range(n)]


def sequences(result) -> list[int]:
    return [sequence for _, sequence in result.offsets]


# -- the requests --------------------------------------------------------------------------------


def test_batches_of_500_to_the_records_route_with_a_uuid4_key_per_record(proxy, client):
    values = posts(1200)
    result = client.produce(STREAM, values)

    assert [len(seen.records) for seen in proxy.seen] == [500, 500, 200]
    for seen in proxy.seen:
        assert (seen.method, seen.path) == ("PUT", RECORDS_PATH)
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["accept"] == "application/json"
        assert "x-api-key" not in seen.headers
        assert set(seen.body) == {"records"}
        assert all(set(r) == {"data", "partition-key"} for r in seen.body["records"])
    assert [d for seen in proxy.seen for d in seen.data] == values  # JSON values, never base64
    keys = [key for seen in proxy.seen for _, key in seen.records]
    assert len(set(keys)) == 1200 and all(uuid.UUID(k).version == 4 for k in keys)

    assert result.topic == STREAM
    assert (result.records, result.sent, result.failed) == (1200, 1200, [])
    assert sequences(result) == [BASE_SEQUENCE + i for i in range(1, 1201)]  # ints, in input order
    assert {shard for shard, _ in result.offsets} == {"shardId-000000000000", "shardId-000000000001"}
    assert (result.first_offset, result.last_offset) == (BASE_SEQUENCE + 1, BASE_SEQUENCE + 1200)
    assert (result.requests, result.retries) == (3, 0)


def test_one_record_per_request_goes_to_the_record_route(proxy):
    resource = make_client(proxy, records_per_request=1)
    values = posts(3)
    result = resource.produce(STREAM, values)

    assert [(seen.method, seen.path) for seen in proxy.seen] == [("PUT", RECORD_PATH)] * 3
    for seen, value in zip(proxy.seen, values):
        assert set(seen.body) == {"StreamName", "Data", "PartitionKey"}
        assert seen.body["StreamName"] == STREAM and seen.body["Data"] == value
        assert uuid.UUID(seen.body["PartitionKey"]).version == 4
    assert (result.sent, result.requests) == (3, 3)
    assert sequences(result) == [BASE_SEQUENCE + 1, BASE_SEQUENCE + 2, BASE_SEQUENCE + 3]


def test_unicode_values_travel_as_json_text(proxy, client):
    values = [{"poster_name": "Ünïcødé 🎨 ", "description": "cut short…"}]
    client.produce(STREAM, values)
    assert proxy.seen[0].data == values


def test_requests_stay_within_5_mib(proxy):
    resource = make_client(proxy)
    values = posts(120, size=100_000)  # 12 MB in all
    result = resource.produce(STREAM, values)
    assert result.sent == 120
    for seen in proxy.seen:
        size = sum(len(kinesis_proxy.record_bytes(d)) + len(k) for d, k in seen.records)
        assert size <= KINESIS_MAX_PUT_RECORDS_BYTES
    assert len(proxy.seen) == 3


def test_a_record_over_1_mib_fails_alone_and_is_never_sent(proxy, client):
    values = posts(4)
    values[2]["pad"] = "x" * (KINESIS_MAX_RECORD_BYTES + 1)
    result = client.produce(STREAM, values)
    assert [v["index"] for v in proxy.seen[0].data] == [0, 1, 3]
    assert [(f.index_in_input, f.error_code) for f in result.failed] == [(2, "ValidationException")]
    assert "1 MiB" in result.failed[0].message
    assert result.sent == 3


def test_api_key_header(proxy):
    resource = make_client(proxy, api_key="k-123")
    resource.produce(STREAM, posts(2))
    assert proxy.seen[0].headers["x-api-key"] == "k-123"


def test_empty_batch_sends_nothing(proxy, client):
    result = client.produce(STREAM, [])
    assert proxy.seen == [] and (result.records, result.sent, result.requests) == (0, 0, 0)


@pytest.mark.parametrize("stream", ["", "has space", "slash/stream", "x" * 129])
def test_invalid_stream_names_are_refused_before_sending(proxy, client, stream):
    with pytest.raises(ValueError, match="not a valid Kinesis stream name"):
        client.produce(stream, posts(1))
    assert proxy.seen == []


def test_values_that_are_not_json_are_refused_before_sending(proxy, client):
    values = posts(3)
    values[1]["follower_count"] = float("nan")
    with pytest.raises(ValueError, match=f"record 1 for stream {STREAM} is not JSON"):
        client.produce(STREAM, values)
    assert proxy.seen == []


def test_settings_are_validated():
    with pytest.raises(pydantic.ValidationError):
        KinesisProxyResource(url="http://127.0.0.1:8082", records_per_request=501)
    with pytest.raises(pydantic.ValidationError):
        KinesisProxyResource(url="http://127.0.0.1:8082", records_per_request=0)


def test_url_that_is_not_http_names_the_setting(proxy):
    with pytest.raises(ConfigError, match="PINTREST_KINESIS_PROXY_URL: expected http"):
        make_client(proxy, url="kinesis.us-east-1.amazonaws.com").produce(STREAM, posts(1))


# -- per-record failures -------------------------------------------------------------------------


def test_throttled_records_are_resent_alone(proxy, client):
    flaky = {2, 5, 7}
    proxy.script.append(accept(lambda d: (THROTTLED, "Rate exceeded for shard") if d["index"] in flaky else None))
    values = posts(10)
    result = client.produce(STREAM, values)

    assert len(proxy.seen) == 2
    assert proxy.seen[1].data == [values[i] for i in sorted(flaky)]
    # Each record keeps its partition key when it is sent again.
    first_keys = dict(zip([d["index"] for d in proxy.seen[0].data], [k for _, k in proxy.seen[0].records]))
    assert [k for _, k in proxy.seen[1].records] == [first_keys[i] for i in sorted(flaky)]
    # The first request took sequence numbers 1-7, the resend 8-10; offsets come back in input order.
    assert [s - BASE_SEQUENCE for s in sequences(result)] == [1, 2, 8, 3, 4, 9, 5, 10, 6, 7]
    assert (result.sent, result.failed, result.retries, result.requests) == (10, [], 1, 2)


def test_internal_failure_records_are_resent_too(proxy, client):
    proxy.script.append(accept(lambda d: ("InternalFailure", "Internal service failure.") if d["index"] == 0 else None))
    result = client.produce(STREAM, posts(3))
    assert [len(seen.records) for seen in proxy.seen] == [3, 1]
    assert (result.sent, result.retries) == (3, 1)


def test_other_record_errors_are_final(proxy, client):
    proxy.otherwise = accept(lambda d: ("KMSAccessDeniedException", "no key") if d["index"] == 1 else None)
    result = client.produce(STREAM, posts(4))
    assert len(proxy.seen) == 1
    assert result.failed == [RecordFailure(1, "KMSAccessDeniedException", "no key")]
    assert result.sent == 3 and len(result.offsets) == 3


def test_throttling_that_persists_gives_up_with_the_partial_count(proxy, client):
    proxy.otherwise = accept(lambda d: (THROTTLED, "Rate exceeded") if d["index"] == 4 else None)
    with pytest.raises(KinesisProxyError) as caught:
        client.produce(STREAM, posts(6))
    message = str(caught.value)
    assert f"{THROTTLED} for 1 record(s)" in message and "5 of 6 records acknowledged" in message
    assert f"stream {STREAM}" in message and "gave up after 3 retries" in message
    assert [len(seen.records) for seen in proxy.seen] == [6, 1, 1, 1]
    assert caught.value.partial.sent == 5


# -- retries of whole requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        kinesis_error(400, THROTTLED, "Rate exceeded for stream"),
        kinesis_error(400, "LimitExceededException"),
        kinesis_error(500, "InternalFailure"),
        kinesis_error(500, "ServiceUnavailable"),
        reply(502, {"message": "Internal server error"}),
        reply(503, {"message": "Kinesis is starting"}),
        reply(504, {"message": "Endpoint request timed out"}),
        reply(429, {"message": "Too Many Requests"}),
        drop,
    ],
)
def test_retriable_answers_are_retried_whole(proxy, client, step):
    proxy.script.append(step)
    values = posts(7)
    result = client.produce(STREAM, values)
    assert len(proxy.seen) == 2
    assert proxy.seen[0].body == proxy.seen[1].body
    assert (result.sent, result.retries, result.requests) == (7, 1, 2)


def test_a_throttled_single_record_is_retried(proxy):
    resource = make_client(proxy, records_per_request=1)
    proxy.script.append(kinesis_error(400, THROTTLED, "Rate exceeded for shard shardId-000000000000"))
    result = resource.produce(STREAM, posts(2))
    assert [seen.path for seen in proxy.seen] == [RECORD_PATH] * 3
    assert proxy.seen[0].body == proxy.seen[1].body
    assert (result.sent, result.retries, result.requests) == (2, 1, 3)


def test_gives_up_after_max_retries_with_the_partial_count(proxy, client):
    proxy.script.append(accept())
    proxy.otherwise = reply(503, {"message": "no Kinesis behind this gateway: Node.js is missing"})
    with pytest.raises(KinesisProxyError) as caught:
        client.produce(STREAM, posts(1200))
    message = str(caught.value)
    assert "gave up after 3 retries" in message and "500 of 1200 records acknowledged" in message
    assert "HTTP 503: no Kinesis behind this gateway: Node.js is missing" in message
    assert f"{proxy.url}{RECORDS_PATH}" in message
    assert not isinstance(caught.value, ConfigError)
    partial = caught.value.partial
    assert (partial.records, partial.sent, partial.requests, partial.retries) == (1200, 500, 5, 3)


# -- errors that are final -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, error_type, text",
    [
        (400, {"__type": "ResourceNotFoundException", "message": "Stream x not found."}, "ResourceNotFoundException",
         "the stream does not exist"),
        (400, {"__type": "ValidationException", "message": "1 validation error"}, "ValidationException",
         "1 validation error"),
        (400, {"__type": "AccessDeniedException", "message": "not authorized"}, "AccessDeniedException",
         "kinesis-proxy-policy.json"),
        (403, {"message": "Forbidden"}, None, "check PINTREST_KINESIS_PROXY_API_KEY"),
        (403, {"message": "Missing Authentication Token"}, None, "no such route: check PINTREST_KINESIS_PROXY_URL"),
        (415, {"message": "Unsupported Media Type"}, None, "application/json only"),
    ],
)  # fmt: skip
def test_final_errors_raise_without_retrying(proxy, client, status, body, error_type, text):
    proxy.script.append(reply(status, body))
    with pytest.raises(KinesisProxyError) as caught:
        client.produce(STREAM, posts(3))
    assert len(proxy.seen) == 1
    error = caught.value
    assert (error.status, error.error_code) == (status, error_type)
    message = str(error)
    assert f"HTTP {status}" in message and text in message
    assert f"stream {STREAM}" in message and f"{proxy.url}{RECORDS_PATH}" in message
    assert "0 of 3 records acknowledged" in message and error.partial.sent == 0


def test_an_answer_without_one_entry_per_record_is_an_error(proxy, client):
    proxy.script.append(reply(200, {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "s"}]}))
    with pytest.raises(KinesisProxyError, match="expected 3 record entries in the answer, got 1"):
        client.produce(STREAM, posts(3))


# -- streams -------------------------------------------------------------------------------------


def test_stream_for_names_the_streams():
    resource = KinesisProxyResource(url="http://127.0.0.1:8082", user_id="0e95b18877fd")
    assert [resource.stream_for(spec) for spec in TOPICS] == [
        "streaming-0e95b18877fd-pin",
        "streaming-0e95b18877fd-geo",
        "streaming-0e95b18877fd-user",
    ]
    with pytest.raises(ConfigError, match="PINTREST_USER_ID: .* valid Kinesis stream names"):
        KinesisProxyResource(url="http://127.0.0.1:8082", user_id="u" * 120).stream_for(TOPICS[0])


def test_list_streams_and_stream_exists(proxy, client):
    proxy.script.extend(
        [
            reply(503),
            reply(200, {"StreamNames": [STREAM], "HasMoreStreams": False}),
            reply(200, {"StreamDescription": {"StreamName": STREAM, "StreamStatus": "ACTIVE"}}),
            kinesis_error(400, "ResourceNotFoundException", "Stream nope not found."),
        ]
    )
    assert client.list_streams() == [STREAM]
    assert client.stream_exists(STREAM) is True
    assert client.stream_exists("nope") is False
    assert [(s.method, s.path) for s in proxy.seen] == [("GET", f"{STAGE}/streams")] * 2 + [
        ("GET", f"{STAGE}/streams/{STREAM}"),
        ("GET", f"{STAGE}/streams/nope"),
    ]


def test_the_emulation_tallies_shards(proxy, client):
    tally = TopicTally(client.stream_for(TOPICS[0]), "stream")
    tally.add(client.produce(STREAM, posts(20)))
    assert set(tally.offsets) == {"shardId-000000000000", "shardId-000000000001"}
    assert sum(len(o) for o in tally.offsets.values()) == 20
    assert tally.first_offset == BASE_SEQUENCE + 1 and tally.last_offset == BASE_SEQUENCE + 20


# -- from the settings ---------------------------------------------------------------------------


def test_the_resource_from_the_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("PINTREST_KINESIS_PROXY_API_KEY", raising=False)
    monkeypatch.delenv("PINTREST_REST_PROXY_API_KEY", raising=False)
    settings = Settings.from_env({"PINTREST_HOME": str(tmp_path), "PINTREST_USER_ID": "abc"})
    resource = kinesis_proxy_for(settings)
    assert (resource.url, resource.user_id, resource.api_key) == ("http://127.0.0.1:8082", "abc", None)

    settings = Settings.from_env(
        {
            "PINTREST_HOME": str(tmp_path),
            "PINTREST_KINESIS_PROXY_URL": "https://k.execute-api.eu-west-1.amazonaws.com/dev/",
        }
    )
    monkeypatch.setenv("PINTREST_REST_PROXY_API_KEY", "shared-key")
    assert kinesis_proxy_for(settings, resolve_secrets=True).api_key == "shared-key"  # one key for both APIs
    monkeypatch.setenv("PINTREST_KINESIS_PROXY_API_KEY", "kinesis-key")
    resource = kinesis_proxy_for(settings, resolve_secrets=True)
    assert (resource.url, resource.api_key) == ("https://k.execute-api.eu-west-1.amazonaws.com/dev", "kinesis-key")
    assert kinesis_proxy_for(settings).api_key == dg.EnvVar("PINTREST_KINESIS_PROXY_API_KEY")
