"""The local Kafka REST Proxy v2 gateway: the HTTP API in front of the broker and its S3 sinks.

Endpoints; every response is ``application/vnd.kafka.v2+json`` but a 403 (see below):

- ``POST /topics/{topic}`` and ``POST /topics/{topic}/partitions/0``: produce records, in the
  json (``application/vnd.kafka.json.v2+json``; ``application/vnd.kafka.v2+json`` and
  ``application/json`` accepted too) or binary (``application/vnd.kafka.binary.v2+json``,
  base64 values holding JSON) embedded format. The 200 response has one ``offsets`` entry per
  record, in order; it is sent only once the records are in the write-ahead log.
- ``GET /topics``: the topic names. ``GET /topics/{topic}``: name, configs and partitions.
  ``GET /topics/{topic}/partitions`` and ``GET /topics/{topic}/partitions/0``: partition metadata.
- ``GET /status``, for operators: ``{"bucket": url, "topics": {topic: {...}}}`` where each topic
  has ``next_offset`` (the offset its next record gets), ``landed_offset`` (every record below
  it is in the bucket), ``pending`` (acknowledged, not landed yet), ``objects_landed`` (since
  the gateway started) and ``last_error`` (the sink's last failure to write to the bucket, null
  once it succeeds again). Everything acknowledged has landed when every ``pending`` is 0.

- The API Gateway Kinesis-proxy routes (``kinesis_proxy.ROUTES``; ``application/json``):
  ``GET /streams``, ``GET``/``POST /streams/{stream-name}``, ``PUT /streams/{stream-name}/record``
  and ``PUT /streams/{stream-name}/records``, each calling one Kinesis action on the gateway's
  Kinesis endpoint (``kinesis=``, a boto3 client) as API Gateway's integrations do: see
  ``gateway/kinesis.py``. Without an endpoint they answer 503. ``GET /status`` has a
  ``kinesis`` entry: ``{"endpoint", "ready", "error"}``.

``ROUTES`` lists them as data, with the API each belongs to; requests are dispatched through it,
and the deployment files (``deploy/api-gateway/``) are checked against it.

Exposure, as API Gateway in front of the REST proxy would have it: the gateway listens on the
loopback interface by default; on any other address it refuses to start without an API key
(``ApiKeyRequired``). Given a key, every request must carry it in ``x-api-key``, or it is
answered 403 ``{"message": "Forbidden"}`` (``application/json``) before its body is read.
Bounds: a body of at most ``max_request_bytes`` (else 413, error code 413); at most
``max_records_per_request`` records (else 413, error code 413: Confluent's v2 proxy has no count
limit of its own, and 413 is what its framework answers a request too large); records of at most
``max_record_bytes`` (else 50002 for that record alone, as Kafka's 1 MiB default); Kafka's topic
names (else 400, error code 40002).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pintrest_assets import kinesis_proxy
from pintrest_assets.bucket import Bucket
from pintrest_assets.gateway import kinesis as kinesis_routes
from pintrest_assets.gateway.broker import PARTITION, Broker
from pintrest_assets.gateway.protocol import (
    RejectedRecord,
    RestError,
    invalid_topic_name,
    parse_produce_request,
    partition_metadata,
    partition_not_found,
    produce_response,
    request_too_large,
    topic_metadata,
    topic_not_found,
)
from pintrest_assets.rest_proxy_v2 import KAFKA_RETRIABLE_ERROR, V2_RESPONSE
from pintrest_assets.settings import ConfigError
from pintrest_assets.topics import is_valid_topic_name

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8082
# The S3 sink's flush.size and rotation: deploy/msk-connect/ configures the connector alike.
DEFAULT_FLUSH_SIZE = 100
DEFAULT_ROTATE_INTERVAL_MS = 5000
API_KEY_HEADER = "x-api-key"
# What API Gateway answers a request without a valid API key.
FORBIDDEN = {"message": "Forbidden"}
FORBIDDEN_HEADERS = {"x-amzn-ErrorType": "ForbiddenException"}


class ApiKeyRequired(ConfigError):
    """Listening beyond the loopback interface without an API key (or with one that cannot be sent)."""

    def __init__(self, problem: str):
        super().__init__("PINTREST_REST_PROXY_API_KEY", problem)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``); any other name or address is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Gateway:
    """The REST proxy, its Kafka-like write-ahead log and its S3 sink, in one process.

    ``start()`` serves in background threads (port 0 picks a free port, see ``url``);
    ``shutdown()`` stops serving and lands everything pending, partial files included. As a
    context manager it does both. ``topics`` are created at start, for ``auto_create_topics=False``.

    ``api_key``: every request must send it as ``x-api-key``; required unless ``host`` is a
    loopback address (``ApiKeyRequired`` otherwise). It is kept out of logs and ``repr``.

    ``kinesis``: the boto3 Kinesis client the Kinesis-proxy routes call (``KinesisStack`` in
    ``gateway/kinesis.py`` makes one from the settings); None: they answer 503 with
    ``kinesis_unavailable`` as the reason, until ``use_kinesis`` hands one over.
    """

    def __init__(
        self,
        bucket: Bucket,
        state_dir: Path,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        flush_size: int = DEFAULT_FLUSH_SIZE,
        rotate_interval_ms: int = DEFAULT_ROTATE_INTERVAL_MS,
        auto_create_topics: bool = True,
        max_record_bytes: int = 1_048_576,
        max_request_bytes: int = 10_485_760,
        max_records_per_request: int = 10_000,
        fsync: bool = True,
        topics: Iterable[str] = (),
        api_key: str | None = None,
        kinesis=None,
        kinesis_unavailable: str | None = None,
    ):
        if api_key and not (api_key.isascii() and api_key.isprintable() and " " not in api_key):
            raise ApiKeyRequired("the API key must be printable ASCII without spaces (it is sent in a header)")
        if not api_key and not is_loopback(host):
            raise ApiKeyRequired(f"listening on {host or 'every interface'} needs an API key")
        self._api_key = api_key.encode("ascii") if api_key else None
        self.broker = Broker(bucket, Path(state_dir), flush_size, rotate_interval_ms, auto_create_topics, fsync)
        self.host = host
        self.port = port
        self.max_record_bytes = max_record_bytes
        self.max_request_bytes = max_request_bytes
        self.max_records_per_request = max_records_per_request
        self.initial_topics = list(topics)
        self._kinesis = kinesis
        self._kinesis_unavailable = kinesis_unavailable
        self._kinesis_retry_after: int | None = None
        self._httpd: _HTTPServer | None = None
        self._serving: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def bucket(self) -> Bucket:
        return self.broker.bucket

    @property
    def requires_api_key(self) -> bool:
        return self._api_key is not None

    def authorized(self, presented: str | None) -> bool:
        """Whether a request sending ``presented`` as ``x-api-key`` may be served (constant time)."""
        if self._api_key is None:
            return True
        if presented is None:
            return False
        # http.server decodes header bytes as latin-1: encoding back gives the bytes sent.
        return hmac.compare_digest(presented.encode("latin-1", "replace"), self._api_key)

    def start(self) -> Gateway:
        """Recover the state directory, land what a crash left behind, and serve."""
        if self._httpd is not None:
            raise RuntimeError("the gateway is already running")
        httpd = _HTTPServer((self.host, self.port), self)  # first: a port in use fails before any state is touched
        try:
            self.broker.open()
            for topic in self.initial_topics:
                self.broker.create_topic(topic)
        except BaseException:
            httpd.server_close()
            self.broker.close()
            raise
        self._httpd = httpd
        self.port = self._httpd.server_address[1]
        self._serving = threading.Thread(target=self._httpd.serve_forever, args=(0.1,), name="gateway-http")
        self._serving.start()
        log.debug("gateway listening on %s, landing in %s", self.url, self.bucket.url)
        return self

    def shutdown(self, timeout: float = 30.0) -> int:
        """Stop serving, finish requests in flight, land everything pending.

        Returns how many acknowledged records could not land within ``timeout`` seconds (the
        bucket was unreachable); they stay in the state directory and land on the next start.
        """
        if self._httpd is None:
            return 0
        self._httpd.shutdown()
        self._httpd.server_close()
        self._serving.join()
        self._httpd.close_connections(timeout)
        self._httpd = None
        return self.broker.close(timeout)

    def serve_forever(self, on_start: Callable[[Gateway], None] | None = None) -> int:
        """Serve until SIGINT or SIGTERM, then shut down; returns ``shutdown()``'s count.

        Call it from the main thread (it installs the signal handlers). ``on_start`` is called
        once the gateway listens, with the handlers in place.
        """
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if self._httpd is None:
                self.start()
            try:
                if on_start is not None:
                    on_start(self)
                stop.wait()
            finally:
                left = self.shutdown()  # a second signal is ignored here: landing has its own timeout
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return left

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def status(self) -> dict:
        kinesis = self._kinesis
        return {
            "bucket": self.bucket.url,
            "topics": self.broker.status(),
            "kinesis": {
                "endpoint": kinesis.meta.endpoint_url if kinesis is not None else None,
                "ready": kinesis is not None,
                "error": None if kinesis is not None else self._kinesis_unavailable,
            },
        }

    # -- the Kinesis endpoint --------------------------------------------------------------------

    def use_kinesis(self, client) -> None:
        """From now on the Kinesis-proxy routes call ``client`` (a boto3 Kinesis client)."""
        self._kinesis = client

    def kinesis_unavailable(self, reason: str, retry_after: int | None = None) -> None:
        """The Kinesis-proxy routes answer 503 with ``reason`` (and a Retry-After, if given)."""
        self._kinesis, self._kinesis_unavailable, self._kinesis_retry_after = None, reason, retry_after

    def kinesis_client(self):
        """The client the Kinesis-proxy routes call; raises their 503 when there is none."""
        client = self._kinesis
        if client is None:
            raise kinesis_routes.unavailable(self._kinesis_unavailable, self._kinesis_retry_after)
        return client

    def produce(self, topic: str, partition: int, content_type: str | None, body: bytes) -> dict:
        """One v2 produce request; raises ``RestError`` for a request-level failure."""
        parsed = parse_produce_request(body, content_type, self.max_record_bytes, self.max_records_per_request)
        self._check_topic(topic, may_create=self.broker.auto_create_topics)
        if partition != PARTITION:
            raise partition_not_found()
        lines = [p for p in parsed if not isinstance(p, RejectedRecord)]
        try:
            first = self.broker.append(topic, lines)
        except OSError as exc:
            log.error("cannot append to %s: %s", topic, exc)
            raise RestError(500, KAFKA_RETRIABLE_ERROR, f"Kafka error: cannot write the log: {exc}") from None
        offsets = iter(range(first, first + len(lines)))
        return produce_response([p if isinstance(p, RejectedRecord) else next(offsets) for p in parsed])

    def topic(self, topic: str) -> dict:
        self._check_topic(topic)
        return topic_metadata(topic)

    def partition(self, topic: str, partition: int) -> dict:
        self._check_topic(topic)
        if partition != PARTITION:
            raise partition_not_found()
        return partition_metadata(partition)

    def _check_topic(self, topic: str, may_create: bool = False) -> None:
        if not is_valid_topic_name(topic):
            raise invalid_topic_name(topic)
        if not may_create and not self.broker.has_topic(topic):
            raise topic_not_found()


@dataclass(frozen=True)
class Request:
    """What a route's handler gets: the path parameters, the Content-Type and the body."""

    params: dict[str, str]
    content_type: str | None
    body: bytes


