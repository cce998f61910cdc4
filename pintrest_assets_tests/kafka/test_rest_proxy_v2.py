"""The REST Proxy v2 contract: what the client writes, the gateway reads, and back."""

from pintrest_assets.kafka.protocol import RejectedRecord, parse_produce_request, produce_response
from pintrest_assets.kafka.rest_proxy_v2 import JSON_RECORDS, KAFKA_ERROR, offset_entries, produce_body


def test_a_client_body_is_read_by_the_gateway_as_the_same_lines():
    values = [b'{"index":1,"title":"caf\xc3\xa9"}', b"[1,2]", b'"text"']
    lines = parse_produce_request(produce_body(values), JSON_RECORDS, max_record_bytes=1024)
    assert lines == [value + b"\n" for value in values]


def test_a_gateway_answer_is_read_by_the_client_entry_by_entry():
    answer = produce_response([7, RejectedRecord(KAFKA_ERROR, "too large"), 8])
    entries = offset_entries(answer)
    assert [(e["offset"], e["error_code"]) for e in entries] == [(7, None), (None, KAFKA_ERROR), (8, None)]
    assert offset_entries({"error_code": 40401, "message": "Topic not found."}) is None
