"""The gateway's HTTP plumbing: routes as data, one thread per connection, keep-alive, the API
key check, bounded bodies, and answers shaped as each route's API writes them.

``GatewayHTTPServer(address, gateway, routes)`` serves ``routes`` (``Route``: method, path
template, handler) for ``gateway``: a request is matched against the routes by its path
segments, its body read (``Content-Length`` only, at most ``gateway.max_request_bytes``), and
the route's handler called with the gateway and a ``Request``; its return value is the JSON
answer. A handler raises ``RestError`` to refuse; the route's ``error_body`` writes it. Without a
valid ``x-api-key`` (``gateway.authorized``) a request is answered 403 as API Gateway answers it,
before its body is read. ``close_connections`` ends idle keep-alive connections at shutdown
and waits for requests in flight.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from pintrest_assets.kafka.protocol import RestError, request_too_large
from pintrest_assets.kafka.rest_proxy_v2 import V2_RESPONSE

if TYPE_CHECKING:
    from pintrest_assets.gateway.server import Gateway

log = logging.getLogger(__name__)

API_KEY_HEADER = "x-api-key"
# What API Gateway answers a request without a valid API key.
FORBIDDEN = {"message": "Forbidden"}
FORBIDDEN_HEADERS = {"x-amzn-ErrorType": "ForbiddenException"}
# What the REST proxy answers when a request fails unexpectedly.
INTERNAL_ERROR = {"error_code": 500, "message": "Internal Server Error"}


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
    the handler that answers it, the media type of its answers, and how its errors are written.

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
    # How the route's API writes a refusal, and what it answers when the handler fails unexpectedly.
    error_body: Callable[[RestError], object] = field(default=RestError.body, compare=False, repr=False)
    internal_error: dict = field(default_factory=lambda: dict(INTERNAL_ERROR), compare=False, repr=False)

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


class GatewayHTTPServer(ThreadingHTTPServer):
    """One thread per connection, keep-alive, and a graceful end for open connections."""

    daemon_threads = True
    request_queue_size = 128  # many emulator threads may connect at once; the default 5 makes them wait

    def __init__(self, address: tuple[str, int], gateway: Gateway, routes: tuple[Route, ...]):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.gateway = gateway
        self.routes = routes
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection for many batches
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (~40 ms a response), which caps small requests at ~25 a second.
    disable_nagle_algorithm = True
    server_version = "pintrest-gateway"
    server: GatewayHTTPServer
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
            if route is None:
                return exc.status, exc.body(), exc.headers, V2_RESPONSE
            return exc.status, route.error_body(exc), exc.headers, route.media_type
        except Exception:
            log.exception("%s %s failed", self.command, self.path)
            if route is None:
                return 500, INTERNAL_ERROR, {}, V2_RESPONSE
            return 500, route.internal_error, {}, route.media_type

    def _find_route(self) -> tuple[Route, dict[str, str]]:
        path = urlsplit(self.path).path
        segments = [unquote(p) for p in path.strip("/").split("/")]
        method = "GET" if self.command == "HEAD" else self.command
        matches = [(route, params) for route in self.server.routes if (params := route.match(segments)) is not None]
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
