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
  ``gateway/kinesis_routes.py``. Without an endpoint they answer 503. ``GET /status`` has a
  ``kinesis`` entry: ``{"endpoint", "ready", "error"}``.

``ROUTES`` lists them as data, with the API each belongs to; requests are dispatched through it
(``gateway/http.py`` serves them), and the deployment files (``deploy/api-gateway/``) are
checked against it.

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
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from pintrest_assets.kinesis import proxy_contract as kinesis_proxy
from pintrest_assets.bucket import Bucket
from pintrest_assets.gateway import kinesis_routes
from pintrest_assets.kafka.broker import PARTITION, Broker
from pintrest_assets.gateway.http import GatewayHTTPServer, Request, Route
from pintrest_assets.kafka.protocol import (
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
from pintrest_assets.kafka.rest_proxy_v2 import KAFKA_RETRIABLE_ERROR
from pintrest_assets.settings import ConfigError
from pintrest_assets.topics import is_valid_topic_name

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8082
# The S3 sink's flush.size and rotation: deploy/msk-connect/ configures the connector alike.
DEFAULT_FLUSH_SIZE = 100
DEFAULT_ROTATE_INTERVAL_MS = 1000


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
        self._httpd: GatewayHTTPServer | None = None
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
        # First: a port in use fails before any state is touched.
        httpd = GatewayHTTPServer((self.host, self.port), self, ROUTES)
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
                # Woken twice a second: Python runs a signal's handler in the main thread only, and a
                # SIGTERM the kernel hands to another thread does not wake a wait without a timeout.
                while not stop.wait(0.5):
                    pass
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
        Route(
            "kinesis",
            method,
            template,
            kinesis_routes.route_handler(action),
            kinesis_proxy.CONTENT_TYPE,
            error_body=kinesis_routes.error_body,
            internal_error=kinesis_routes.INTERNAL_ERROR,
        )
        for method, template, action in kinesis_proxy.ROUTES
    ),
    Route("operator", "GET", "/status", lambda gw, req: gw.status()),
)


def _partition_number(text: str) -> int:
    return int(text) if text.isdigit() else -1
