"""The Kafka REST Proxy API v2 produce contract, shared by the client resource and the local gateway.

Media types, Confluent's error codes, the paths and the request and response bodies are defined
here once: ``kafka/client.py`` builds requests and reads answers with them, and
``gateway/`` parses requests and builds answers with them.

Error codes: 40002 bad request (invalid topic name), 40401 topic not found, 40402 partition not
found, 42203 body is not JSON, 42206 payload of the wrong shape, 422 empty ``records``, 50002
non-retriable per-record Kafka error (record too large), 50003 retriable Kafka error, 50302
broker not available. Plain HTTP errors (404 unknown path, 405, 411, 413, 415) carry the status
as their error code, as the proxy's own framework does.
"""

from __future__ import annotations

from collections.abc import Sequence

# Requests: records whose values are JSON (the original's), or base64 bytes.
JSON_RECORDS = "application/vnd.kafka.json.v2+json"
BINARY_RECORDS = "application/vnd.kafka.binary.v2+json"
# Answers, and what clients accept.
V2_RESPONSE = "application/vnd.kafka.v2+json"
# What the proxy reads as JSON-valued records.
JSON_CONTENT_TYPES = frozenset({JSON_RECORDS, V2_RESPONSE, "application/json"})

KAFKA_BAD_REQUEST = 40002
TOPIC_NOT_FOUND = 40401
PARTITION_NOT_FOUND = 40402
JSON_CONVERSION_FAILED = 42203
INVALID_PAYLOAD = 42206
KAFKA_ERROR = 50002
KAFKA_RETRIABLE_ERROR = 50003
BROKER_NOT_AVAILABLE = 50302

# A record answered with this code inside a 200 may be sent again on its own.
RETRIABLE_RECORD_ERROR = KAFKA_RETRIABLE_ERROR
# A whole request answered with these may be sent again.
RETRIABLE_REQUEST_ERRORS = frozenset({KAFKA_RETRIABLE_ERROR, BROKER_NOT_AVAILABLE})


def topic_path(topic: str) -> str:
    """``/topics/<topic>``: POST produces to the topic, GET describes it."""
    return f"/topics/{topic}"


def produce_body(encoded_values: Sequence[bytes]) -> bytes:
    """The body of a produce request for values already encoded as compact JSON."""
    return b'{"records":[' + b",".join(b'{"value":' + value + b"}" for value in encoded_values) + b"]}"


def offset_entry(offset: int) -> dict:
    """A produce answer's entry for a record written at ``offset`` of partition 0."""
    return {"partition": 0, "offset": offset, "error_code": None, "error": None}


def error_entry(error_code: int, error: str) -> dict:
    """A produce answer's entry for a record refused on its own."""
    return {"partition": None, "offset": None, "error_code": error_code, "error": error}


def produce_response(entries: Sequence[dict]) -> dict:
    """The produce answer: one entry per input record, in order."""
    return {"key_schema_id": None, "value_schema_id": None, "offsets": list(entries)}


def offset_entries(body) -> list[dict] | None:
    """The entries of a produce answer, or None when ``body`` is not one."""
    entries = body.get("offsets") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return None
    return entries


def error_body(error_code: int, message: str) -> dict:
    """The body of a request-level error answer."""
    return {"error_code": error_code, "message": message}


def read_error_body(body) -> tuple[int | None, str]:
    """``(error_code, message)`` of an error answer: the proxy's JSON or API Gateway's (``Message``)."""
    if not isinstance(body, dict):
        return None, str(body)[:200]
    code = body.get("error_code")
    return (code if isinstance(code, int) else None), str(body.get("message") or body.get("Message") or "")
