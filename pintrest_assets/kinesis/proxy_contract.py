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
base64 (that would encode it twice). The stream is the path's ``{stream-name}``: the templates
take ``StreamName`` from the path, never from the body.

Answers: 200 with Kinesis's own JSON (PutRecord ``{"ShardId", "SequenceNumber"}``; PutRecords
``{"FailedRecordCount", "Records": [{"SequenceNumber", "ShardId"} | {"ErrorCode",
"ErrorMessage"}]}``, one entry per record in order); a Kinesis 4xx comes back as 400 and a 5xx as
500 with Kinesis's body ``{"__type", "message"}`` (throttling is a 400
``ProvisionedThroughputExceededException``); API Gateway's own errors have ``{"message"}`` only
(403 Forbidden without the API key, 403 Missing Authentication Token for a path it does not
serve, 429 Too Many Requests, 502, 504 Endpoint request timed out).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

CONTENT_TYPE = "application/json"

# Kinesis's limits for PutRecords.
MAX_RECORDS_PER_REQUEST = 500
MAX_RECORD_BYTES = 1024 * 1024  # data and partition key together
MAX_REQUEST_BYTES = 5 * 1024 * 1024

MAX_PARTITION_KEY_CHARS = 256
# What API Gateway's CreateStream template puts when the body has no ShardCount.
DEFAULT_SHARD_COUNT = 5

# Per-record errors worth sending again (the others are final).
RETRIABLE_RECORD_ERRORS = frozenset({"ProvisionedThroughputExceededException", "InternalFailure"})
THROTTLED = "ProvisionedThroughputExceededException"
# Request-level errors (HTTP 400 with this ``__type``) worth sending again, after a wait:
# throttling of the data plane, of the control plane, and of KMS for an encrypted stream.
RETRIABLE_REQUEST_ERRORS = frozenset({THROTTLED, "LimitExceededException", "KMSThrottlingException"})
VALIDATION = "ValidationException"
NOT_FOUND = "ResourceNotFoundException"

# Kinesis's rule for stream names.
_STREAM_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")

# Routes as (method, path template, Kinesis action).
ROUTES = (
    ("GET", "/streams", "ListStreams"),
    ("GET", "/streams/{stream-name}", "DescribeStream"),
    ("POST", "/streams/{stream-name}", "CreateStream"),
    ("PUT", "/streams/{stream-name}/record", "PutRecord"),
    ("PUT", "/streams/{stream-name}/records", "PutRecords"),
)


def is_valid_stream_name(name: str) -> bool:
    """Kinesis accepts 1-128 characters of ``[a-zA-Z0-9_.-]``."""
    return bool(_STREAM_NAME.match(name))


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


def record_entries(response) -> list[dict] | None:
    """The per-record entries of a PutRecords answer, or None when ``response`` is not one."""
    entries = response.get("Records") if isinstance(response, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return None
    return entries


def error_body(error_type: str | None, message: str) -> dict:
    """An error answer: Kinesis's ``{"__type", "message"}`` as API Gateway passes it through, or
    API Gateway's own ``{"message"}`` (``error_type`` None)."""
    return {"__type": error_type, "message": message} if error_type else {"message": message}


def read_error_body(body) -> tuple[str | None, str]:
    """``(error type, message)`` of an error answer: Kinesis's (``__type`` may carry a namespace,
    ``com.amazonaws.kinesis#...``) or API Gateway's (``message`` or ``Message`` only)."""
    if not isinstance(body, dict):
        return None, str(body)[:200]
    error_type = body.get("__type")
    error_type = error_type.rsplit("#", 1)[-1] if isinstance(error_type, str) and error_type else None
    return error_type, str(body.get("message") or body.get("Message") or "")


def failed_entries(response: dict) -> list[tuple[int, str, str]]:
    """``(index, error code, message)`` of each record a PutRecords answer refused."""
    return [
        (i, entry["ErrorCode"], entry.get("ErrorMessage", ""))
        for i, entry in enumerate(response.get("Records", []))
        if entry.get("ErrorCode")
    ]
