"""The REST API over HTTP: response shapes, status codes and error bodies, as a v2 client sees them."""

import time

import pytest
import requests

from pintrest_assets_tests.gateway.helpers import BINARY_V2, JSON_V2, landed_objects, produce, wait_until

V2_RESPONSE = "application/vnd.kafka.v2+json"


def assert_error(response: requests.Response, status: int, error_code: int, words: str = ""):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == V2_RESPONSE
    body = response.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == error_code
    assert words in body["message"]


def test_produce_answers_one_offset_per_record_in_order(gateway):
    first = produce(gateway.url, "u.pin", [{"index": 1}, {"index": 2}])
    assert first.status_code == 200
    assert first.headers["Content-Type"] == V2_RESPONSE
    assert first.json() == {
        "key_schema_id": None,
        "value_schema_id": None,
        "offsets": [
            {"partition": 0, "offset": 0, "error_code": None, "error": None},
            {"partition": 0, "offset": 1, "error_code": None, "error": None},
        ],
    }
    second = requests.post(
        f"{gateway.url}/topics/u.pin/partitions/0",
        json={"records": [{"value": {"index": 3}}]},
        headers={"Content-Type": JSON_V2},
    )
    assert [o["offset"] for o in second.json()["offsets"]] == [2]
    other_topic = produce(gateway.url, "u.geo", [{"ind": 1}])
    assert other_topic.json()["offsets"][0]["offset"] == 0  # offsets are per topic


def test_binary_records_land_as_their_decoded_json(gateway, bucket):
    response = requests.post(
        f"{gateway.url}/topics/u.user",
        json={"records": [{"value": "eyJpbmQiOiAxfQ==", "key": None}]},  # {"ind": 1}
        headers={"Content-Type": BINARY_V2},
    )
    assert response.json()["offsets"][0]["offset"] == 0
    gateway.shutdown()
    assert landed_objects(bucket, "u.user") == [(0, [{"ind": 1}])]


def test_an_oversized_record_fails_alone_in_a_200(start_gateway, bucket):
    gateway = start_gateway(max_record_bytes=1000)
    response = produce(gateway.url, "u.pin", ["a", "x" * 2000, "b"])
    assert response.status_code == 200
    offsets = response.json()["offsets"]
    assert [o["offset"] for o in offsets] == [0, None, 1]
    assert offsets[1]["partition"] is None and offsets[1]["error_code"] == 50002
    assert "larger than 1000" in offsets[1]["error"]
    gateway.shutdown()
    assert landed_objects(bucket, "u.pin") == [(0, ["a", "b"])]


def test_topics_and_metadata(gateway):
    assert requests.get(f"{gateway.url}/topics").json() == []
    produce(gateway.url, "u.pin", [1])
    produce(gateway.url, "u.geo", [1])
    listing = requests.get(f"{gateway.url}/topics")
    assert listing.headers["Content-Type"] == V2_RESPONSE
    assert listing.json() == ["u.geo", "u.pin"]
    partition = {"partition": 0, "leader": 0, "replicas": [{"broker": 0, "leader": True, "in_sync": True}]}
    assert requests.get(f"{gateway.url}/topics/u.pin").json() == {
        "name": "u.pin",
        "configs": {},
        "partitions": [partition],
    }
    assert requests.get(f"{gateway.url}/topics/u.pin/partitions").json() == [partition]
    assert requests.get(f"{gateway.url}/topics/u.pin/partitions/0").json() == partition
    assert_error(requests.get(f"{gateway.url}/topics/u.nothing"), 404, 40401, "Topic not found")
    assert_error(requests.get(f"{gateway.url}/topics/u.pin/partitions/1"), 404, 40402, "Partition not found")


@pytest.mark.parametrize(
    "content_type, body, status, error_code, words",
    [
        ("text/plain", '{"records": [{"value": 1}]}', 415, 415, "Unsupported Media Type"),
        (JSON_V2, '{"records": [{"value": 1}', 422, 42203, "Conversion of JSON to Object failed"),
        (JSON_V2, '{"records": []}', 422, 422, "records may not be empty"),
        (JSON_V2, '{"value": 1}', 422, 422, "records may not be empty"),
        (JSON_V2, '{"records": [{"value": null}]}', 422, 42206, "value is missing or null"),
        (BINARY_V2, '{"records": [{"value": "not base64!"}]}', 422, 42206, "not valid base64"),
    ],
)
def test_bad_requests_are_refused_with_their_code_and_nothing_is_kept(
    gateway, content_type, body, status, error_code, words
):
    response = requests.post(f"{gateway.url}/topics/u.pin", data=body, headers={"Content-Type": content_type})
    assert_error(response, status, error_code, words)
    assert requests.get(f"{gateway.url}/topics").json() == []  # not even auto-created
    assert produce(gateway.url, "u.pin", [1]).json()["offsets"][0]["offset"] == 0


