"""A client for the produce side of the Kafka REST Proxy API v2, as a Dagster resource.

``POST <url>/topics/<topic>`` with ``{"records": [{"value": ...}, ...]}`` sends many records per
request (the main throughput lever); the answer holds one offset entry per record, in order.

What is retried, and how (exponential backoff with full jitter, ``max_retries`` per request):

- transport errors (connection refused or reset, timeouts), HTTP 429 (waiting at least its
  Retry-After), 5xx answers with error_code 50003/50302, and 502/503/504 without a proxy
  error code (what API Gateway and load balancers send): the whole request is sent again;
- records answered with error_code 50003 inside an HTTP 200: only those records are sent again.

Everything else is final: a record answered with 50002 (or any other code) is reported as a
``RecordFailure``; any other 4xx, or a 500 with 50002, raises ``RestProxyError``.

Delivery is at least once. The v2 proxy is not idempotent: when a request times out or the
connection drops after the proxy wrote the records, sending it again writes them twice.
Duplicates downstream are expected; the cleaning stage drops them.

The session, the backoff and the result types are shared with the Kinesis proxy's client
(``proxy_client``).
"""

from __future__ import annotations

import requests
from pydantic import Field

from pintrest_assets.proxy_client import (
    PendingRecords,
    ProduceResult,
    ProxyClientResource,
    ProxyError,
    RecordFailure,
    expected_entries,
    json_answer,
)
from pintrest_assets.kafka.rest_proxy_v2 import (
    INVALID_PAYLOAD,
    JSON_RECORDS,
    RETRIABLE_RECORD_ERROR,
    RETRIABLE_REQUEST_ERRORS,
    TOPIC_NOT_FOUND,
    V2_RESPONSE,
    offset_entries,
    produce_body,
    read_error_body,
    topic_path,
)
from pintrest_assets.settings import DEFAULT_USER_ID, ConfigError
from pintrest_assets.topics import TopicSpec, is_valid_topic_name

__all__ = [
    "ProduceResult",
    "RecordFailure",
    "RestProxyError",
    "RestProxyResource",
    "RestProxyUnreachableError",
]

_CHECK_AUTH = "check PINTREST_REST_PROXY_API_KEY, or PINTREST_REST_PROXY_USERNAME and _PASSWORD"
_HINTS = {
    TOPIC_NOT_FOUND: "the topic does not exist (create it, or let the proxy auto-create topics)",
    40101: _CHECK_AUTH,  # the proxy's own authentication, when it has one
    40301: _CHECK_AUTH,
    INVALID_PAYLOAD: "the records are not what the proxy accepts as JSON values",
}
_STATUS_HINTS = {
    401: _CHECK_AUTH,
    403: f"{_CHECK_AUTH}, and that PINTREST_REST_PROXY_URL (stage path included) is right",
    413: "the request is too large: lower records_per_request",
}


class RestProxyError(ProxyError):
    """The proxy refused a request, answered nonsense, or kept failing past ``max_retries``.

    ``partial`` is the ``ProduceResult`` up to the error (``None`` outside ``produce``):
    the records it counts as sent were acknowledged and will reach the topic.
    """


class RestProxyUnreachableError(ConfigError, RestProxyError):
    """The proxy never answered this client at all: a wrong URL, or the proxy is not running."""

    def __init__(self, url: str, reason: str):
        super().__init__("PINTREST_REST_PROXY_URL", f"cannot reach {url}: {reason}")


