"""The gateway's side of the Kafka REST Proxy v2 produce contract (``rest_proxy_v2``): parsing
requests, refusing what the proxy refuses, and building its answers.

Pure functions over bytes and dicts, so every rule here is testable without a server.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from pintrest_assets.kafka import rest_proxy_v2
from pintrest_assets.kafka.rest_proxy_v2 import (
    BINARY_RECORDS,
    INVALID_PAYLOAD,
    JSON_CONTENT_TYPES,
    JSON_CONVERSION_FAILED,
    KAFKA_BAD_REQUEST,
    KAFKA_ERROR,
    PARTITION_NOT_FOUND,
    TOPIC_NOT_FOUND,
    error_body,
    error_entry,
    offset_entry,
)

# Compact, one line per document, UTF-8 as the connector's JsonFormat writes it.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_COMPACT_ASCII = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


class RestError(Exception):
    """A request-level failure: the HTTP status and the ``{"error_code", "message"}`` body."""

    def __init__(self, status: int, error_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.error_code, self.message)


def topic_not_found() -> RestError:
    return RestError(404, TOPIC_NOT_FOUND, "Topic not found.")


def partition_not_found() -> RestError:
    return RestError(404, PARTITION_NOT_FOUND, "Partition not found.")


def request_too_large(what: str, limit: str) -> RestError:
    """413, the status as the error code, as the proxy's framework answers a request it will not take."""
    return RestError(413, 413, f"HTTP 413 Request Entity Too Large: {what}, the limit is {limit}")


def invalid_topic_name(topic: str) -> RestError:
    return RestError(
        400,
        KAFKA_BAD_REQUEST,
        f"Invalid topic name {topic!r}: Kafka topic names are 1-249 characters of [a-zA-Z0-9._-], "
        "and not '.' or '..'.",
    )


@dataclass(frozen=True)
class RejectedRecord:
    """A record refused on its own: it gets an error entry in a 200 response, the others land."""

    error_code: int
    error: str


def parse_produce_request(
    body: bytes, content_type: str | None, max_record_bytes: int, max_records: int | None = None
) -> list[bytes | RejectedRecord]:
    """The lines to append, one per input record in order, or why a record is refused.

    A line is the record value as compact JSON plus a newline: exactly what the sink lands.
    Anything wrong with the request as a whole raises ``RestError`` before any record is kept;
    more than ``max_records`` records is a request too large (413).
    """
    binary = _embedded_format(content_type) == "binary"
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RestError(422, JSON_CONVERSION_FAILED, f"Conversion of JSON to Object failed: {exc}") from None
    if not isinstance(doc, dict):
        raise RestError(422, INVALID_PAYLOAD, 'Payload error. Expected an object: {"records": [...]}')
    records = doc.get("records")
    if records is None or records == []:
        raise RestError(422, 422, "records may not be empty")
    if not isinstance(records, list):
        raise RestError(422, INVALID_PAYLOAD, "Payload error. records must be an array")
    if max_records is not None and len(records) > max_records:
        raise request_too_large(f"{len(records)} records", f"{max_records} records per request")
    return [_parse_record(i, record, binary, max_record_bytes) for i, record in enumerate(records)]


def produce_response(results: list[int | RejectedRecord]) -> dict:
    """The v2 produce response: one offsets entry per input record, in order."""
    return rest_proxy_v2.produce_response(
        [error_entry(r.error_code, r.error) if isinstance(r, RejectedRecord) else offset_entry(r) for r in results]
    )


def topic_metadata(name: str) -> dict:
    return {"name": name, "configs": {}, "partitions": [partition_metadata(0)]}


def partition_metadata(partition: int) -> dict:
    return {
        "partition": partition,
        "leader": 0,
        "replicas": [{"broker": 0, "leader": True, "in_sync": True}],
    }


def _embedded_format(content_type: str | None) -> str:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in JSON_CONTENT_TYPES:
        return "json"
    if media_type == BINARY_RECORDS:
        return "binary"
    raise RestError(
        415,
        415,
        f"HTTP 415 Unsupported Media Type: {media_type or 'no Content-Type'}; "
        f"send application/vnd.kafka.json.v2+json or {BINARY_RECORDS}",
    )


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _parse_record(i: int, record, binary: bool, max_record_bytes: int) -> bytes | RejectedRecord:
    if not isinstance(record, dict):
        raise RestError(422, INVALID_PAYLOAD, f"Payload error. records[{i}] must be an object")
    partition = record.get("partition")
    if partition is not None:
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise RestError(422, INVALID_PAYLOAD, f"Payload error. records[{i}].partition must be an integer")
        if partition != 0:
            raise partition_not_found()
    if record.get("value") is None:
        # The sink lands values only; a null value (a tombstone) would be an empty line.
        raise RestError(
            422, INVALID_PAYLOAD, f"Payload error. records[{i}].value is missing or null; the S3 sink lands values"
        )
    if binary:
        key_size = len(_base64(i, "key", record["key"])) if record.get("key") is not None else 0
        raw = _base64(i, "value", record["value"])
        try:
            value = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            raise RestError(
                422,
                INVALID_PAYLOAD,
                f"Payload error. records[{i}].value does not decode to JSON; the S3 sink lands JSON lines",
            ) from None
        size = key_size + len(raw)
    else:
        value = record["value"]
        size = len(_encode(record["key"])) if record.get("key") is not None else 0
    line = _encode(value) + b"\n"
    if not binary:
        size += len(line) - 1
    if size > max_record_bytes:
        return RejectedRecord(
            KAFKA_ERROR,
            f"The message is {size} bytes when serialized which is larger than {max_record_bytes}, "
            "the maximum record size.",
        )
    return line


def _base64(i: int, field: str, text) -> bytes:
    if not isinstance(text, str):
        raise RestError(422, INVALID_PAYLOAD, f"Payload error. records[{i}].{field} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RestError(422, INVALID_PAYLOAD, f"Payload error. records[{i}].{field} is not valid base64") from None


def _encode(value) -> bytes:
    try:
        return _COMPACT.encode(value).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escape it rather than write invalid UTF-8
        return _COMPACT_ASCII.encode(value).encode("ascii")
