"""What the two proxy clients share: the Kafka REST Proxy's (``kafka.client``) and the Kinesis
proxy's (``kinesis.proxy_client``).

- ``ProduceResult`` and ``RecordFailure``: what a ``produce`` call achieved, the interface the
  emulation reads, whichever client it drives;
- ``ProxyError``: a request refused, or retries run out, with the partial result;
- ``ProxyClientResource``: the base resource with one pooled HTTP session per instance, a single
  attempt of a request (``_attempt``: the answer, or a ``Retry`` saying why another go may work),
  exponential backoff with full jitter (``_pause``; a Retry-After is a floor), and the one error
  path: which error answers are worth sending again (``_classify``), what an error answer says
  (``_error_body``), the error for a final refusal with the proxy's code and a hint
  (``_refused``), and the errors that name the URL setting when the proxy never answered at all.

A subclass says, in class attributes, which setting holds its URL, what it sends and accepts,
how its proxy writes an error body, which error codes are worth sending again and which hints
go with which codes and statuses; the request bodies and the per-record retries are its own.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from random import uniform
from time import sleep
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import requests
from pydantic import Field, PrivateAttr
from requests.adapters import HTTPAdapter

from pintrest_assets.settings import ConfigError

# API Gateway and load balancers answer these themselves, without a proxy error code.
GATEWAY_STATUSES = frozenset({502, 503, 504})
# Enough pooled connections for one thread per topic and then some.
POOL_SIZE = 8
# Sessions are created rarely; one lock for all instances keeps the resources picklable.
_SESSION_LOCK = threading.Lock()

log = dg.get_dagster_logger(__name__)


@dataclass(frozen=True)
class RecordFailure:
    """A record the proxy refused for good: a Kafka REST Proxy error code (int), or a Kinesis
    error code (``ProvisionedThroughputExceededException``, ...)."""

    index_in_input: int
    error_code: int | str | None
    message: str


@dataclass
class ProduceResult:
    """What one ``produce`` call (or, summed with ``+``, several) achieved.

    ``offsets`` holds ``(partition, offset)`` for every acknowledged record, in input order: a
    Kafka partition number and offset, or a Kinesis shard id and sequence number (an ``int``;
    Kinesis's are decimal strings of some 56 digits). ``first_offset``/``last_offset`` are the
    smallest and largest of those offsets. ``records`` counts the values given;
    ``records - sent - len(failed)`` of them were still unsettled if the call gave up.
    ``retries`` counts requests sent again (whole or with only the records that got a
    retriable error); ``requests`` counts every HTTP request.
    """

    topic: str
    records: int = 0
    sent: int = 0
    failed: list[RecordFailure] = field(default_factory=list)
    first_offset: int | None = None
    last_offset: int | None = None
    offsets: list[tuple[int | str, int]] = field(default_factory=list)
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
            failed=self.failed + [replace(f, index_in_input=f.index_in_input + self.records) for f in other.failed],
            first_offset=_min(self.first_offset, other.first_offset),
            last_offset=_max(self.last_offset, other.last_offset),
            offsets=self.offsets + other.offsets,
            retries=self.retries + other.retries,
            requests=self.requests + other.requests,
        )


class ProxyError(Exception):
    """The proxy refused a request, answered nonsense, or kept failing past ``max_retries``.

    ``partial`` is the ``ProduceResult`` up to the error (``None`` outside ``produce``):
    the records it counts as sent were acknowledged and will reach the topic or stream.
    """

    def __init__(self, message: str, *, status: int | None = None, error_code: int | str | None = None):
        super().__init__(message)
        self.partial: ProduceResult | None = None
        self.status = status
        self.error_code = error_code


@dataclass(frozen=True)
class Retry:
    """An attempt that may succeed if sent again."""

    reason: str
    transport: bool = False  # no HTTP answer at all
    retry_after: float | None = None


class ProxyClientResource(dg.ConfigurableResource):
    """The HTTP side of a proxy client: settings, session, one attempt, backoff, errors.

    Subclasses set the class attributes below; they may add headers or auth in
    ``_configure_session``.
    """

    url_setting: ClassVar[str]  # the environment variable the URL comes from, named in errors
    service: ClassVar[str]  # for log lines: "REST proxy", "Kinesis proxy"
    content_type: ClassVar[str]  # of request bodies
    accept: ClassVar[str]
    error_class: ClassVar[type[ProxyError]] = ProxyError
    unreachable_class: ClassVar[type[ProxyError]]  # built with (display url, reason)

    # What an error answer says: ``(error code, message)`` of its JSON body (a staticmethod).
    read_error_body: ClassVar[Callable[[object], tuple[int | str | None, str]]]
    # Which error answers are worth sending again. A 429 always is (after at least its
    # Retry-After), and so is a 502/503/504 without an error code (API Gateway's or a load
    # balancer's own); beyond those, an error answer with one of ``retriable_codes``, and,
    # with ``retries_every_5xx``, any 5xx (after at least its Retry-After).
    retriable_codes: ClassVar[frozenset[int | str]] = frozenset()
    retries_every_5xx: ClassVar[bool] = False
    # How a refusal names the proxy's error code, and the hints it adds: by code, else by status.
    code_format: ClassVar[str] = "error_code {}"
    code_hints: ClassVar[Mapping[int | str, str]] = {}
    status_hints: ClassVar[Mapping[int, str]] = {}

    url: str = Field(description="Base URL of the proxy; may carry a path such as an API Gateway stage.")
    api_key: str | None = Field(default=None, description="Sent as the x-api-key header (API Gateway).")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Connect and read timeout per request.")
    max_retries: int = Field(default=5, ge=0, description="Retries of one request before giving up.")
    backoff_seconds: float = Field(default=0.2, ge=0, description="Base of the exponential backoff.")
    max_backoff_seconds: float = Field(
        default=10.0, ge=0, description="Longest single wait between attempts, Retry-After included."
    )

    _session: requests.Session | None = PrivateAttr(default=None)
    _reached: bool = PrivateAttr(default=False)  # has the proxy ever answered this instance?

    def close(self) -> None:
        with _SESSION_LOCK:
            if self._session is not None:
                self._session.close()
                self._session = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    # -- for subclasses ------------------------------------------------------------------------

    def _configure_session(self, session: requests.Session) -> None:
        """Anything beyond Accept and x-api-key (basic auth, ...); may raise ``ConfigError``."""

    def _hint(self, code: int | str | None, status: int, message: str) -> str | None:
        """What to check after a final refusal: ``code_hints``, else ``status_hints``."""
        return self.code_hints.get(code) or self.status_hints.get(status)

    # -- produce ----------------------------------------------------------------------------------

    def _produce(
        self, batch: PendingRecords, chunks: Iterable, send_chunk: Callable[[PendingRecords, object], None]
    ) -> ProduceResult:
        """``send_chunk(batch, chunk)`` for each chunk; a client error carries the partial result."""
        try:
            for chunk in chunks:
                send_chunk(batch, chunk)
        except self.error_class as exc:
            exc.partial = batch.result()
            raise
        return batch.result()

    # -- requests, retried while worth it -------------------------------------------------------

    def _request(self, method: str, path: str, not_found_code: int | str | None = None) -> requests.Response:
        """The final answer to one request (an error answer with ``not_found_code`` included, for a
        caller asking whether something exists); retries what ``_classify`` says is worth it."""
        attempt = 0
        while True:
            outcome = self._attempt(method, path)
            if isinstance(outcome, requests.Response):
                if outcome.ok or (not_found_code is not None and self._error_body(outcome)[0] == not_found_code):
                    return outcome
                raise self._refused(outcome, method, path)
            if attempt == self.max_retries:
                raise self._give_up(outcome, method, path)
            attempt += 1
            self._pause(attempt, outcome, f"{method} {path}")

    def _send_records(
        self,
        method: str,
        path: str,
        batch: PendingRecords,
        pending: list[int],
        body: Callable[[list[int]], bytes],
        settle: Callable[[requests.Response, list[int]], tuple[list[int], str]],
    ) -> None:
        """Sends ``body(pending)`` until each of ``batch``'s records in ``pending`` is settled.

        ``settle(answer, pending)`` records an answer and returns the records to send again (the
        ones the proxy refused for now) and why. A whole request the proxy could not take is sent
        again too; after ``max_retries`` retries the error says how far the batch got."""
        attempt = 0
        while True:
            batch.requests += 1
            outcome = self._attempt(method, path, body(pending))
            if isinstance(outcome, requests.Response):
                if not outcome.ok:
                    raise self._refused(outcome, method, path, batch)
                pending, why = settle(outcome, pending)
                if not pending:
                    return
                outcome = Retry(why)
            if attempt == self.max_retries:
                raise self._give_up(outcome, method, path, batch)
            attempt += 1
            batch.retries += 1
            self._pause(attempt, outcome, f"{len(pending)} records to {batch.destination}")

    # -- one HTTP exchange ---------------------------------------------------------------------

    def _attempt(self, method: str, path: str, body: bytes | None = None) -> requests.Response | Retry:
        """Send once: the final answer, or a ``Retry`` saying why it is worth another go."""
        headers = {"Content-Type": self.content_type} if body is not None else {}
        try:
            response = self._http().request(
                method, self.url.rstrip("/") + path, data=body, headers=headers, timeout=self.timeout_seconds
            )
        except requests.exceptions.SSLError as exc:  # asking again will not fix a certificate
            raise ConfigError(self.url_setting, f"TLS with {self._display_url('')} failed: {str(exc)[:300]}") from None
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            return Retry(describe_transport_error(exc), transport=True)
        self._reached = True
        return self._classify(response)

    def _pause(self, attempt: int, retry: Retry, what: str) -> None:
        """Exponential backoff with full jitter; a Retry-After is a floor (both capped)."""
        delay = uniform(0, min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1)))
        if retry.retry_after is not None:
            delay = max(delay, min(retry.retry_after, self.max_backoff_seconds))
        log.warning(f"{self.service}: retry {attempt}/{self.max_retries} of {what} in {delay:.2f}s: {retry.reason}")
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
                self.url_setting, f"expected http(s)://host[:port][/stage], got {self._display_url('')!r}"
            )
        session = requests.Session()
        # Retries are ours (they depend on the proxy's error codes), so urllib3 makes none.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["Accept"] = self.accept
        if self.api_key:
            session.headers["x-api-key"] = self.api_key
        self._configure_session(session)
        return session

    # -- errors --------------------------------------------------------------------------------

    def _classify(self, response: requests.Response) -> requests.Response | Retry:
        """The answer, or a ``Retry`` when it is worth sending the request again."""
        status = response.status_code
        if status == 429 or (status >= 500 and self.retries_every_5xx):
            return Retry(self._status_text(response), retry_after=retry_after(response))
        if status >= 400:
            code = self._error_body(response)[0]
            if code in self.retriable_codes or (code is None and status in GATEWAY_STATUSES):
                return Retry(self._status_text(response))
        return response

    def _error_body(self, response: requests.Response) -> tuple[int | str | None, str]:
        """``(error code, message)`` of an error answer: the proxy's JSON, API Gateway's, or plain text."""
        try:
            body = response.json()
        except ValueError:
            return None, response.text.strip()[:200]
        return self.read_error_body(body)

    def _refused(
        self, response: requests.Response, method: str, path: str, batch: PendingRecords | None = None
    ) -> ProxyError:
        """The error for a final refusal, with the proxy's code, message and a hint."""
        code, proxy_message = self._error_body(response)
        hint = self._hint(code, response.status_code, proxy_message)
        message = f"{method} {self._display_url(path)} failed: HTTP {response.status_code}"
        message += f", {self.code_format.format(code)}" if code is not None else ""
        message += f": {proxy_message}" if proxy_message else ""
        message += f" ({hint})" if hint else ""
        if batch is not None:
            message = f"{batch.label}: {message}; {batch.progress()} before the error"
        return self.error_class(message, status=response.status_code, error_code=code)

    def _give_up(self, retry: Retry, method: str, path: str, batch=None) -> ProxyError:
        """Retries ran out: the URL setting is named when the proxy never answered at all.

        ``batch`` has ``label`` (``topic x``, ``stream x``) and ``progress()``."""
        if retry.transport and not self._reached:
            return self.unreachable_class(self._display_url(""), retry.reason)
        message = f"{method} {self._display_url(path)}: gave up after {self.max_retries} retries: {retry.reason}"
        if batch is not None:
            message = f"{batch.label}: {message}; {batch.progress()} before giving up"
        return self.error_class(message)

    def _status_text(self, response: requests.Response) -> str:
        code, message = self._error_body(response)
        text = f"HTTP {response.status_code}" + (f", error_code {code}" if code is not None else "")
        return text + (f": {message}" if message else "")

    def _display_url(self, path: str) -> str:
        return display_url(self.url.rstrip("/") + path)


def display_url(url: str) -> str:
    """``url`` for messages: credentials written into it are masked."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return urlunsplit(parts)
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def retry_after(response: requests.Response) -> float | None:
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


def describe_transport_error(exc: Exception) -> str:
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


class PendingRecords:
    """The progress of one ``produce`` call: records encoded once, up front (bad input fails
    before anything is sent, and resends are cheap), and what became of each."""

    def __init__(self, kind: str, destination: str, values: list):
        self.destination = destination
        self.label = f"{kind} {destination}"
        self.encoded = [encode_json(self.label, i, value) for i, value in enumerate(values)]
        self.acknowledged: dict[int, tuple[int | str, int]] = {}  # index -> (partition or shard, position)
        self.failed: list[RecordFailure] = []
        self.requests = 0
        self.retries = 0

    def progress(self) -> str:
        text = f"{len(self.acknowledged)} of {len(self.encoded)} records acknowledged"
        return text + (f", {len(self.failed)} failed" if self.failed else "")

    def result(self) -> ProduceResult:
        offsets = [self.acknowledged[i] for i in sorted(self.acknowledged)]
        return ProduceResult(
            topic=self.destination,
            records=len(self.encoded),
            sent=len(offsets),
            failed=sorted(self.failed, key=lambda f: f.index_in_input),
            first_offset=min((o for _, o in offsets), default=None),
            last_offset=max((o for _, o in offsets), default=None),
            offsets=offsets,
            retries=self.retries,
            requests=self.requests,
        )


def encode_json(label: str, index: int, value) -> bytes:
    """A record's compact JSON text, as the proxies store it."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"record {index} for {label} is not JSON: {exc}") from None


def expected_entries(
    entries: list | None, expected: int, request: str, what: str, error: type[ProxyError], status: int | None = None
) -> list[dict]:
    """``entries``, one per record sent, or ``error`` saying the answer did not hold as many."""
    if entries is None or len(entries) != expected:
        got = len(entries) if isinstance(entries, list) else "no"
        raise error(f"{request}: expected {expected} {what} entries in the answer, got {got}", status=status)
    return entries


def json_answer(response: requests.Response, request: str, error: type[ProxyError], proxy: str):
    """The answer's JSON, or ``error`` saying it is not JSON (and perhaps not a ``proxy``)."""
    try:
        return response.json()
    except ValueError:
        raise error(
            f"{request}: HTTP {response.status_code} with a body that is not JSON "
            f"(is this a {proxy}?): {response.text[:200]!r}",
            status=response.status_code,
        ) from None
