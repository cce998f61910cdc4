"""What the two proxy clients share (``pintrest_assets/proxy_client.py``), tested once over both,
the Kafka REST proxy's and the Kinesis proxy's, against a real HTTP server that misbehaves on cue:
waiting for Retry-After, backing off, giving up on an unreachable proxy, an answer that is not
JSON, and keeping secrets out of logs and errors. What each does of its own is tested in
``kafka/test_client.py`` and ``kinesis/test_proxy_client.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import pytest

from pintrest_assets.kafka.client import RestProxyError, RestProxyResource, RestProxyUnreachableError
from pintrest_assets.kinesis.proxy_client import (
    KinesisProxyError,
    KinesisProxyResource,
    KinesisProxyUnreachableError,
)
from pintrest_assets.settings import ConfigError
from pintrest_assets_tests.net import free_port
from pintrest_assets_tests.scripted_proxy import (
    STAGE,
    ScriptedKinesisProxy,
    ScriptedProxy,
    ScriptedRestProxy,
    Step,
    client_settings,
    kinesis_error,
    reply,
    serving,
)

THROTTLED = "ProvisionedThroughputExceededException"


@dataclass(frozen=True)
class Client:
    """One of the two clients, and what its proxy says and it answers."""

    resource: type
    server: Callable[[], ScriptedProxy]  # a healthy proxy once its script runs out
    destination: str  # a topic or a stream
    path: str  # where records for it go, below the stage
    setting: str  # where the URL comes from
    error: type
    unreachable: type
    key: str  # the resource's key in a run
    retriable: Step  # an answer that is retried whole
    retriable_text: str  # how the error names it
    missing: Step  # the destination does not exist: final
    proxy_name: str  # what the error asks the server to be
    settings: dict = field(default_factory=dict)

    def make(self, proxy: ScriptedProxy, **overrides):
        return self.resource(**client_settings(proxy, **{**self.settings, **overrides}))


KAFKA = Client(
    resource=RestProxyResource,
    server=ScriptedRestProxy,
    destination="0e95b18877fd.pin",
    path=f"{STAGE}/topics/0e95b18877fd.pin",
    setting="PINTREST_REST_PROXY_URL",
    error=RestProxyError,
    unreachable=RestProxyUnreachableError,
    key="rest_proxy",
    retriable=reply(503, {"error_code": 50302, "message": "Broker not available"}),
    retriable_text="HTTP 503, error_code 50302: Broker not available",
    missing=reply(404, {"error_code": 40401, "message": "Topic not found."}),
    proxy_name="a Kafka REST proxy",
)
KINESIS = Client(
    resource=KinesisProxyResource,
    server=ScriptedKinesisProxy,
    destination="streaming-0e95b18877fd-pin",
    path=f"{STAGE}/streams/streaming-0e95b18877fd-pin/records",
    setting="PINTREST_KINESIS_PROXY_URL",
    error=KinesisProxyError,
    unreachable=KinesisProxyUnreachableError,
    key="kinesis_proxy",
    retriable=kinesis_error(400, THROTTLED, "Rate exceeded for stream"),
    retriable_text=f"HTTP 400, error_code {THROTTLED}: Rate exceeded for stream",
    missing=kinesis_error(400, "ResourceNotFoundException"),
    proxy_name="a Kinesis proxy",
    settings={"user_id": "0e95b18877fd"},
)


@pytest.fixture(params=[KAFKA, KINESIS], ids=["kafka", "kinesis"])
def client(request) -> Client:
    return request.param


@pytest.fixture
def proxy(client):
    with serving(client.server()) as server:
        yield server


def posts(n: int) -> list[dict]:
    return [{"index": i, "title": f"post {i}", "follower_count": "26k"} for i in range(n)]


def test_429_waits_for_retry_after(client, proxy):
    resource = client.make(proxy, max_backoff_seconds=5.0)
    proxy.script.append(reply(429, {"message": "Too Many Requests"}, {"Retry-After": "1"}))
    started = time.monotonic()
    result = resource.produce(client.destination, posts(3))
    assert time.monotonic() - started >= 0.95
    assert (result.sent, result.retries) == (3, 1)


def test_retry_after_is_capped_by_max_backoff(client, proxy, monkeypatch):
    waits = []
    monkeypatch.setattr("pintrest_assets.proxy_client.sleep", waits.append)
    resource = client.make(proxy, backoff_seconds=0.5, max_backoff_seconds=2.0)
    proxy.script.append(reply(429, {"message": "Too Many Requests"}, {"Retry-After": "60"}))
    assert resource.produce(client.destination, posts(3)).sent == 3
    assert waits == [2.0]  # max_backoff_seconds, not the 60 s asked for


def test_backoff_is_exponential_with_full_jitter(client, proxy, monkeypatch):
    ranges, waits = [], []

    def uniform(low, high):  # the top of each range, so the waits show the ranges
        ranges.append((low, high))
        return high

    # The module's own names, not random.uniform and time.sleep: those are shared by every
    # thread in the process, and a sleep loop elsewhere would spin on waits.append.
    monkeypatch.setattr("pintrest_assets.proxy_client.uniform", uniform)
    monkeypatch.setattr("pintrest_assets.proxy_client.sleep", waits.append)
    resource = client.make(proxy, max_retries=5, backoff_seconds=1.0, max_backoff_seconds=4.0)
    proxy.otherwise = client.retriable
    with pytest.raises(client.error, match="gave up after 5 retries") as caught:
        resource.produce(client.destination, posts(1))
    assert ranges == [(0, 1.0), (0, 2.0), (0, 4.0), (0, 4.0), (0, 4.0)]
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert client.retriable_text in str(caught.value)


def test_connection_refused_names_the_setting(client):
    port = free_port()
    resource = client.resource(
        url=f"http://127.0.0.1:{port}/dev", max_retries=2, backoff_seconds=0.001, max_backoff_seconds=0.01
    )
    with pytest.raises(client.unreachable) as caught:
        resource.produce(client.destination, posts(3))

    error = caught.value
    assert str(error) == f"{client.setting}: cannot reach http://127.0.0.1:{port}/dev: connection refused"
    assert isinstance(error, ConfigError) and isinstance(error, client.error)
    assert error.setting == client.setting
    assert (error.partial.sent, error.partial.requests) == (0, 3)


def test_an_answer_that_is_not_json_is_an_error(client, proxy):
    proxy.script.append(reply(200, b"<html>Welcome to nginx</html>"))
    with pytest.raises(client.error, match=f"is this {client.proxy_name}"):
        client.make(proxy).produce(client.destination, posts(3))


def test_secrets_stay_out_of_logs_and_errors(client, proxy, caplog):
    url_with_login = f"http://bob:url-pass-789@127.0.0.1:{proxy.server_address[1]}{STAGE}"
    resource = client.make(proxy, url=url_with_login, api_key="key-SECRET-123")
    proxy.script.extend([reply(503), reply(503), client.missing])
    with caplog.at_level("DEBUG"), pytest.raises(client.error) as caught:
        resource.produce(client.destination, posts(2))

    assert proxy.seen[0].headers["x-api-key"] == "key-SECRET-123"
    assert "retry 2/3" in caplog.text
    for secret in ("key-SECRET-123", "url-pass-789"):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
    assert f"http://***@127.0.0.1:{proxy.server_address[1]}{client.path}" in str(caught.value)


def test_secrets_come_from_the_environment_in_a_run(client, proxy, monkeypatch):
    monkeypatch.setenv("TEST_PROXY_API_KEY", "from-env-456")

    @dg.asset(required_resource_keys={client.key})
    def emitted(context) -> dg.MaterializeResult:
        result = getattr(context.resources, client.key).produce(client.destination, posts(3))
        return dg.MaterializeResult(metadata={"sent": result.sent})

    resource = client.make(proxy, api_key=dg.EnvVar("TEST_PROXY_API_KEY"))
    outcome = dg.materialize([emitted], resources={client.key: resource})
    assert outcome.success
    assert proxy.seen[0].headers["x-api-key"] == "from-env-456"
    [materialization] = outcome.asset_materializations_for_node("emitted")
    assert materialization.metadata["sent"].value == 3
