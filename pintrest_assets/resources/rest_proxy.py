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
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from dataclasses import dataclass, field, replace
from random import uniform
from time import sleep
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import requests
from pydantic import Field, PrivateAttr
from requests.adapters import HTTPAdapter

from pintrest_assets.rest_proxy_v2 import (
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

# API Gateway and load balancers answer these themselves, without a proxy error code.
GATEWAY_STATUSES = frozenset({502, 503, 504})
# Enough pooled connections for one thread per topic and then some.
POOL_SIZE = 8
# Sessions are created rarely; one lock for all instances keeps the resource picklable.
_SESSION_LOCK = threading.Lock()

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

log = dg.get_dagster_logger(__name__)


@dataclass(frozen=True)
class RecordFailure:
    """A record the proxy refused for good."""

    index_in_input: int
    error_code: int | None
    message: str


@dataclass
class ProduceResult:
    """What one ``produce`` call (or, summed with ``+``, several) achieved.

    ``offsets`` holds ``(partition, offset)`` for every acknowledged record, in input order;
    ``first_offset``/``last_offset`` are the smallest and largest of those offsets.
    ``records`` counts the values given; ``records - sent - len(failed)`` of them were still
    unsettled if the call gave up. ``retries`` counts requests sent again (whole or with only
    the records that got a retriable error); ``requests`` counts every HTTP request.
    """

    topic: str
    records: int = 0
    sent: int = 0
    failed: list[RecordFailure] = field(default_factory=list)
    first_offset: int | None = None
    last_offset: int | None = None
    offsets: list[tuple[int, int]] = field(default_factory=list)
    retries: int = 0
    requests: int = 0

    def __add__(self, other: ProduceResult) -> ProduceResult:
        """Both calls' results, as if their inputs had been one list (failure indices shift)."""
        if not isinstance(other, ProduceResult):
            return NotImplemented
        if other.topic != self.topic:
            raise ValueError(f"cannot add results of topic {other.topic!r} to topic {self.topic!r}")
        return ProduceResult(
            topic=self.topic,
            records=self.records + other.records,
            sent=self.sent + other.sent,
            failed=self.failed
            + [replace(f, index_in_input=f.index_in_input + self.records) for f in other.failed],
            first_offset=_min(self.first_offset, other.first_offset),
            last_offset=_max(self.last_offset, other.last_offset),
            offsets=self.offsets + other.offsets,
            retries=self.retries + other.retries,
            requests=self.requests + other.requests,
        )


class RestProxyError(Exception):
    """The proxy refused a request, answered nonsense, or kept failing past ``max_retries``.

    ``partial`` is the ``ProduceResult`` up to the error (``None`` outside ``produce``):
    the records it counts as sent were acknowledged and will reach the topic.
    """

    def __init__(self, message: str, *, status: int | None = None, error_code: int | None = None):
        super().__init__(message)
        self.partial: ProduceResult | None = None
        self.status = status
        self.error_code = error_code


class RestProxyUnreachableError(ConfigError, RestProxyError):
    """The proxy never answered this client at all: a wrong URL, or the proxy is not running."""

    def __init__(self, url: str, reason: str):
        super().__init__("PINTREST_REST_PROXY_URL", f"cannot reach {url}: {reason}")


@dataclass(frozen=True)
class _Retry:
    """An attempt that may succeed if sent again."""

    reason: str
    transport: bool = False  # no HTTP answer at all
    retry_after: float | None = None


class RestProxyResource(dg.ConfigurableResource):
    """Produces JSON records to Kafka topics through a Kafka REST Proxy (API v2).

    Safe to share between threads: one pooled HTTP session per resource instance.
    Delivery is at least once (see the module docstring): a whole request sent again after a
    timeout or a dropped connection may duplicate records, which the cleaning stage removes.
    """

    url: str = Field(
        description="Base URL of the proxy; may carry a path such as an API Gateway stage "
        "(https://<id>.execute-api.<region>.amazonaws.com/dev). Requests go to <url>/topics/<topic>."
    )
    user_id: str = Field(
        default=DEFAULT_USER_ID, description="The topic prefix: topics are <user_id>.pin, .geo and .user."
    )
    api_key: str | None = Field(default=None, description="Sent as the x-api-key header (API Gateway).")
    username: str | None = Field(default=None, description="Basic-auth user name.")
    password: str | None = Field(default=None, description="Basic-auth password.")
    records_per_request: int = Field(default=500, gt=0, description="Records per produce request.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Connect and read timeout per request.")
    max_retries: int = Field(default=5, ge=0, description="Retries of one request before giving up.")
    backoff_seconds: float = Field(default=0.2, ge=0, description="Base of the exponential backoff.")
    max_backoff_seconds: float = Field(
        default=10.0, ge=0, description="Longest single wait between attempts, Retry-After included."
    )

    _session: requests.Session | None = PrivateAttr(default=None)
    _reached: bool = PrivateAttr(default=False)  # has the proxy ever answered this instance?

    # -- public API ----------------------------------------------------------------------------

    def produce(self, topic: str, values: list) -> ProduceResult:
        """Send ``values`` (JSON-serialisable) to ``topic`` as record values; see the module doc.

        Returns when every record is acknowledged or has failed for good. Raises
        ``RestProxyError`` (with ``.partial``) when a request is refused or retries run out.
        """
        _check_topic_name(topic)
        batch = _Batch(topic, values)
        try:
            for start in range(0, len(values), self.records_per_request):
                self._produce_chunk(batch, range(start, min(start + self.records_per_request, len(values))))
        except RestProxyError as exc:
            exc.partial = batch.result()
            raise
        return batch.result()

    def topic_for(self, spec: TopicSpec) -> str:
        """The Kafka topic of ``spec`` for this user, e.g. ``<user_id>.pin``."""
        return spec.topic(self.user_id)

    def list_topics(self) -> list[str]:
        """The topic names the proxy knows (``GET /topics``)."""
        response = self._get("/topics")
        topics = _json(response, f"GET {self._display_url('/topics')}")
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise RestProxyError(f"GET {self._display_url('/topics')}: expected a list of topic names")
        return topics

    def topic_exists(self, topic: str) -> bool:
        """Whether ``GET /topics/<topic>`` finds the topic (False on the proxy's 404/40401)."""
        _check_topic_name(topic)
        return self._get(topic_path(topic), not_found_ok=True).status_code != 404

    def close(self) -> None:
        with _SESSION_LOCK:
            if self._session is not None:
                self._session.close()
                self._session = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    # -- producing -----------------------------------------------------------------------------

    def _produce_chunk(self, batch: _Batch, indices: range) -> None:
        """One request's worth of records, resent (whole, or only its 50003 records) as needed."""
        path = topic_path(batch.topic)
        pending = list(indices)
        attempt = 0
        while True:
            batch.requests += 1
            outcome = self._attempt("POST", path, batch.body(pending))
            if isinstance(outcome, requests.Response):
                if not outcome.ok:
                    raise self._refused(outcome, "POST", path, batch)
                entries = _offset_entries(outcome, len(pending), f"POST {self._display_url(path)}")
                pending = batch.settle(pending, entries)
                if not pending:
                    return
                outcome = _Retry(f"error_code {RETRIABLE_RECORD_ERROR} for {len(pending)} record(s)")
            if attempt == self.max_retries:
                raise self._give_up(outcome, "POST", path, batch)
            attempt += 1
            batch.retries += 1
            self._pause(attempt, outcome, f"{len(pending)} records to {batch.topic}")

    # -- one HTTP exchange ---------------------------------------------------------------------

    def _attempt(self, method: str, path: str, body: bytes | None = None) -> requests.Response | _Retry:
        """Send once: the final answer, or a ``_Retry`` saying why it is worth another go."""
        headers = {"Content-Type": JSON_RECORDS} if body is not None else {}
        try:
            response = self._http().request(
                method, self.url.rstrip("/") + path, data=body, headers=headers, timeout=self.timeout_seconds
            )
        except requests.exceptions.SSLError as exc:  # asking again will not fix a certificate
            raise ConfigError(
                "PINTREST_REST_PROXY_URL", f"TLS with {self._display_url('')} failed: {str(exc)[:300]}"
            ) from None
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            return _Retry(_describe_transport_error(exc), transport=True)
        self._reached = True
        if response.status_code == 429:
            return _Retry(_status_text(response), retry_after=_retry_after(response))
        if response.status_code >= 500:
            code = _error_body(response)[0]
            if code in RETRIABLE_REQUEST_ERRORS or (code is None and response.status_code in GATEWAY_STATUSES):
                return _Retry(_status_text(response))
        return response

    def _get(self, path: str, not_found_ok: bool = False) -> requests.Response:
        attempt = 0
        while True:
            outcome = self._attempt("GET", path)
            if isinstance(outcome, requests.Response):
                if outcome.ok or (not_found_ok and _error_body(outcome)[0] == 40401):
                    return outcome
                raise self._refused(outcome, "GET", path)
            if attempt == self.max_retries:
                raise self._give_up(outcome, "GET", path)
            attempt += 1
            self._pause(attempt, outcome, f"GET {path}")

    def _pause(self, attempt: int, retry: _Retry, what: str) -> None:
        """Exponential backoff with full jitter; a Retry-After is a floor (both capped)."""
        delay = uniform(0, min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1)))
        if retry.retry_after is not None:
            delay = max(delay, min(retry.retry_after, self.max_backoff_seconds))
        log.warning(f"REST proxy: retry {attempt}/{self.max_retries} of {what} in {delay:.2f}s: {retry.reason}")
        sleep(delay)

    def _http(self) -> requests.Session:
        with _SESSION_LOCK:
            if self._session is None:
                self._session = self._new_session()
            return self._session

    def _new_session(self) -> requests.Session:
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigError(
                "PINTREST_REST_PROXY_URL", f"expected http(s)://host[:port][/stage], got {self._display_url('')!r}"
            )
        if (self.username is None) != (self.password is None):
            missing = "PINTREST_REST_PROXY_PASSWORD" if self.password is None else "PINTREST_REST_PROXY_USERNAME"
            raise ConfigError(missing, "basic auth needs both a username and a password")
        session = requests.Session()
        # Retries are ours (they depend on the proxy's error codes), so urllib3 makes none.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["Accept"] = V2_RESPONSE
        if self.api_key:
            session.headers["x-api-key"] = self.api_key
        if self.username is not None:
            session.auth = (self.username, self.password)
        return session

    # -- errors --------------------------------------------------------------------------------

    def _refused(
        self, response: requests.Response, method: str, path: str, batch: _Batch | None = None
    ) -> RestProxyError:
        code, proxy_message = _error_body(response)
        hint = _HINTS.get(code) or _STATUS_HINTS.get(response.status_code)
        message = f"{method} {self._display_url(path)} failed: HTTP {response.status_code}"
        message += f", error_code {code}" if code is not None else ""
        message += f": {proxy_message}" if proxy_message else ""
        message += f" ({hint})" if hint else ""
        if batch is not None:
            message = f"topic {batch.topic}: {message}; {batch.progress()} before the error"
        return RestProxyError(message, status=response.status_code, error_code=code)

    def _give_up(self, retry: _Retry, method: str, path: str, batch: _Batch | None = None) -> RestProxyError:
        if retry.transport and not self._reached:
            return RestProxyUnreachableError(self._display_url(""), retry.reason)
        message = f"{method} {self._display_url(path)}: gave up after {self.max_retries} retries: {retry.reason}"
        if batch is not None:
            message = f"topic {batch.topic}: {message}; {batch.progress()} before giving up"
        return RestProxyError(message)

    def _display_url(self, path: str) -> str:
        """The URL for messages: credentials written into it are masked."""
        parts = urlsplit(self.url.rstrip("/") + path)
        if parts.username is None and parts.password is None:
            return urlunsplit(parts)
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))


