"""The local gateway's Kinesis-proxy routes: what API Gateway's Kinesis integrations do.

The routes (``kinesis_proxy.ROUTES``) do what API Gateway's integrations do
(``deploy/api-gateway/kinesis-proxy.openapi.yaml``): each calls one Kinesis action through a
boto3 client and answers Kinesis's own JSON. ``PutRecord`` stores the JSON text of ``Data``
(``kinesis_proxy.record_bytes``), ``PutRecords`` the JSON text of each ``data``, under the
partition keys given; the stream is the path's, never the body's. A record is acknowledged only
once Kinesis acknowledged it, so what survives a crash is what Kinesis (kinesalite's LevelDB,
or AWS) keeps. Like API Gateway, the gateway does not retry: throttling comes back as 400
``ProvisionedThroughputExceededException`` (or per record inside a PutRecords answer) for the
client to retry.

Errors, shaped as through API Gateway: a Kinesis 4xx as 400 and a 5xx as 500 with Kinesis's
``{"__type", "message"}``; a body that is not JSON 400 ``{"message": "Could not parse request
body into json: ..."}``; a Content-Type other than ``application/json`` 415; bodies that break
Kinesis's rules (no ``Data``, a partition key of 0 or more than 256 characters, no records or
more than 500, a record over 1 MiB, a request over 5 MiB, a bad stream name) 400
``ValidationException`` / ``InvalidArgumentException`` with a message saying what is wrong,
before Kinesis is called. Kinesis unreachable: 502; no answer within 29 s (API Gateway's
integration timeout): 504 ``Endpoint request timed out``; no Kinesis behind the gateway: 503.
The gateway's own refusals on these routes (no such route, a body too large, ...) are
``{"message"}`` only, and an unexpected failure 500 ``{"message": "Internal server error"}``,
as API Gateway answers them (``error_body``, ``INTERNAL_ERROR``).

The boto3 client comes from ``KinesisStack`` (``gateway/kinesis.py``), through the gateway.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from pintrest_assets.kinesis import proxy_contract as kinesis_proxy
from pintrest_assets.kafka.protocol import RestError

log = logging.getLogger(__name__)

# API Gateway's integration timeout: past it, the client is answered 504.
INTEGRATION_TIMEOUT_SECONDS = 29.0
# What API Gateway answers when the integration fails unexpectedly.
INTERNAL_ERROR = {"message": "Internal server error"}


class KinesisError(RestError):
    """An answer of a Kinesis route: Kinesis's error (``error_type`` set) or API Gateway's own."""

    def __init__(self, status: int, error_type: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, status, message, headers)
        self.error_type = error_type

    def body(self) -> dict:
        return kinesis_proxy.error_body(self.error_type, self.message)


def unavailable(reason: str | None, retry_after: int | None = None) -> KinesisError:
    """503: the gateway has no Kinesis endpoint (yet, or at all)."""
    message = reason or (
        "this gateway serves no Kinesis endpoint: start it with `pintrest gateway`, which runs the "
        "embedded kinesalite or forwards to PINTREST_KINESIS_ENDPOINT_URL"
    )
    return KinesisError(503, None, message, {"Retry-After": str(retry_after)} if retry_after else None)


# -- the routes -----------------------------------------------------------------------------------
# Each handler takes the boto3 client and the request (``params``, ``content_type``, ``body``).


def list_streams(client, request) -> dict:
    _json_body(request)
    return _call(client, client.list_streams)


def describe_stream(client, request) -> dict:
    _json_body(request)
    return _call(client, client.describe_stream, StreamName=_stream(request))


def create_stream(client, request) -> dict:
    body = _json_body(request)
    shards = body.get("ShardCount") if isinstance(body, dict) else None
    if shards is None or shards == "":
        shards = kinesis_proxy.DEFAULT_SHARD_COUNT
    if isinstance(shards, str) and shards.strip().isdigit():
        shards = int(shards)
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise _invalid(f"ShardCount must be a whole number of at least 1, got {shards!r}")
    return _call(client, client.create_stream, StreamName=_stream(request), ShardCount=shards)


def put_record(client, request) -> dict:
    stream = _stream(request)
    body = _json_body(request)
    if not isinstance(body, dict):
        raise _invalid('the body must be a JSON object {"StreamName", "Data", "PartitionKey"}')
    if "Data" not in body:
        raise _invalid("Data is missing: send the record as a JSON value (not base64: the proxy encodes it)")
    key = _partition_key(body.get("PartitionKey"), "PartitionKey")
    data = kinesis_proxy.record_bytes(body["Data"])
    _check_record_size(data, key, "the record")
    return _call(client, client.put_record, StreamName=stream, Data=data, PartitionKey=key)


def put_records(client, request) -> dict:
    stream = _stream(request)
    body = _json_body(request)
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise _invalid('the body must be a JSON object {"records": [{"data": ..., "partition-key": ...}, ...]}')
    if not 1 <= len(records) <= kinesis_proxy.MAX_RECORDS_PER_REQUEST:
        raise _invalid(f"records must hold 1 to {kinesis_proxy.MAX_RECORDS_PER_REQUEST} records, got {len(records)}")
    entries, total = [], 0
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "data" not in record:
            raise _invalid(f'records[{i}] must be an object with "data" (a JSON value) and "partition-key"')
        key = _partition_key(record.get("partition-key"), f'records[{i}]["partition-key"]')
        data = kinesis_proxy.record_bytes(record["data"])
        _check_record_size(data, key, f"records[{i}]")
        total += len(data) + len(key.encode())
        entries.append({"Data": data, "PartitionKey": key})
    if total > kinesis_proxy.MAX_REQUEST_BYTES:
        raise KinesisError(
            400,
            "InvalidArgumentException",
            f"the records take {total} bytes with their partition keys; a PutRecords request may take "
            f"{kinesis_proxy.MAX_REQUEST_BYTES} (5 MiB)",
        )
    return _call(client, client.put_records, StreamName=stream, Records=entries)


HANDLERS = {
    "ListStreams": list_streams,
    "DescribeStream": describe_stream,
    "CreateStream": create_stream,
    "PutRecord": put_record,
    "PutRecords": put_records,
}


def _invalid(message: str) -> KinesisError:
    return KinesisError(400, kinesis_proxy.VALIDATION, message)


def _stream(request) -> str:
    name = request.params["stream-name"]
    if not kinesis_proxy.is_valid_stream_name(name):
        raise _invalid(f"{name!r} is not a valid stream name (1-128 characters of [a-zA-Z0-9_.-])")
    return name


def _partition_key(key, where: str) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= kinesis_proxy.MAX_PARTITION_KEY_CHARS:
        shown = repr(key) if not isinstance(key, str) or len(key) <= 40 else f"{len(key)} characters"
        raise _invalid(
            f"{where} must be a string of 1 to {kinesis_proxy.MAX_PARTITION_KEY_CHARS} characters, got {shown}"
        )
    return key


def _check_record_size(data: bytes, key: str, what: str) -> None:
    size = len(data) + len(key.encode())
    if size > kinesis_proxy.MAX_RECORD_BYTES:
        raise _invalid(
            f"{what} takes {size} bytes with its partition key; Kinesis takes at most "
            f"{kinesis_proxy.MAX_RECORD_BYTES} (1 MiB)"
        )


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _json_body(request):
    """The body as JSON (None when empty), as API Gateway's application/json template reads it."""
    media_type = (request.content_type or kinesis_proxy.CONTENT_TYPE).split(";")[0].strip().lower()
    if media_type != kinesis_proxy.CONTENT_TYPE:
        raise KinesisError(415, None, "Unsupported Media Type", {"x-amzn-ErrorType": "UnsupportedMediaTypeException"})
    if not request.body.strip():
        return None
    try:
        return json.loads(request.body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise KinesisError(400, None, f"Could not parse request body into json: {str(exc)[:200]}") from None


def _call(client, action, **kwargs) -> dict:
    """Call a Kinesis action; its answer as Kinesis's JSON, or its error as API Gateway passes it on."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        HTTPClientError,
        ParamValidationError,
        ReadTimeoutError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        answer = action(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400
        raise KinesisError(
            500 if status >= 500 else 400, error.get("Code") or "UnknownError", error.get("Message") or str(exc)
        ) from None
    except ParamValidationError as exc:
        raise _invalid(str(exc).replace("\n", " ")) from None
    except ReadTimeoutError:
        raise KinesisError(504, None, "Endpoint request timed out") from None
    except (ConnectTimeoutError, BotoConnectionError, HTTPClientError) as exc:
        raise KinesisError(502, None, f"cannot reach Kinesis at {client.meta.endpoint_url}: {exc}") from None
    except BotoCoreError as exc:  # no credentials, and the like: the gateway's configuration
        log.error("Kinesis %s failed: %s", action.__name__, exc)
        raise KinesisError(500, None, f"the gateway cannot call Kinesis: {exc}") from None
    answer.pop("ResponseMetadata", None)
    return _wire(answer)


def _wire(value):
    """boto3's parsed answer back in Kinesis's JSON: timestamps as epoch seconds."""
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def route_handler(action: str):
    """The gateway's handler of the route calling ``action``: the client from the gateway, then the route."""
    handler = HANDLERS[action]

    def handle(gateway, request: Any) -> dict:
        return handler(gateway.kinesis_client(), request)

    handle.__name__ = handler.__name__
    return handle


def error_body(error: RestError) -> dict:
    """The body of an error on a Kinesis route: Kinesis's own as Kinesis writes it, the
    gateway's (no such route, a body too large, ...) as API Gateway does, a message alone."""
    if isinstance(error, KinesisError):
        return error.body()
    return {"message": error.message}
