"""The API Gateway Kinesis-proxy contract, shared by the client resource and the local gateway.

API Gateway's "AWS service" integration maps each route to one Kinesis action. A client sends
``application/json``; the integration's request template turns the body into the action's
request, and the answer is Kinesis's own:

| route | action | client body |
|---|---|---|
| ``GET /streams`` | ListStreams | |
| ``GET /streams/{stream-name}`` | DescribeStream | |
| ``POST /streams/{stream-name}`` | CreateStream | ``{"ShardCount": n}`` |
| ``PUT /streams/{stream-name}/record`` | PutRecord | ``{"StreamName", "Data", "PartitionKey"}`` |
| ``PUT /streams/{stream-name}/records`` | PutRecords | ``{"records": [{"data", "partition-key"}]}`` |

The record's bytes are the JSON text of ``Data`` (the template is
``$util.base64Encode($input.json('$.Data'))``): a client sends the post as a JSON value, never
base64 (that would encode it twice).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

CONTENT_TYPE = "application/json"

# Kinesis's limits for PutRecords.
MAX_RECORDS_PER_REQUEST = 500
MAX_RECORD_BYTES = 1024 * 1024  # data and partition key together
MAX_REQUEST_BYTES = 5 * 1024 * 1024

# Per-record errors worth sending again (the others are final).
RETRIABLE_RECORD_ERRORS = frozenset({"ProvisionedThroughputExceededException", "InternalFailure"})
THROTTLED = "ProvisionedThroughputExceededException"

# Routes as (method, path template, Kinesis action).
ROUTES = (
    ("GET", "/streams", "ListStreams"),
    ("GET", "/streams/{stream-name}", "DescribeStream"),
    ("POST", "/streams/{stream-name}", "CreateStream"),
    ("PUT", "/streams/{stream-name}/record", "PutRecord"),
    ("PUT", "/streams/{stream-name}/records", "PutRecords"),
)


def stream_path(stream: str) -> str:
    return f"/streams/{stream}"


def record_path(stream: str) -> str:
    """PUT: one record (PutRecord)."""
    return f"/streams/{stream}/record"


def records_path(stream: str) -> str:
    """PUT: many records (PutRecords)."""
    return f"/streams/{stream}/records"


def put_record_body(stream: str, data, partition_key: str) -> dict:
    """The client's PutRecord body: ``data`` is the record as a JSON value."""
    return {"StreamName": stream, "Data": data, "PartitionKey": partition_key}


def put_records_body(records: Sequence[tuple[object, str]]) -> dict:
    """The client's PutRecords body for ``(data, partition key)`` pairs."""
    return {"records": [{"data": data, "partition-key": key} for data, key in records]}


def record_bytes(data) -> bytes:
    """The bytes Kinesis stores for ``data``: its JSON text, as the integration template makes it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def failed_entries(response: dict) -> list[tuple[int, str, str]]:
    """``(index, error code, message)`` of each record a PutRecords answer refused."""
    return [
        (i, entry["ErrorCode"], entry.get("ErrorMessage", ""))
        for i, entry in enumerate(response.get("Records", []))
        if entry.get("ErrorCode")
    ]