def test_a_valid_record_after_an_invalid_one_is_not_kept(gateway):
    body = {"records": [{"value": 1}, {"value": None}]}
    assert_error(requests.post(f"{gateway.url}/topics/u.pin", json=body, headers={"Content-Type": JSON_V2}), 422, 42206)
    assert produce(gateway.url, "u.pin", [2]).json()["offsets"][0]["offset"] == 0


@pytest.mark.parametrize("topic", ["bad%20name", "a%2Fb", "%2E%2E", "x" * 250, "caf%C3%A9"])
def test_invalid_topic_names_are_a_bad_request(gateway, topic):
    assert_error(produce(gateway.url, topic, [1]), 400, 40002, "Invalid topic name")
    assert_error(requests.get(f"{gateway.url}/topics/{topic}"), 400, 40002, "Invalid topic name")


def test_partitions_other_than_zero_do_not_exist(gateway):
    produce(gateway.url, "u.pin", [1])
    for path in ("/topics/u.pin/partitions/1", "/topics/u.pin/partitions/x"):
        response = requests.post(
            gateway.url + path, json={"records": [{"value": 1}]}, headers={"Content-Type": JSON_V2}
        )
        assert_error(response, 404, 40402, "Partition not found")
    response = requests.post(
        f"{gateway.url}/topics/u.pin",
        json={"records": [{"value": 1, "partition": 2}]},
        headers={"Content-Type": JSON_V2},
    )
    assert_error(response, 404, 40402)


def test_unknown_topics_are_refused_when_auto_create_is_off(start_gateway):
    gateway = start_gateway(auto_create_topics=False, topics=["u.pin"])
    assert_error(produce(gateway.url, "u.geo", [1]), 404, 40401, "Topic not found")
    assert_error(
        requests.post(
            f"{gateway.url}/topics/u.geo/partitions/1",
            json={"records": [{"value": 1}]},
            headers={"Content-Type": JSON_V2},
        ),
        404,
        40401,
    )
    assert produce(gateway.url, "u.pin", [1]).status_code == 200
    assert requests.get(f"{gateway.url}/topics").json() == ["u.pin"]


def test_an_oversized_request_is_refused_before_it_is_read(start_gateway):
    gateway = start_gateway(max_request_bytes=10_000)
    session = requests.Session()
    assert_error(produce(gateway.url, "u.pin", ["x" * 20_000], session=session), 413, 413, "20")
    # The client can carry on (on a new connection: the server closed the old one).
    assert produce(gateway.url, "u.pin", ["small"], session=session).status_code == 200


def test_unknown_paths_and_wrong_methods(gateway):
    assert_error(requests.get(f"{gateway.url}/nothing/here"), 404, 404, "Not Found")
    assert_error(requests.get(f"{gateway.url}/topics/u.pin/offsets"), 404, 404)
    response = requests.delete(f"{gateway.url}/topics/u.pin")
    assert_error(response, 405, 405, "Method Not Allowed")
    assert response.headers["Allow"] == "GET, POST"
    assert_error(requests.post(f"{gateway.url}/topics", json={}), 405, 405)
    assert_error(requests.put(f"{gateway.url}/status"), 405, 405)


def test_chunked_bodies_are_refused(gateway):
    chunks = iter([b'{"records": [{"value": 1}]}'])
    response = requests.post(f"{gateway.url}/topics/u.pin", data=chunks, headers={"Content-Type": JSON_V2})
    assert_error(response, 411, 411, "Content-Length")


def test_status_reports_offsets_and_what_has_landed(start_gateway, bucket):
    gateway = start_gateway(flush_size=2, rotate_interval_ms=60_000)
    produce(gateway.url, "u.pin", [1, 2, 3])

    def status_once_a_file_landed():
        status = requests.get(f"{gateway.url}/status").json()
        return status if status["topics"]["u.pin"]["landed_offset"] == 2 else None

    status = wait_until(status_once_a_file_landed)
    assert status["bucket"] == bucket.url
    assert status["topics"]["u.pin"] == {
        "next_offset": 3,
        "landed_offset": 2,
        "pending": 1,
        "objects_landed": 1,
        "last_error": None,
    }


def test_keep_alive_connections_serve_many_requests_and_do_not_block_shutdown(gateway, bucket):
    session = requests.Session()
    for i in range(5):
        assert produce(gateway.url, "u.pin", [i], session=session).status_code == 200
    started = time.monotonic()
    assert gateway.shutdown(timeout=20) == 0
    assert time.monotonic() - started < 10  # the idle connection the session holds is closed, not waited for
    assert landed_objects(bucket, "u.pin") == [(0, [0, 1, 2, 3, 4])]