class _Batch:
    """The progress of one ``produce`` call."""

    def __init__(self, topic: str, values: list):
        self.topic = topic
        # Encoded once, up front: bad input fails before anything is sent, and resends are cheap.
        self.encoded = [_encode(topic, i, value) for i, value in enumerate(values)]
        self.acknowledged: dict[int, tuple[int, int]] = {}
        self.failed: list[RecordFailure] = []
        self.requests = 0
        self.retries = 0

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

    def progress(self) -> str:
        text = f"{len(self.acknowledged)} of {len(self.encoded)} records acknowledged"
        return text + (f", {len(self.failed)} failed" if self.failed else "")

    def result(self) -> ProduceResult:
        offsets = [self.acknowledged[i] for i in sorted(self.acknowledged)]
        return ProduceResult(
            topic=self.topic,
            records=len(self.encoded),
            sent=len(offsets),
            failed=sorted(self.failed, key=lambda f: f.index_in_input),
            first_offset=min((o for _, o in offsets), default=None),
            last_offset=max((o for _, o in offsets), default=None),
            offsets=offsets,
            retries=self.retries,
            requests=self.requests,
        )


def _encode(topic: str, index: int, value) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"record {index} for topic {topic} is not JSON: {exc}") from None


def _check_topic_name(topic: str) -> None:
    if not is_valid_topic_name(topic):
        raise ValueError(f"{topic!r} is not a valid Kafka topic name (1-249 characters of [a-zA-Z0-9._-])")