class RestProxyResource(ProxyClientResource):
    """Produces JSON records to Kafka topics through a Kafka REST Proxy (API v2).

    Safe to share between threads: one pooled HTTP session per resource instance.
    Delivery is at least once (see the module docstring): a whole request sent again after a
    timeout or a dropped connection may duplicate records, which the cleaning stage removes.
    """

    url_setting = "PINTREST_REST_PROXY_URL"
    service = "REST proxy"
    content_type = JSON_RECORDS
    accept = V2_RESPONSE
    error_class = RestProxyError
    unreachable_class = RestProxyUnreachableError
    read_error_body = staticmethod(read_error_body)
    retriable_codes = RETRIABLE_REQUEST_ERRORS
    code_hints = _HINTS
    status_hints = _STATUS_HINTS

    url: str = Field(
        description="Base URL of the proxy; may carry a path such as an API Gateway stage "
        "(https://<id>.execute-api.<region>.amazonaws.com/dev). Requests go to <url>/topics/<topic>."
    )
    user_id: str = Field(
        default=DEFAULT_USER_ID, description="The topic prefix: topics are <user_id>.pin, .geo and .user."
    )
    username: str | None = Field(default=None, description="Basic-auth user name.")
    password: str | None = Field(default=None, description="Basic-auth password.")
    records_per_request: int = Field(default=500, gt=0, description="Records per produce request.")

    # -- public API ----------------------------------------------------------------------------

    def produce(self, topic: str, values: list) -> ProduceResult:
        """Send ``values`` (JSON-serialisable) to ``topic`` as record values; see the module doc.

        Returns when every record is acknowledged or has failed for good. Raises
        ``RestProxyError`` (with ``.partial``) when a request is refused or retries run out.
        """
        _check_topic_name(topic)
        size = self.records_per_request
        chunks = (range(start, min(start + size, len(values))) for start in range(0, len(values), size))
        return self._produce(_Batch(topic, values), chunks, self._produce_chunk)

    def topic_for(self, spec: TopicSpec) -> str:
        """The Kafka topic of ``spec`` for this user, e.g. ``<user_id>.pin``."""
        return spec.topic(self.user_id)

    def list_topics(self) -> list[str]:
        """The topic names the proxy knows (``GET /topics``)."""
        response = self._request("GET", "/topics")
        topics = _json(response, f"GET {self._display_url('/topics')}")
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise RestProxyError(f"GET {self._display_url('/topics')}: expected a list of topic names")
        return topics

    def topic_exists(self, topic: str) -> bool:
        """Whether ``GET /topics/<topic>`` finds the topic (False on the proxy's 404/40401)."""
        _check_topic_name(topic)
        return self._request("GET", topic_path(topic), not_found_code=TOPIC_NOT_FOUND).status_code != 404

    # -- producing -----------------------------------------------------------------------------

    def _produce_chunk(self, batch: _Batch, indices: range) -> None:
        """One request's worth of records, resent (whole, or only its 50003 records) as needed."""
        path = topic_path(batch.topic)

        def settle(answer: requests.Response, pending: list[int]) -> tuple[list[int], str]:
            again = batch.settle(pending, _offset_entries(answer, len(pending), f"POST {self._display_url(path)}"))
            return again, f"error_code {RETRIABLE_RECORD_ERROR} for {len(again)} record(s)"

        self._send_records("POST", path, batch, list(indices), batch.body, settle)

    # -- one HTTP exchange ---------------------------------------------------------------------

    def _configure_session(self, session: requests.Session) -> None:
        if (self.username is None) != (self.password is None):
            missing = "PINTREST_REST_PROXY_PASSWORD" if self.password is None else "PINTREST_REST_PROXY_USERNAME"
            raise ConfigError(missing, "basic auth needs both a username and a password")
        if self.username is not None:
            session.auth = (self.username, self.password)


class _Batch(PendingRecords):
    """The progress of one ``produce`` call to a topic."""

    def __init__(self, topic: str, values: list):
        super().__init__("topic", topic, values)
        self.topic = topic

    def body(self, indices: list[int]) -> bytes:
        return produce_body([self.encoded[i] for i in indices])

    def settle(self, indices: list[int], entries: list[dict]) -> list[int]:
        """Record the proxy's answer for ``indices``; return those to send again."""
        again = []
        for i, entry in zip(indices, entries):
            code, partition, offset = entry.get("error_code"), entry.get("partition"), entry.get("offset")
            if code is None and isinstance(partition, int) and isinstance(offset, int):
                self.acknowledged[i] = (partition, offset)
            elif code == RETRIABLE_RECORD_ERROR:
                again.append(i)
            else:
                self.failed.append(RecordFailure(i, code, entry.get("error") or "the proxy returned no offset"))
        return again


def _check_topic_name(topic: str) -> None:
    if not is_valid_topic_name(topic):
        raise ValueError(f"{topic!r} is not a valid Kafka topic name (1-249 characters of [a-zA-Z0-9._-])")


def _json(response: requests.Response, request: str):
    return json_answer(response, request, RestProxyError, "Kafka REST proxy")


def _offset_entries(response: requests.Response, expected: int, request: str) -> list[dict]:
    entries = offset_entries(_json(response, request))
    return expected_entries(entries, expected, request, "offset", RestProxyError, status=response.status_code)
