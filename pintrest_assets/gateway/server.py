"""The local Kafka REST Proxy v2 gateway: the HTTP API in front of the broker and its S3 sinks.

Endpoints; every response is ``application/vnd.kafka.v2+json``:

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
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pintrest_assets.bucket import Bucket
from pintrest_assets.gateway.broker import PARTITION, Broker
from pintrest_assets.gateway.protocol import (
    RejectedRecord,
    RestError,
    invalid_topic_name,
    parse_produce_request,
    partition_metadata,
    partition_not_found,
    produce_response,
    topic_metadata,
    topic_not_found,
)
from pintrest_assets.rest_proxy_v2 import KAFKA_RETRIABLE_ERROR, V2_RESPONSE
from pintrest_assets.topics import is_valid_topic_name

log = logging.getLogger(__name__)


class Gateway:
    """The REST proxy, its Kafka-like write-ahead log and its S3 sink, in one process.

    ``start()`` serves in background threads (port 0 picks a free port, see ``url``);
    ``shutdown()`` stops serving and lands everything pending, partial files included. As a
    context manager it does both. ``topics`` are created at start, for ``auto_create_topics=False``.
    """

    def __init__(
        self,
        bucket: Bucket,
        state_dir: Path,
        host: str = "127.0.0.1",
        port: int = 8082,
        flush_size: int = 100,
        rotate_interval_ms: int = 5000,
        auto_create_topics: bool = True,
        max_record_bytes: int = 1_048_576,
        max_request_bytes: int = 10_485_760,
        fsync: bool = True,
        topics: Iterable[str] = (),
    ):
        self.broker = Broker(bucket, Path(state_dir), flush_size, rotate_interval_ms, auto_create_topics, fsync)
        self.host = host
        self.port = port
        self.max_record_bytes = max_record_bytes
        self.max_request_bytes = max_request_bytes
        self.initial_topics = list(topics)
        self._httpd: _HTTPServer | None = None
        self._serving: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def bucket(self) -> Bucket:
        return self.broker.bucket

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
        return {"bucket": self.bucket.url, "topics": self.broker.status()}

    def produce(self, topic: str, partition: int, content_type: str | None, body: bytes) -> dict:
        """One v2 produce request; raises ``RestError`` for a request-level failure."""
        parsed = parse_produce_request(body, content_type, self.max_record_bytes)
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
            body = self._read_body()
            payload = self._route(body)
            status, headers = 200, {}
        except _ClientGone:
            self.close_connection = True
            return
        except RestError as exc:
            payload, status, headers = exc.body(), exc.status, exc.headers
        except Exception:
            log.exception("%s %s failed", self.command, self.path)
            payload, status, headers = {"error_code": 500, "message": "Internal Server Error"}, 500, {}
        finally:
            with self.server.connections_changed:
                self.busy = False
        self._send(status, payload, headers)

    def _route(self, body: bytes):
        gateway = self.server.gateway
        path = urlsplit(self.path).path
        parts = [unquote(p) for p in path.strip("/").split("/")]
        content_type = self.headers.get("Content-Type")
        match parts:
            case ["topics"]:
                methods = {"GET": lambda: gateway.broker.topics()}
            case ["topics", topic]:
                methods = {
                    "GET": lambda: gateway.topic(topic),
                    "POST": lambda: gateway.produce(topic, PARTITION, content_type, body),
                }
            case ["topics", topic, "partitions"]:
                methods = {"GET": lambda: [gateway.partition(topic, PARTITION)]}
            case ["topics", topic, "partitions", p]:
                methods = {
                    "GET": lambda: gateway.partition(topic, _partition_number(p)),
                    "POST": lambda: gateway.produce(topic, _partition_number(p), content_type, body),
                }
            case ["status"]:
                methods = {"GET": gateway.status}
            case _:
                raise RestError(404, 404, f"HTTP 404 Not Found: {path}")
        handler = methods.get("GET" if self.command == "HEAD" else self.command)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            raise RestError(
                405, 405, f"HTTP 405 Method Not Allowed: {self.command} {path} (allowed: {allowed})", {"Allow": allowed}
            )
        return handler()

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
            raise RestError(413, 413, f"HTTP 413 Request Entity Too Large: {length} bytes, the limit is {limit}")
        body = self.rfile.read(length)
        if len(body) < length:
            raise _ClientGone
        return body

    def _send(self, status: int, payload, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        if self.server.closing:
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", V2_RESPONSE)
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
