"""The gateway exposed: loopback by default, an API key beyond it, and bounded requests.

Everything runs against a real gateway on a free loopback port; a gateway given a key requires
it on loopback too, so the key's checks need no other interface.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import socket

import pytest
import requests

from pintrest_assets.gateway.server import ROUTES, ApiKeyRequired, Gateway
from pintrest_assets.kafka.client import RestProxyError, RestProxyResource
from pintrest_assets.settings import ConfigError
from pintrest_assets_tests.gateway.helpers import JSON_V2

KEY = "key-" + secrets.token_hex(16)
WRONG_KEY = "key-" + secrets.token_hex(16)
TOPIC = "u.pin"


def concrete(template: str) -> str:
    """A path that fits a route template: ``/topics/{topic}`` -> ``/topics/u.pin``."""
    return re.sub(r"\{([^}]+)\}", lambda m: {"topic": TOPIC, "partition": "0"}.get(m[1], "x"), template)


def client(gateway: Gateway, **kwargs) -> RestProxyResource:
    return RestProxyResource(url=gateway.url, user_id="u", max_retries=0, **kwargs)


def produce(url: str, values: list, key: str | None = KEY, topic: str = TOPIC) -> requests.Response:
    headers = {"Content-Type": JSON_V2} | ({"x-api-key": key} if key is not None else {})
    body = json.dumps({"records": [{"value": v} for v in values]})
    return requests.post(f"{url}/topics/{topic}", data=body, headers=headers)


def assert_rest_error(response: requests.Response, status: int, error_code: int, words: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == error_code
    assert words in response.json()["message"]


@pytest.fixture
def keyed_gateway(start_gateway) -> Gateway:
    return start_gateway(api_key=KEY)


# -- where it may listen -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10", "example.com"])
def test_any_address_but_loopback_needs_an_api_key(bucket, tmp_path, host):
    with pytest.raises(ApiKeyRequired) as raised:
        Gateway(bucket, tmp_path / "state", host=host, port=0)
    assert isinstance(raised.value, ConfigError)
    assert str(raised.value).startswith("PINTREST_REST_PROXY_API_KEY: listening on ")
    assert "needs an API key" in str(raised.value)
    assert "\n" not in str(raised.value)
    Gateway(bucket, tmp_path / "state", host=host, port=0, api_key=KEY)  # with a key it may


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_key(bucket, tmp_path, host):
    assert not Gateway(bucket, tmp_path / "state", host=host, port=0).requires_api_key


def test_the_default_address_is_loopback(bucket, tmp_path):
    assert Gateway(bucket, tmp_path / "state").host == "127.0.0.1"


@pytest.mark.parametrize("key", ["two words", "caf\u00e9-key", "line\nbreak"])
def test_a_key_that_cannot_travel_in_a_header_is_refused_without_showing_it(bucket, tmp_path, key):
    with pytest.raises(ApiKeyRequired) as raised:
        Gateway(bucket, tmp_path / "state", host="0.0.0.0", port=0, api_key=key)
    assert key not in str(raised.value)


# -- the key -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, WRONG_KEY, "", KEY[:-1], KEY + "x"])
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.template}")
def test_every_route_answers_403_without_the_key(keyed_gateway, route, key):
    headers = {"Content-Type": JSON_V2} | ({"x-api-key": key} if key is not None else {})
    response = requests.request(
        route.method, keyed_gateway.url + concrete(route.template), data=b'{"records": [{"value": 1}]}', headers=headers
    )
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"message": "Forbidden"}  # what API Gateway answers
    assert requests.get(f"{keyed_gateway.url}/topics", headers={"x-api-key": KEY}).json() == []  # nothing kept


def test_unknown_paths_are_forbidden_too_without_the_key(keyed_gateway):
    assert requests.get(f"{keyed_gateway.url}/nothing").status_code == 403
    assert requests.get(f"{keyed_gateway.url}/nothing", headers={"x-api-key": KEY}).status_code == 404


def test_the_projects_client_with_the_key_produces(keyed_gateway):
    proxy = client(keyed_gateway, api_key=KEY)
    result = proxy.produce(TOPIC, [{"index": i} for i in range(3)])
    assert (result.sent, result.failed, result.first_offset, result.last_offset) == (3, [], 0, 2)
    assert proxy.list_topics() == [TOPIC]
    assert proxy.topic_exists(TOPIC)


@pytest.mark.parametrize("key", [None, WRONG_KEY])
def test_the_projects_client_without_the_right_key_is_told_which_setting_to_check(keyed_gateway, key):
    with pytest.raises(RestProxyError) as raised:
        client(keyed_gateway, api_key=key).produce(TOPIC, [{"index": 1}])
    assert raised.value.status == 403
    message = str(raised.value)
    assert "HTTP 403" in message and "Forbidden" in message
    assert "PINTREST_REST_PROXY_API_KEY" in message
    assert KEY not in message and WRONG_KEY not in message
    assert raised.value.partial.sent == 0


def test_a_body_is_not_read_before_the_key_is_checked(keyed_gateway):
    """A 100 MB body announced without a key is refused at once, without reading a byte of it."""
    with socket.create_connection((keyed_gateway.host, keyed_gateway.port), timeout=10) as sock:
        sock.sendall(
            f"POST /topics/{TOPIC} HTTP/1.1\r\nHost: gateway\r\nContent-Type: {JSON_V2}\r\n"
            "Content-Length: 100000000\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):  # the gateway closes the connection after the answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert b"Connection: close" in head
    assert json.loads(body) == {"message": "Forbidden"}


# -- bounds --------------------------------------------------------------------------------------


def test_too_many_records_is_a_request_too_large_and_nothing_is_kept(start_gateway):
    gateway = start_gateway(api_key=KEY, max_records_per_request=10)
    assert_rest_error(produce(gateway.url, list(range(11))), 413, 413, "11 records")
    assert requests.get(f"{gateway.url}/topics", headers={"x-api-key": KEY}).json() == []
    assert produce(gateway.url, list(range(10))).status_code == 200


def test_the_projects_client_is_told_to_send_fewer_records_per_request(start_gateway):
    gateway = start_gateway(api_key=KEY, max_records_per_request=10)
    with pytest.raises(RestProxyError) as raised:
        client(gateway, api_key=KEY, records_per_request=11).produce(TOPIC, list(range(11)))
    assert raised.value.status == 413 and raised.value.error_code == 413
    assert "lower records_per_request" in str(raised.value)
    assert client(gateway, api_key=KEY, records_per_request=10).produce(TOPIC, list(range(25))).sent == 25


def test_a_body_too_large_is_refused_with_the_key_too(start_gateway):
    gateway = start_gateway(api_key=KEY, max_request_bytes=1000)
    assert_rest_error(produce(gateway.url, ["x" * 2000]), 413, 413, "Request Entity Too Large")


def test_an_oversized_record_fails_alone(start_gateway):
    gateway = start_gateway(api_key=KEY, max_record_bytes=100)
    offsets = produce(gateway.url, ["a", "x" * 200]).json()["offsets"]
    assert [o["error_code"] for o in offsets] == [None, 50002]


@pytest.mark.parametrize("topic", ["x" * 250, "bad%20name", "%2E%2E"])
def test_topic_names_are_kafkas(keyed_gateway, topic):
    assert_rest_error(produce(keyed_gateway.url, [1], topic=topic), 400, 40002, "Invalid topic name")


# -- the key stays secret ------------------------------------------------------------------------


def test_the_key_never_appears_in_the_gateways_log(start_gateway, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    gateway = start_gateway(api_key=KEY, max_records_per_request=2)
    for key in (KEY, WRONG_KEY, None):
        produce(gateway.url, [1], key=key)
        produce(gateway.url, [1, 2, 3], key=key)  # too many records
        produce(gateway.url, [1], key=key, topic="bad%20name")
        requests.get(f"{gateway.url}/status", headers={"x-api-key": key} if key else {})
    client(gateway, api_key=KEY).produce(TOPIC, [1])
    with pytest.raises(RestProxyError):
        client(gateway, api_key=WRONG_KEY).produce(TOPIC, [1])
    gateway.shutdown()
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert f"POST /topics/{TOPIC}" in logged and " 403 " in logged  # the requests were logged ...
    assert KEY not in logged and WRONG_KEY not in logged  # ... but no key, right or wrong
