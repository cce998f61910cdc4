"""A client of API Gateway's Kinesis proxy (the streaming half's emulator), as a Dagster resource.

``PUT <url>/streams/<stream>/records`` with ``{"records": [{"data": <post>, "partition-key":
<uuid4>}, ...]}`` puts up to 500 records (5 MiB) per request; ``records_per_request=1`` sends
each as ``PUT <url>/streams/<stream>/record`` with ``{"StreamName", "Data", "PartitionKey"}``,
one request per record as the original did. ``data`` is the post as a JSON value: the proxy
stores its JSON text (``kinesis_proxy``), so the client never base64-encodes it. Each record
gets a partition key of its own (a uuid4), which spreads the records over the stream's shards.

What is retried, and how (exponential backoff with full jitter, ``max_retries`` per request):

- transport errors (connection refused or reset, timeouts), HTTP 429 (waiting at least its
  Retry-After), every 5xx (Kinesis's InternalFailure and ServiceUnavailable come through API
  Gateway as 500; 502/503/504 are API Gateway's or the local gateway's own), and a 400 whose
  ``__type`` is throttling (``ProvisionedThroughputExceededException``,
  ``LimitExceededException``, ``KMSThrottlingException``): the whole request is sent again;
- records a PutRecords answer refused with ``ProvisionedThroughputExceededException`` or
  ``InternalFailure``: only those records are sent again, after the same backoff.

Everything else is final: a record refused with another error code, or larger than Kinesis's
1 MiB (never sent), is reported as a ``RecordFailure``; any other 4xx raises
``KinesisProxyError``. Delivery is at least once: a request sent again after its answer was lost
may put its records twice (Kinesis has no idempotent put); the cleaning stage drops duplicates.
"""

from __future__ import annotations

import os
import uuid
from typing import ClassVar

import dagster as dg
import requests
from pydantic import Field

from pintrest_assets.kinesis import proxy_contract as kinesis_proxy
from pintrest_assets.proxy_client import (
    PendingRecords,
    ProduceResult,
    ProxyClientResource,
    ProxyError,
    RecordFailure,
    expected_entries,
    json_answer,
)
from pintrest_assets.settings import DEFAULT_USER_ID, ConfigError, Settings
from pintrest_assets.topics import TopicSpec

_CHECK_KEY = "check PINTREST_KINESIS_PROXY_API_KEY"
_CHECK_URL = "check PINTREST_KINESIS_PROXY_URL, stage path included"
_TYPE_HINTS = {
    kinesis_proxy.NOT_FOUND: "the stream does not exist: create it (the local gateway creates the three at start) "
    "or check PINTREST_USER_ID",
    "AccessDeniedException": "the API Gateway role may not call this Kinesis action on this stream "
    "(deploy/iam/kinesis-proxy-policy.json)",
    "ResourceInUseException": "the stream exists already, or is being created or deleted",
}
_STATUS_HINTS = {
    401: _CHECK_KEY,
    404: f"no such route: {_CHECK_URL}",
    413: "the request is too large: lower records_per_request",
    415: "the proxy takes application/json only",
}


class KinesisProxyError(ProxyError):
    """The Kinesis proxy refused a request, answered nonsense, or kept failing past ``max_retries``.

    ``partial`` is the ``ProduceResult`` up to the error (``None`` outside ``produce``): the
    records it counts as sent were acknowledged by Kinesis. ``error_code`` is Kinesis's
    ``__type`` when the answer had one.
    """


class KinesisProxyUnreachableError(ConfigError, KinesisProxyError):
    """The proxy never answered this client at all: a wrong URL, or the gateway is not running."""

    def __init__(self, url: str, reason: str):
        super().__init__("PINTREST_KINESIS_PROXY_URL", f"cannot reach {url}: {reason}")