def _json(response: requests.Response, request: str):
    try:
        return response.json()
    except ValueError:
        raise RestProxyError(
            f"{request}: HTTP {response.status_code} with a body that is not JSON "
            f"(is this a Kafka REST proxy?): {response.text[:200]!r}",
            status=response.status_code,
        ) from None


def _offset_entries(response: requests.Response, expected: int, request: str) -> list[dict]:
    entries = offset_entries(_json(response, request))
    if entries is None or len(entries) != expected:
        got = len(entries) if isinstance(entries, list) else "no"
        raise RestProxyError(
            f"{request}: expected {expected} offset entries in the answer, got {got}", status=response.status_code
        )
    return entries


def _error_body(response: requests.Response) -> tuple[int | None, str]:
    """``(error_code, message)`` of an error answer: the proxy's JSON, API Gateway's, or plain text."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text.strip()[:200]
    return read_error_body(body)


def _status_text(response: requests.Response) -> str:
    code, message = _error_body(response)
    text = f"HTTP {response.status_code}" + (f", error_code {code}" if code is not None else "")
    return text + (f": {message}" if message else "")


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _describe_transport_error(exc: Exception) -> str:
    """A short reason, e.g. 'connection refused', instead of urllib3's nested repr."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.Timeout):
        return "no answer within the timeout"
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed without an answer"),
        ("Name or service not known", "unknown host name"),
        ("NameResolutionError", "unknown host name"),
        ("nodename nor servname", "unknown host name"),
        ("Temporary failure in name resolution", "host name lookup failed"),
    ):
        if needle in text:
            return reason
    return f"{type(exc).__name__}: {text[:200]}"


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