@dataclass(frozen=True)
class Route:
    """A route the gateway serves: ``method`` and ``template`` (``/topics/{topic}``: literal
    segments and ``{parameters}``, each one path segment), the API it belongs to (``kind``),
    the handler that answers it, and the media type of its answers.

    Kinds: ``rest-proxy`` (the Kafka REST Proxy v2, what API Gateway forwards:
    ``deploy/api-gateway/kafka-rest-proxy.openapi.yaml`` lists the same routes), ``kinesis``
    (API Gateway's Kinesis proxy: ``deploy/api-gateway/kinesis-proxy.openapi.yaml``, each route
    one Kinesis action) and ``operator`` (the gateway's own, never exposed through API Gateway).
    """

    kind: str
    method: str
    template: str
    handler: Callable[[Gateway, Request], object] = field(compare=False, repr=False)
    media_type: str = V2_RESPONSE

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters if the (unquoted) path ``segments`` fit the template, else None."""
        parts = self.template.strip("/").split("/")
        if len(parts) != len(segments):
            return None
        params = {}
        for part, segment in zip(parts, segments):
            if part.startswith("{") and part.endswith("}"):
                params[part[1:-1]] = segment
            elif part != segment:
                return None
        return params


def _produce(gateway: Gateway, request: Request) -> dict:
    partition = _partition_number(request.params.get("partition", str(PARTITION)))
    return gateway.produce(request.params["topic"], partition, request.content_type, request.body)


ROUTES: tuple[Route, ...] = (
    Route("rest-proxy", "GET", "/topics", lambda gw, req: gw.broker.topics()),
    Route("rest-proxy", "GET", "/topics/{topic}", lambda gw, req: gw.topic(req.params["topic"])),
    Route("rest-proxy", "POST", "/topics/{topic}", _produce),
    Route(
        "rest-proxy",
        "GET",
        "/topics/{topic}/partitions",
        lambda gw, req: [gw.partition(req.params["topic"], PARTITION)],
    ),
    Route(
        "rest-proxy",
        "GET",
        "/topics/{topic}/partitions/{partition}",
        lambda gw, req: gw.partition(req.params["topic"], _partition_number(req.params["partition"])),
    ),
    Route("rest-proxy", "POST", "/topics/{topic}/partitions/{partition}", _produce),
    *(
        Route("kinesis", method, template, kinesis_routes.route_handler(action), kinesis_proxy.CONTENT_TYPE)
        for method, template, action in kinesis_proxy.ROUTES
    ),
    Route("operator", "GET", "/status", lambda gw, req: gw.status()),
)


class _HTTPServer(ThreadingHTTPServer):
    """One thread per connection, keep-alive, and a graceful end for open connections."""

    daemon_threads = True
    request_queue_size = 128  # many emulator threads may connect at once; the default 5 makes them wait

    def __init__(self, address: tuple[str, int], gateway: Gateway):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.gateway = gateway
        self.closing = False
        self.connections: set[_Handler] = set()
        self.connections_changed = threading.Condition()
        super().__init__(address, _Handler)

    def close_connections(self, timeout: float) -> None:
        """End idle keep-alive connections and wait for requests in flight to be answered."""
        with self.connections_changed:
            self.closing = True
            for handler in self.connections:
                if not handler.busy:
                    handler.stop_reading()
            if not self.connections_changed.wait_for(lambda: not self.connections, timeout):
                log.warning("%d connections still open at shutdown", len(self.connections))


class _ClientGone(Exception):
    """The client closed the connection before sending its whole request."""


def _partition_number(text: str) -> int:
    return int(text) if text.isdigit() else -1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection for many batches
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (~40 ms a response), which caps small requests at ~25 a second.
    disable_nagle_algorithm = True
    server_version = "pintrest-gateway"
    server: _HTTPServer
    busy = False

    def setup(self) -> None:
        super().setup()
        with self.server.connections_changed:
            self.server.connections.add(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_changed:
                self.server.connections.discard(self)
                self.server.connections_changed.notify_all()

    def stop_reading(self) -> None:
        # The handler thread is blocked waiting for a next request: make that read see EOF.
        try:
            self.connection.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def parse_request(self) -> bool:
        with self.server.connections_changed:
            self.busy = True
        return super().parse_request()

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        try:
            status, payload, headers, media_type = self._answer()
        except _ClientGone:
            self.close_connection = True
            return
        finally:
            with self.server.connections_changed:
                self.busy = False
        self._send(status, payload, headers, media_type)

    def _answer(self) -> tuple[int, object, dict[str, str], str]:
        """Status, payload, extra headers and media type of the answer to the current request."""
        if not self.server.gateway.authorized(self.headers.get(API_KEY_HEADER)):
            self.close_connection = True  # refused before its body is read: the connection cannot go on
            return 403, FORBIDDEN, FORBIDDEN_HEADERS, "application/json"
        route = None
        try:
            try:
                route, params = self._find_route()
                no_route = None
            except RestError as exc:
                no_route = exc  # answered once the body is read, so the connection can go on
            body = self._read_body()
            if no_route is not None:
                raise no_route
            request = Request(params, self.headers.get("Content-Type"), body)
            return 200, route.handler(self.server.gateway, request), {}, route.media_type
        except _ClientGone:
            raise
        except RestError as exc:
            if route is not None and route.kind == "kinesis" and not isinstance(exc, kinesis_routes.KinesisError):
                return exc.status, {"message": exc.message}, exc.headers, route.media_type  # as API Gateway has it
            return exc.status, exc.body(), exc.headers, route.media_type if route else V2_RESPONSE
        except Exception:
            log.exception("%s %s failed", self.command, self.path)
            if route is not None and route.kind == "kinesis":
                return 500, {"message": "Internal server error"}, {}, route.media_type
            return 500, {"error_code": 500, "message": "Internal Server Error"}, {}, V2_RESPONSE

    def _find_route(self) -> tuple[Route, dict[str, str]]:
        path = urlsplit(self.path).path
        segments = [unquote(p) for p in path.strip("/").split("/")]
        method = "GET" if self.command == "HEAD" else self.command
        matches = [(route, params) for route in ROUTES if (params := route.match(segments)) is not None]
        if not matches:
            raise RestError(404, 404, f"HTTP 404 Not Found: {path}")
        for route, params in matches:
            if route.method == method:
                return route, params
        allowed = ", ".join(sorted({route.method for route, _ in matches}))
        raise RestError(
            405, 405, f"HTTP 405 Method Not Allowed: {self.command} {path} (allowed: {allowed})", {"Allow": allowed}
        )

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise RestError(411, 411, "HTTP 411 Length Required: send the body with a Content-Length")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        if not length_header.strip().isdigit():
            self.close_connection = True
            raise RestError(400, 400, f"HTTP 400 Bad Request: invalid Content-Length {length_header!r}")
        length = int(length_header)
        limit = self.server.gateway.max_request_bytes
        if length > limit:
            self.close_connection = True
            raise request_too_large(f"{length} bytes", f"{limit}")
        body = self.rfile.read(length)
        if len(body) < length:
            raise _ClientGone
        return body

    def _send(self, status: int, payload, headers: dict[str, str], media_type: str) -> None:
        data = json.dumps(payload).encode()
        if self.server.closing:
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)
