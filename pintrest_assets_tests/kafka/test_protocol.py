"""The v2 produce protocol as pure functions: what becomes a line, what is refused and how."""

import base64
import json

import pytest

from pintrest_assets.kafka.protocol import (
    RejectedRecord,
    RestError,
    parse_produce_request,
    produce_response,
)

JSON_V2 = "application/vnd.kafka.json.v2+json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"


def parse(doc, content_type=JSON_V2, max_record_bytes=1_048_576):
    return parse_produce_request(json.dumps(doc).encode(), content_type, max_record_bytes)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_values_become_compact_utf8_json_lines_keys_dropped():
    lines = parse(
        {
            "records": [
                {"value": {"index": 7, "title": "Café ☕", "tags": ["a", "b"]}, "key": "k"},
                {"value": "line\nbreak", "partition": 0},
                {"value": 3.5},
            ]
        }
    )
    assert lines == [
        '{"index":7,"title":"Café ☕","tags":["a","b"]}\n'.encode(),
        b'"line\\nbreak"\n',
        b"3.5\n",
    ]


@pytest.mark.parametrize(
    "content_type",
    [JSON_V2, "application/vnd.kafka.v2+json", "application/json", "Application/JSON; charset=utf-8"],
)
def test_json_content_types_accepted(content_type):
    assert parse({"records": [{"value": 1}]}, content_type) == [b"1\n"]


def test_binary_values_are_decoded_and_land_as_json():
    doc = {"records": [{"value": b64(b'{"ind": 1,  "country": "Aruba"}'), "key": b64(b"k")}]}
    assert parse(doc, BINARY_V2) == [b'{"ind":1,"country":"Aruba"}\n']


@pytest.mark.parametrize(
    "body, content_type, status, error_code, words",
    [
        (b'{"records": [{"value": 1}]}', "text/plain", 415, 415, "Unsupported Media Type"),
        (b'{"records": [{"value": 1}]}', None, 415, 415, "no Content-Type"),
        (b'{"records": [{"value": 1}]}', "application/vnd.kafka.avro.v2+json", 415, 415, "avro"),
        (b'{"records": [', JSON_V2, 422, 42203, "Conversion of JSON to Object failed"),
        (b'{"records": [{"value": NaN}]}', JSON_V2, 422, 42203, "NaN"),
        (b"\xff\xfe", JSON_V2, 422, 42203, "Conversion of JSON"),
        (b"[1, 2]", JSON_V2, 422, 42206, "Expected an object"),
        (b"{}", JSON_V2, 422, 422, "records may not be empty"),
        (b'{"records": []}', JSON_V2, 422, 422, "records may not be empty"),
        (b'{"records": {"value": 1}}', JSON_V2, 422, 42206, "records must be an array"),
        (b'{"records": [{"value": 1}, 2]}', JSON_V2, 422, 42206, "records[1] must be an object"),
        (b'{"records": [{"key": 1}]}', JSON_V2, 422, 42206, "records[0].value is missing or null"),
        (b'{"records": [{"value": null}]}', JSON_V2, 422, 42206, "records[0].value is missing or null"),
        (b'{"records": [{"value": 1, "partition": "0"}]}', JSON_V2, 422, 42206, "partition must be an integer"),
        (b'{"records": [{"value": 1, "partition": 3}]}', JSON_V2, 404, 40402, "Partition not found"),
        (b'{"records": [{"value": "%%%"}]}', BINARY_V2, 422, 42206, "records[0].value is not valid base64"),
        (b'{"records": [{"value": 12}]}', BINARY_V2, 422, 42206, "must be a base64 string"),
        (b'{"records": [{"value": "aGVsbG8="}]}', BINARY_V2, 422, 42206, "does not decode to JSON"),
        (b'{"records": [{"value": "MQ==", "key": "%%"}]}', BINARY_V2, 422, 42206, "records[0].key is not valid"),
    ],
)
def test_request_level_errors(body, content_type, status, error_code, words):
    with pytest.raises(RestError) as info:
        parse_produce_request(body, content_type, 1_048_576)
    assert (info.value.status, info.value.error_code) == (status, error_code)
    assert words in info.value.message
    assert info.value.body() == {"error_code": error_code, "message": info.value.message}


def test_an_oversized_record_is_refused_alone():
    big = "x" * 200
    results = parse({"records": [{"value": "small"}, {"value": big}, {"value": 1}]}, max_record_bytes=100)
    assert results[0] == b'"small"\n' and results[2] == b"1\n"
    assert isinstance(results[1], RejectedRecord) and results[1].error_code == 50002
    assert "202 bytes" in results[1].error and "100" in results[1].error


def test_the_key_counts_towards_the_record_size():
    doc = {"records": [{"value": "v", "key": "k" * 100}]}
    assert isinstance(parse(doc, max_record_bytes=100)[0], RejectedRecord)
    assert parse(doc, max_record_bytes=110) == [b'"v"\n']
    binary = {"records": [{"value": b64(b"1" * 60), "key": b64(b"k" * 60)}]}
    assert isinstance(parse(binary, BINARY_V2, max_record_bytes=100)[0], RejectedRecord)


def test_lone_surrogates_are_escaped_not_written_as_invalid_utf8():
    [line] = parse_produce_request(b'{"records": [{"value": "a\\ud800b"}]}', JSON_V2, 1000)
    assert line == b'"a\\ud800b"\n'
    assert json.loads(line) == "a\ud800b"


def test_produce_response_shape_one_entry_per_record_in_order():
    rejected = RejectedRecord(50002, "too large")
    assert produce_response([41, rejected, 42]) == {
        "key_schema_id": None,
        "value_schema_id": None,
        "offsets": [
            {"partition": 0, "offset": 41, "error_code": None, "error": None},
            {"partition": None, "offset": None, "error_code": 50002, "error": "too large"},
            {"partition": 0, "offset": 42, "error_code": None, "error": None},
        ],
    }