class KinesisProxyResource(ProxyClientResource):
    """Puts JSON records into Kinesis streams through API Gateway's Kinesis proxy (or the local gateway).

    ``stream_for(spec)`` names the stream (``streaming-<user_id>-<topic>``) and ``produce(stream,
    values)`` puts the values, as ``RestProxyResource`` does for Kafka topics: the emulation
    drives either. ``offsets`` in the result are ``(shard id, sequence number)`` pairs. Safe to
    share between threads: one pooled HTTP session per resource instance.
    """

    url_setting = "PINTREST_KINESIS_PROXY_URL"
    service = "Kinesis proxy"
    content_type = kinesis_proxy.CONTENT_TYPE
    accept = kinesis_proxy.CONTENT_TYPE
    error_class = KinesisProxyError
    unreachable_class = KinesisProxyUnreachableError
    read_error_body = staticmethod(kinesis_proxy.read_error_body)
    # Kinesis's InternalFailure and ServiceUnavailable come through API Gateway as 500; its
    # throttling comes as a 400 with a __type of its own.
    retries_every_5xx = True
    retriable_codes = kinesis_proxy.RETRIABLE_REQUEST_ERRORS
    code_format = "{}"
    code_hints = _TYPE_HINTS
    status_hints = _STATUS_HINTS
    # What the emulation's report calls the destinations: streams (the Kafka client's are topics).
    sends_to: ClassVar[str] = "stream"

    url: str = Field(
        description="Base URL of the Kinesis proxy: an API Gateway stage "
        "(https://<id>.execute-api.<region>.amazonaws.com/dev) or the local gateway. "
        "Requests go to <url>/streams/<stream>/records (or /record)."
    )
    user_id: str = Field(
        default=DEFAULT_USER_ID,
        description="The stream infix: streams are streaming-<user_id>-pin, -geo and -user.",
    )
    records_per_request: int = Field(
        default=kinesis_proxy.MAX_RECORDS_PER_REQUEST,
        gt=0,
        le=kinesis_proxy.MAX_RECORDS_PER_REQUEST,
        description="Records per PutRecords request (at most 500, and 5 MiB); 1 sends each record "
        "alone to the PutRecord route.",
    )

    # -- public API ----------------------------------------------------------------------------

    def produce(self, stream: str, values: list) -> ProduceResult:
        """Put ``values`` (JSON-serialisable) into ``stream``, each as one record; see the module doc.

        Returns when every record is acknowledged or has failed for good. Raises
        ``KinesisProxyError`` (with ``.partial``) when a request is refused or retries run out.
        """
        _check_stream_name(stream)
        batch = _Batch(stream, values)
        return self._produce(batch, batch.chunks(self.records_per_request), self._put_chunk)

    def stream_for(self, spec: TopicSpec) -> str:
        """The Kinesis stream of ``spec`` for this user, e.g. ``streaming-<user_id>-pin``."""
        stream = spec.kinesis_stream(self.user_id)
        if not kinesis_proxy.is_valid_stream_name(stream):
            raise ConfigError(
                "PINTREST_USER_ID",
                f"{self.user_id!r} does not make valid Kinesis stream names (streaming-<user_id>-user: "
                "1-128 characters of [a-zA-Z0-9_.-])",
            )
        return stream

    def list_streams(self) -> list[str]:
        """The stream names Kinesis lists (``GET /streams``: ListStreams' first page)."""
        body = _json(self._request("GET", "/streams"), f"GET {self._display_url('/streams')}")
        names = body.get("StreamNames") if isinstance(body, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise KinesisProxyError(f"GET {self._display_url('/streams')}: expected {{'StreamNames': [...]}}")
        return names

    def stream_exists(self, stream: str) -> bool:
        """Whether ``GET /streams/<stream>`` (DescribeStream) finds the stream."""
        _check_stream_name(stream)
        response = self._request("GET", kinesis_proxy.stream_path(stream), not_found_code=kinesis_proxy.NOT_FOUND)
        return response.ok

    # -- producing -----------------------------------------------------------------------------

    def _put_chunk(self, batch: _Batch, indices: list[int]) -> None:
        """One request's worth of records, resent (whole, or only its refused records) as needed."""
        if self.records_per_request == 1:
            path = kinesis_proxy.record_path(batch.stream)
            request = f"PUT {self._display_url(path)}"

            def settle(answer: requests.Response, pending: list[int]) -> tuple[list[int], str]:
                batch.settle_one(pending[0], _json(answer, request), request)
                return [], ""

            self._send_records("PUT", path, batch, indices, lambda pending: batch.single_body(pending[0]), settle)
            return
        path = kinesis_proxy.records_path(batch.stream)

        def settle_many(answer: requests.Response, pending: list[int]) -> tuple[list[int], str]:
            entries = _entries(_json(answer, f"PUT {self._display_url(path)}"), len(pending), self._display_url(path))
            again, codes = batch.settle(pending, entries)
            return again, f"{', '.join(sorted(codes))} for {len(again)} record(s)"

        self._send_records("PUT", path, batch, indices, batch.body, settle_many)

    # -- errors --------------------------------------------------------------------------------

    def _hint(self, code: str | None, status: int, message: str) -> str | None:
        if status == 403:
            # API Gateway: "Forbidden" without a valid key; "Missing Authentication Token" for a
            # path the stage does not serve.
            if "Authentication Token" in message:
                return f"no such route: {_CHECK_URL}"
            return f"{_CHECK_KEY}, and {_CHECK_URL}"
        return super()._hint(code, status, message)


class _Batch(PendingRecords):
    """The progress of one ``produce`` call to a stream."""

    def __init__(self, stream: str, values: list):
        super().__init__("stream", stream, values)  # the JSON text the proxy stores (``record_bytes``)
        self.stream = stream
        self.keys = [str(uuid.uuid4()) for _ in values]

    def size(self, i: int) -> int:
        """What Kinesis counts of record ``i``: its data and its partition key."""
        return len(self.encoded[i]) + len(self.keys[i])

    def chunks(self, records_per_request: int):
        """Indices per request: at most ``records_per_request`` records and 5 MiB; a record over
        1 MiB is failed here, never sent (Kinesis would refuse its whole request)."""
        chunk: list[int] = []
        size = 0
        for i in range(len(self.encoded)):
            if self.size(i) > kinesis_proxy.MAX_RECORD_BYTES:
                self.failed.append(
                    RecordFailure(
                        i,
                        kinesis_proxy.VALIDATION,
                        f"the record takes {self.size(i)} bytes with its partition key; "
                        f"Kinesis takes at most {kinesis_proxy.MAX_RECORD_BYTES} (1 MiB)",
                    )
                )
                continue
            if chunk and (len(chunk) == records_per_request or size + self.size(i) > kinesis_proxy.MAX_REQUEST_BYTES):
                yield chunk
                chunk, size = [], 0
            chunk.append(i)
            size += self.size(i)
        if chunk:
            yield chunk

    def body(self, indices: list[int]) -> bytes:
        """A PutRecords body: ``data`` is each value's JSON text, embedded as JSON."""
        return (
            b'{"records":['
            + b",".join(
                b'{"data":' + self.encoded[i] + b',"partition-key":"' + self.keys[i].encode() + b'"}' for i in indices
            )
            + b"]}"
        )

    def single_body(self, i: int) -> bytes:
        """A PutRecord body."""
        return (
            b'{"StreamName":"'
            + self.stream.encode()
            + b'","Data":'
            + self.encoded[i]
            + b',"PartitionKey":"'
            + self.keys[i].encode()
            + b'"}'
        )

    def settle(self, indices: list[int], entries: list[dict]) -> tuple[list[int], set[str]]:
        """Record a PutRecords answer for ``indices``; return those to send again, and their codes."""
        again, codes = [], set()
        for i, entry in zip(indices, entries):
            code = entry.get("ErrorCode")
            if code in kinesis_proxy.RETRIABLE_RECORD_ERRORS:
                again.append(i)
                codes.add(code)
            elif code:
                self.failed.append(RecordFailure(i, code, entry.get("ErrorMessage") or ""))
            elif not self._acknowledge(i, entry):
                self.failed.append(RecordFailure(i, None, "the proxy answered no shard id and sequence number"))
        return again, codes

    def settle_one(self, i: int, answer, request: str) -> None:
        """Record a PutRecord answer for record ``i``."""
        if not isinstance(answer, dict) or not self._acknowledge(i, answer):
            raise KinesisProxyError(
                f"{request}: expected {{'ShardId', 'SequenceNumber'}} in the answer, got {answer!r:.200}"
            )

    def _acknowledge(self, i: int, entry: dict) -> bool:
        shard, sequence = entry.get("ShardId"), entry.get("SequenceNumber")
        if isinstance(shard, str) and shard and isinstance(sequence, str) and sequence.isdigit():
            self.acknowledged[i] = (shard, int(sequence))
            return True
        return False


def _check_stream_name(stream: str) -> None:
    if not kinesis_proxy.is_valid_stream_name(stream):
        raise ValueError(f"{stream!r} is not a valid Kinesis stream name (1-128 characters of [a-zA-Z0-9_.-])")


def _json(response: requests.Response, request: str):
    return json_answer(response, request, KinesisProxyError, "Kinesis proxy")


def _entries(answer, expected: int, url: str) -> list[dict]:
    return expected_entries(kinesis_proxy.record_entries(answer), expected, f"PUT {url}", "record", KinesisProxyError)


# -- from the settings --------------------------------------------------------------------------

# Secrets: resolved at launch from the environment and never shown in the UI. The Kinesis proxy
# is its own API Gateway API; one key for both APIs works as well (the fallback).
API_KEY_SETTINGS = ("PINTREST_KINESIS_PROXY_API_KEY", "PINTREST_REST_PROXY_API_KEY")


def kinesis_proxy_for(settings: Settings, *, resolve_secrets: bool = False) -> KinesisProxyResource:
    """The Kinesis proxy client of ``settings`` (see ``resources.py`` for ``resolve_secrets``)."""
    api_key = None
    for name in API_KEY_SETTINGS:
        if os.environ.get(name):
            api_key = os.environ[name] if resolve_secrets else dg.EnvVar(name)
            break
    return KinesisProxyResource(url=settings.kinesis_proxy_url, user_id=settings.user_id, api_key=api_key)
