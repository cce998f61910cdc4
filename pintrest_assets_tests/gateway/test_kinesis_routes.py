"""The gateway's Kinesis-proxy routes against the contract, on a real gateway and a real kinesalite.

What the routes acknowledge is read back from kinesalite with boto3 (GetRecords): a record's bytes
are the JSON text of the ``Data`` the client sent, under the partition key it sent.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from botocore.stub import Stubber

from pintrest_assets.kinesis import proxy_contract as kinesis_proxy
from pintrest_assets.gateway.kinesis import KinesisStack
from pintrest_assets.gateway.server import ROUTES
from pintrest_assets.kinesis.streams import kinesis_client, wait_until_active
from pintrest_assets.settings import ConfigError, Settings
from pintrest_assets_tests.gateway.helpers import wait_until
from pintrest_assets_tests.helpers import read_stream
from pintrest_assets_tests.net import free_port

# Tests marked kinesis run kinesalite (Node.js and npm); the others need neither.

USER_ID = f"r{uuid.uuid4().hex[:8]}"  # its own streams on the session's kinesalite
PIN = f"streaming-{USER_ID}-pin"
# Kinesis's documented limit, written out: the code's own constant must not define what is tested.
KINESIS_MAX_RECORD_BYTES = 1024 * 1024  # 1 MiB per record, data and partition key together
OPENAPI = Path(__file__).resolve().parents[2] / "deploy" / "api-gateway" / "kinesis-proxy.openapi.yaml"


@pytest.fixture(scope="module")
def stack(kinesalite):
    """The Kinesis of a gateway: the session's kinesalite as its endpoint, the three streams created.
    The tests' own reads go through the session's ``kinesis`` client (retrying, unlike the gateway's)."""
    stack = KinesisStack(kinesalite.endpoint_url, user_id=USER_ID)
    stack.open()
    yield stack
    stack.close()


@pytest.fixture
def gateway(start_gateway, stack):
    return start_gateway(kinesis=stack.client)


@pytest.fixture
def new_stream(gateway):
    """A new one-shard stream, created through the gateway's CreateStream route."""

    def make() -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        response = requests.post(f"{gateway.url}/streams/{name}", json={"ShardCount": 1})
        assert response.status_code == 200 and response.json() == {}, response.text
        return name

    return make


def assert_kinesis_error(response, status: int, error_type: str | None, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body.get("__type") == error_type, body
    assert set(body) == ({"__type", "message"} if error_type else {"message"})
    for fragment in fragments:
        assert fragment in body["message"], body


# -- the route table -------------------------------------------------------------------------------


def test_the_kinesis_routes_are_the_contracts_and_the_deployed_apis():
    served = {(r.method, r.template) for r in ROUTES if r.kind == "kinesis"}
    assert served == {(method, template) for method, template, _ in kinesis_proxy.ROUTES}
    assert all(r.media_type == "application/json" for r in ROUTES if r.kind == "kinesis")
    openapi = yaml.safe_load(OPENAPI.read_text())
    deployed = {(method.upper(), path) for path, ops in openapi["paths"].items() for method in ops}
    assert deployed == served


# -- ListStreams, DescribeStream, CreateStream -------------------------------------------------------


@pytest.mark.kinesis
def test_list_streams(gateway):
    response = requests.get(f"{gateway.url}/streams")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert {f"streaming-{USER_ID}-{t}" for t in ("pin", "geo", "user")} <= set(body["StreamNames"])
    assert body["HasMoreStreams"] is False and "ResponseMetadata" not in body


@pytest.mark.kinesis
def test_describe_stream(gateway):
    body = requests.get(f"{gateway.url}/streams/{PIN}").json()["StreamDescription"]
    assert (body["StreamName"], body["StreamStatus"]) == (PIN, "ACTIVE")
    assert [shard["ShardId"] for shard in body["Shards"]] == ["shardId-000000000000"]
    assert isinstance(body["StreamCreationTimestamp"], float)  # epoch seconds, as Kinesis's JSON has it

    missing = requests.get(f"{gateway.url}/streams/no-such-stream")
    assert_kinesis_error(missing, 400, "ResourceNotFoundException", "no-such-stream")


def active_shards(kinesis, name: str) -> int:
    """The stream's shard count once it is ACTIVE: CreateStream only starts creating it (CREATING, no
    shards yet), in Kinesis as in kinesalite, which moves it to ACTIVE on a timer."""
    wait_until_active(kinesis, [name], timeout=10)
    return len(kinesis.list_shards(StreamName=name)["Shards"])


@pytest.mark.kinesis
def test_create_stream(gateway, kinesis):
    name = f"test-{uuid.uuid4().hex[:12]}"
    assert requests.post(f"{gateway.url}/streams/{name}", json={"ShardCount": 2}).json() == {}
    assert active_shards(kinesis, name) == 2
    again = requests.post(f"{gateway.url}/streams/{name}", json={"ShardCount": 2})
    assert_kinesis_error(again, 400, "ResourceInUseException", name)

    # Without a ShardCount, API Gateway's template asks for 5 shards.
    default = f"test-{uuid.uuid4().hex[:12]}"
    assert requests.post(f"{gateway.url}/streams/{default}").status_code == 200
    assert active_shards(kinesis, default) == kinesis_proxy.DEFAULT_SHARD_COUNT


@pytest.mark.kinesis
@pytest.mark.parametrize("shards", [0, -1, "two", 1.5, True])
def test_create_stream_refuses_a_bad_shard_count(gateway, shards):
    response = requests.post(f"{gateway.url}/streams/test-bad", json={"ShardCount": shards})
    assert_kinesis_error(response, 400, "ValidationException", "ShardCount")


# -- PutRecord -------------------------------------------------------------------------------------


@pytest.mark.kinesis
def test_put_record_stores_the_json_text_of_data(gateway, kinesis, new_stream):
    stream = new_stream()
    data = {"index": 7, "title": "Ünïcødé 🎨", "follower_count": "26k", "tag_list": ["a", "b"], "x": None}
    body = kinesis_proxy.put_record_body(stream, data, "key-1")
    response = requests.put(f"{gateway.url}{kinesis_proxy.record_path(stream)}", json=body)

    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    answer = response.json()
    assert set(answer) <= {"ShardId", "SequenceNumber", "EncryptionType"}
    assert answer["ShardId"] == "shardId-000000000000" and answer["SequenceNumber"].isdigit()
    [record] = read_stream(kinesis, stream)
    assert record["Data"] == kinesis_proxy.record_bytes(data)  # not base64 of it: encoded once, by the proxy
    assert json.loads(record["Data"]) == data
    assert (record["PartitionKey"], record["SequenceNumber"]) == ("key-1", answer["SequenceNumber"])


@pytest.mark.kinesis
def test_put_record_takes_any_json_value_and_the_stream_from_the_path(gateway, kinesis, new_stream):
    stream = new_stream()
    for data in ("a string", 42, [1, 2], None):
        body = {"StreamName": "some-other-stream", "Data": data, "PartitionKey": "k"}
        assert requests.put(f"{gateway.url}/streams/{stream}/record", json=body).status_code == 200
    assert [r["Data"] for r in read_stream(kinesis, stream)] == [b'"a string"', b"42", b"[1,2]", b"null"]


@pytest.mark.kinesis
@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"PartitionKey": "k"}, "Data is missing"),
        ({"Data": {"a": 1}}, "PartitionKey must be a string of 1 to 256 characters"),
        ({"Data": {"a": 1}, "PartitionKey": ""}, "PartitionKey must be a string"),
        ({"Data": {"a": 1}, "PartitionKey": "k" * 257}, "257 characters"),
        ({"Data": {"a": 1}, "PartitionKey": 5}, "PartitionKey must be a string"),
        ({"Data": "x" * KINESIS_MAX_RECORD_BYTES, "PartitionKey": "k"}, "1 MiB"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_put_record_refuses_bodies_kinesis_would(gateway, body, fragment):
    response = requests.put(f"{gateway.url}/streams/{PIN}/record", json=body)
    assert_kinesis_error(response, 400, "ValidationException", fragment)


@pytest.mark.kinesis
def test_put_record_to_a_missing_stream(gateway):
    response = requests.put(f"{gateway.url}/streams/no-such-stream/record", json={"Data": 1, "PartitionKey": "k"})
    assert_kinesis_error(response, 400, "ResourceNotFoundException", "no-such-stream")


@pytest.mark.kinesis
def test_put_record_to_an_invalid_stream_name(gateway):
    response = requests.put(f"{gateway.url}/streams/bad%20name/record", json={"Data": 1, "PartitionKey": "k"})
    assert_kinesis_error(response, 400, "ValidationException", "not a valid stream name")


@pytest.mark.kinesis
def test_bodies_that_are_not_json_or_not_application_json(gateway):
    response = requests.put(
        f"{gateway.url}/streams/{PIN}/record", data=b'{"Data": ', headers={"Content-Type": "application/json"}
    )
    assert_kinesis_error(response, 400, None, "Could not parse request body into json")
    response = requests.put(
        f"{gateway.url}/streams/{PIN}/record",
        data=b'{"Data": NaN, "PartitionKey": "k"}',
        headers={"Content-Type": "application/json"},
    )
    assert_kinesis_error(response, 400, None, "Could not parse request body into json")
    response = requests.put(f"{gateway.url}/streams/{PIN}/record", data=b"{}", headers={"Content-Type": "text/plain"})
    assert_kinesis_error(response, 415, None, "Unsupported Media Type")
    # application/json with parameters, or no Content-Type at all, is JSON to API Gateway.
    body = json.dumps({"Data": 1, "PartitionKey": "k"}).encode()
    assert (
        requests.put(
            f"{gateway.url}/streams/{PIN}/record",
            data=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
        ).status_code
        == 200
    )
    assert requests.put(f"{gateway.url}/streams/{PIN}/record", data=body).status_code == 200  # fmt: skip


# -- PutRecords ------------------------------------------------------------------------------------


@pytest.mark.kinesis
def test_put_records_answers_one_entry_per_record_in_order(gateway, kinesis, new_stream):
    stream = new_stream()
    data = [{"index": i, "title": f"post {i}", "pad": "é" * i} for i in range(500)]
    keys = [str(uuid.uuid4()) for _ in data]
    response = requests.put(
        f"{gateway.url}{kinesis_proxy.records_path(stream)}", json=kinesis_proxy.put_records_body(list(zip(data, keys)))
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["FailedRecordCount"] == 0 and len(answer["Records"]) == 500
    assert kinesis_proxy.failed_entries(answer) == []
    assert all(set(e) == {"SequenceNumber", "ShardId"} for e in answer["Records"])

    stored = read_stream(kinesis, stream)
    assert [r["Data"] for r in stored] == [kinesis_proxy.record_bytes(d) for d in data]
    assert [r["PartitionKey"] for r in stored] == keys
    assert [r["SequenceNumber"] for r in stored] == [e["SequenceNumber"] for e in answer["Records"]]
    sequence_numbers = [int(e["SequenceNumber"]) for e in answer["Records"]]
    assert sequence_numbers == sorted(sequence_numbers) and len(set(sequence_numbers)) == 500


@pytest.mark.kinesis
def test_put_records_spreads_keys_over_shards(gateway, kinesis):
    name = f"test-{uuid.uuid4().hex[:12]}"
    requests.post(f"{gateway.url}/streams/{name}", json={"ShardCount": 3})
    records = [({"i": i}, str(uuid.uuid4())) for i in range(300)]
    answer = requests.put(f"{gateway.url}/streams/{name}/records", json=kinesis_proxy.put_records_body(records)).json()
    assert len({e["ShardId"] for e in answer["Records"]}) == 3
    assert sorted(json.loads(r["Data"])["i"] for r in read_stream(kinesis, name)) == list(range(300))


@pytest.mark.kinesis
@pytest.mark.parametrize(
    "body, error_type, fragment",
    [
        ({"records": []}, "ValidationException", "1 to 500 records, got 0"),
        ({"records": [{"data": 1, "partition-key": "k"}] * 501}, "ValidationException", "got 501"),
        ({"Records": [{"data": 1, "partition-key": "k"}]}, "ValidationException", '{"records": [{"data"'),
        ({"records": [{"data": 1, "partition-key": "k"}, {"partition-key": "k"}]}, "ValidationException", "records[1]"),
        ({"records": [{"data": 1}]}, "ValidationException", 'records[0]["partition-key"]'),
        ({"records": [{"data": "x" * KINESIS_MAX_RECORD_BYTES, "partition-key": "k"}]}, "ValidationException", "1 MiB"),
        ({"records": [{"data": "x" * 900_000, "partition-key": "k"}] * 6}, "InvalidArgumentException", "5 MiB"),
    ],
)  # fmt: skip
def test_put_records_refuses_bodies_kinesis_would(gateway, kinesis, body, error_type, fragment):
    before = len(read_stream(kinesis, PIN))
    response = requests.put(f"{gateway.url}/streams/{PIN}/records", json=body)
    assert_kinesis_error(response, 400, error_type, fragment)
    assert len(read_stream(kinesis, PIN)) == before  # nothing of a refused request is put


# -- Kinesis's errors, as API Gateway passes them on -------------------------------------------------


@pytest.fixture
def stubbed(start_gateway):
    """A gateway whose Kinesis client answers what the test stubs (botocore's Stubber)."""
    client = kinesis_client("http://127.0.0.1:9", "us-east-1", max_attempts=1)
    with Stubber(client) as stubber:
        yield start_gateway(kinesis=client), stubber


def test_throttling_comes_back_as_a_400_provisioned_throughput_exceeded(stubbed):
    gateway, stubber = stubbed
    message = "Rate exceeded for shard shardId-000000000000 in stream s under account 123456789012."
    stubber.add_client_error("put_record", "ProvisionedThroughputExceededException", message, http_status_code=400)
    response = requests.put(f"{gateway.url}/streams/s/record", json={"Data": 1, "PartitionKey": "k"})
    assert_kinesis_error(response, 400, "ProvisionedThroughputExceededException", message)


def test_per_record_failures_are_passed_back_as_kinesis_answered(stubbed):
    gateway, stubber = stubbed
    answer = {
        "FailedRecordCount": 1,
        "Records": [
            {"SequenceNumber": "49590338271490256608559692538361571095921575989136588898", "ShardId": "shardId-000000000000"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"},
        ],
    }  # fmt: skip
    stubber.add_response(
        "put_records",
        answer,
        {
            "StreamName": "s",
            "Records": [{"Data": b'{"a":1}', "PartitionKey": "k1"}, {"Data": b"[2]", "PartitionKey": "k2"}],
        },
    )
    body = kinesis_proxy.put_records_body([({"a": 1}, "k1"), ([2], "k2")])
    response = requests.put(f"{gateway.url}/streams/s/records", json=body)
    assert response.status_code == 200
    assert response.json() == answer
    assert kinesis_proxy.failed_entries(response.json()) == [
        (1, "ProvisionedThroughputExceededException", "Rate exceeded for shard")
    ]


def test_a_kinesis_5xx_comes_back_as_500(stubbed):
    gateway, stubber = stubbed
    stubber.add_client_error("put_records", "InternalFailure", "Internal service failure.", http_status_code=500)
    response = requests.put(f"{gateway.url}/streams/s/records", json={"records": [{"data": 1, "partition-key": "k"}]})
    assert_kinesis_error(response, 500, "InternalFailure", "Internal service failure.")


def test_kinesis_unreachable_is_a_502_naming_it(start_gateway):
    port = free_port()
    gateway = start_gateway(kinesis=kinesis_client(f"http://127.0.0.1:{port}", "us-east-1", max_attempts=1))
    response = requests.get(f"{gateway.url}/streams")
    assert_kinesis_error(response, 502, None, f"cannot reach Kinesis at http://127.0.0.1:{port}")


def test_kinesis_not_answering_in_time_is_a_504(start_gateway):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = kinesis_client(
            f"http://127.0.0.1:{silent.getsockname()[1]}", "us-east-1", max_attempts=1, read_timeout=0.3
        )
        gateway = start_gateway(kinesis=client)
        response = requests.get(f"{gateway.url}/streams")
    assert_kinesis_error(response, 504, None, "Endpoint request timed out")


def test_without_kinesis_the_routes_answer_503(start_gateway):
    gateway = start_gateway()
    for method, template, _ in kinesis_proxy.ROUTES:
        response = requests.request(method, gateway.url + template.replace("{stream-name}", PIN), json={})
        assert_kinesis_error(response, 503, None, "serves no Kinesis endpoint", "PINTREST_KINESIS_ENDPOINT_URL")
    assert gateway.status()["kinesis"] == {"endpoint": None, "ready": False, "error": None}
    assert requests.get(f"{gateway.url}/topics").status_code == 200  # the Kafka routes go on


@pytest.mark.kinesis
def test_the_api_key_guards_the_kinesis_routes(start_gateway, stack):
    gateway = start_gateway(kinesis=stack.client, host="127.0.0.1", api_key="k-123")
    forbidden = requests.put(f"{gateway.url}/streams/{PIN}/record", json={"Data": 1, "PartitionKey": "k"})
    assert forbidden.status_code == 403 and forbidden.json() == {"message": "Forbidden"}
    allowed = requests.put(
        f"{gateway.url}/streams/{PIN}/record", json={"Data": 1, "PartitionKey": "k"}, headers={"x-api-key": "k-123"}
    )
    assert allowed.status_code == 200


@pytest.mark.kinesis
def test_a_body_over_the_gateways_limit_is_refused_as_api_gateway_would(start_gateway, stack):
    gateway = start_gateway(kinesis=stack.client, max_request_bytes=1000)
    response = requests.put(
        f"{gateway.url}/streams/{PIN}/records", json={"records": [{"data": "x" * 2000, "partition-key": "k"}]}
    )
    assert_kinesis_error(response, 413, None, "Request Entity Too Large")


@pytest.mark.kinesis
def test_status_shows_the_kinesis_endpoint(gateway, stack):
    assert gateway.status()["kinesis"] == {"endpoint": stack.client_endpoint, "ready": True, "error": None}
    assert requests.get(f"{gateway.url}/status").json()["kinesis"]["ready"] is True


# -- the stack behind the routes ----------------------------------------------------------------


@pytest.mark.kinesis
def test_attach_starts_kinesis_behind_a_serving_gateway(start_gateway, tmp_path):
    gateway = start_gateway()
    stack = KinesisStack(None, user_id=USER_ID, kinesis_dir=tmp_path / "kinesis", local_port=free_port())
    try:
        stack.attach(gateway)
        first = requests.get(f"{gateway.url}/streams")  # kinesalite takes a second or two to start
        assert_kinesis_error(first, 503, None, "Kinesis is starting", "embedded kinesalite")
        assert first.headers["Retry-After"] == "1"
        wait_until(lambda: gateway.status()["kinesis"]["ready"], timeout=60)
        assert PIN in requests.get(f"{gateway.url}/streams").json()["StreamNames"]
        assert (tmp_path / "kinesis" / "kinesalite.pid").exists()
    finally:
        stack.close()
    assert not (tmp_path / "kinesis" / "kinesalite.pid").exists()


@pytest.mark.kinesis
def test_attach_that_fails_says_why_in_the_503(start_gateway, tmp_path):
    gateway = start_gateway()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    stack = KinesisStack(None, user_id=USER_ID, kinesis_dir=tmp_path / "kinesis", local_port=taken.getsockname()[1])
    try:
        stack.attach(gateway).join(60)
        response = requests.get(f"{gateway.url}/streams")
        assert_kinesis_error(response, 503, None, "no Kinesis behind this gateway", "PINTREST_KINESIS_LOCAL_PORT")
        assert "Retry-After" not in response.headers
    finally:
        stack.close()
        taken.close()


@pytest.mark.kinesis
def test_one_embedded_kinesis_per_home(tmp_path):
    first = KinesisStack(None, user_id=USER_ID, kinesis_dir=tmp_path / "kinesis", local_port=free_port())
    first.open()
    try:
        second = KinesisStack(None, user_id=USER_ID, kinesis_dir=first.kinesis_dir, local_port=free_port())
        with pytest.raises(ConfigError, match="PINTREST_HOME: another gateway runs the embedded Kinesis"):
            second.open()
        second.close()
    finally:
        first.close()


@pytest.mark.kinesis
def test_a_kinesalite_left_behind_by_a_killed_gateway_is_ended_and_its_records_kept(tmp_path):
    port = free_port()
    first = KinesisStack(None, user_id=USER_ID, kinesis_dir=tmp_path / "kinesis", local_port=port)
    client = first.open()
    sequence = client.put_record(StreamName=PIN, Data=b'{"kept":1}', PartitionKey="k")["SequenceNumber"]
    # The gateway is killed: the lock goes with its process, its kinesalite stays up.
    orphan = first.local.process
    first._data_lock.release()
    first._data_lock, first.local = None, None

    second = KinesisStack(None, user_id=USER_ID, kinesis_dir=tmp_path / "kinesis", local_port=port)
    try:
        client = second.open()
        orphan.wait(timeout=10)  # ended by the second stack (reaped here: it is this process's child)
        assert second.local.process.pid != orphan.pid
        [record] = read_stream(client, PIN)
        assert (record["Data"], record["SequenceNumber"]) == (b'{"kept":1}', sequence)
    finally:
        second.close()


def test_settings_choose_the_endpoint(tmp_path):
    embedded = KinesisStack.from_settings(
        Settings.from_env({"PINTREST_HOME": str(tmp_path), "PINTREST_KINESIS_LOCAL_PORT": "4599"})
    )
    assert embedded.embedded and embedded.client_endpoint == "http://127.0.0.1:4599"
    assert embedded.data_dir == tmp_path / "kinesis" / "data"
    aws = KinesisStack.from_settings(Settings.from_env({"PINTREST_KINESIS_ENDPOINT_URL": "aws"}))
    assert not aws.embedded and aws.client_endpoint is None
    regional = KinesisStack.from_settings(
        Settings.from_env({"PINTREST_KINESIS_ENDPOINT_URL": "https://kinesis.eu-west-1.amazonaws.com"})
    )
    assert (regional.client_endpoint, regional.region) == ("https://kinesis.eu-west-1.amazonaws.com", "eu-west-1")
    assert re.search("Kinesis at https://kinesis.eu-west-1", regional.describe())


@pytest.mark.kinesis
def test_the_routes_serve_many_threads(gateway, kinesis, new_stream):
    stream = new_stream()
    errors = []

    def put(worker: int) -> None:
        session = requests.Session()
        for batch in range(5):
            body = kinesis_proxy.put_records_body(
                [({"w": worker, "b": batch, "i": i}, f"{worker}-{i}") for i in range(50)]
            )
            response = session.put(f"{gateway.url}/streams/{stream}/records", json=body)
            if response.status_code != 200 or response.json()["FailedRecordCount"]:
                errors.append(response.text)

    threads = [threading.Thread(target=put, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(read_stream(kinesis, stream)) == 6 * 5 * 50
