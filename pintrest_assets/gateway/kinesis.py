"""The local gateway's Kinesis-proxy routes, and the Kinesis endpoint behind them.

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

``KinesisStack`` is that endpoint, from the settings: on the embedded default it starts
kinesalite (``LocalKinesis``) with its data under ``$PINTREST_HOME/kinesis``, else it connects
to ``PINTREST_KINESIS_ENDPOINT_URL`` (``aws``: AWS's endpoint for boto3's region) with boto3's
credentials; either way it creates whichever of the three streams is missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pintrest_assets import kinesis_proxy
from pintrest_assets.gateway.protocol import RestError
from pintrest_assets.settings import ConfigError

log = logging.getLogger(__name__)

# API Gateway's integration timeout: past it, the client is answered 504.
INTEGRATION_TIMEOUT_SECONDS = 29.0
DEFAULT_SHARDS = 1  # per stream, when the stack creates the three streams


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


# -- the endpoint behind the routes -------------------------------------------------------------


class KinesisStack:
    """The Kinesis endpoint behind the local gateway, as the settings choose it.

    ``open()`` starts the embedded kinesalite if it is the one (after ending one that a killed
    gateway left running on the same data), connects, creates whichever of the three streams
    is missing, and returns the boto3 client for the routes; ``attach(gateway)`` does it in the
    background and hands the client to the gateway, whose Kinesis routes answer 503 until then;
    ``close()`` stops what ``open()`` started. Also a context manager (``open``/``close``).
    """

    def __init__(
        self,
        endpoint_url: str | None,
        *,
        user_id: str,
        kinesis_dir: Path | None = None,
        local_port: int | None = None,
        region: str | None = None,
        shard_count: int = DEFAULT_SHARDS,
        install_dir: str | os.PathLike | None = None,
    ):
        """``endpoint_url`` None with ``kinesis_dir`` and ``local_port``: the embedded kinesalite;
        ``"aws"``: AWS's endpoint for ``region`` (or boto3's); else that URL."""
        if endpoint_url is None and (kinesis_dir is None or local_port is None):
            raise ValueError("the embedded Kinesis needs kinesis_dir and local_port")
        self.endpoint_url = endpoint_url
        self.user_id = user_id
        self.kinesis_dir = Path(kinesis_dir) if kinesis_dir is not None else None
        self.local_port = local_port
        self.region = region or _region_of(endpoint_url)
        self.shard_count = shard_count
        self.install_dir = install_dir
        self.local = None  # the LocalKinesis started by open()
        self.client = None
        self._data_lock: FileLock | None = None  # held from the embedded kinesalite's start to close()
        self._guard = threading.Lock()
        self._closed = False
        self._attaching: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings, shard_count: int = DEFAULT_SHARDS) -> KinesisStack:
        return cls(
            settings.kinesis_endpoint_url,
            user_id=settings.user_id,
            kinesis_dir=settings.kinesis_dir,
            local_port=settings.kinesis_local_port,
            shard_count=shard_count,
        )

    @property
    def embedded(self) -> bool:
        return self.endpoint_url is None

    @property
    def setting(self) -> str:
        """The setting to name when the endpoint fails."""
        return "PINTREST_KINESIS_LOCAL_PORT" if self.embedded else "PINTREST_KINESIS_ENDPOINT_URL"

    @property
    def data_dir(self) -> Path | None:
        return self.kinesis_dir / "data" if self.embedded else None

    @property
    def client_endpoint(self) -> str | None:
        if self.embedded:
            return f"http://127.0.0.1:{self.local_port}"
        return None if self.endpoint_url == "aws" else self.endpoint_url

    def describe(self) -> str:
        """One line for a banner: where the Kinesis routes go."""
        if self.embedded:
            return f"the embedded kinesalite on {self.client_endpoint} (data in {self.data_dir})"
        if self.client_endpoint is None:
            return f"AWS Kinesis in {self.region or 'the region boto3 finds'}"
        return f"Kinesis at {self.client_endpoint}"

    # -- opening and closing -------------------------------------------------------------------

    def open(self):
        """Start or connect, create the missing streams; the boto3 client for the routes.

        Raises ``ConfigError`` naming the setting to change when the endpoint cannot be had.
        """
        from pintrest_assets.kinesis.streams import ensure_streams, kinesis_client

        with self._guard:
            if self._closed:
                raise RuntimeError("the Kinesis stack is closed")
            if self.client is not None:
                return self.client
            if self.embedded:
                self._start_embedded()
        # The routes' client does not retry: as through API Gateway, the client does.
        client = kinesis_client(
            self.client_endpoint, self.region, max_attempts=1, read_timeout=INTEGRATION_TIMEOUT_SECONDS
        )
        admin = kinesis_client(self.client_endpoint, self.region, max_attempts=5, read_timeout=30)
        try:
            ensure_streams(admin, self.user_id, self.shard_count, timeout=300)
        except Exception as exc:  # noqa: BLE001 - reported with the setting to check
            if self._closed:  # stopped while it started: nothing to report
                return None
            if self.embedded:
                self.close()
                raise ConfigError(self.setting, f"the embedded Kinesis did not take the streams: {exc}") from None
            # A real Kinesis may hold the streams already and only refuse this identity their creation.
            log.warning("could not make sure the streams exist on %s: %s", self.describe(), exc)
        with self._guard:
            if self._closed:  # closed meanwhile (the gateway stopped while this started)
                return None
            self.client = client
        return client

    def attach(self, gateway) -> threading.Thread:
        """``open()`` in the background, then ``gateway.use_kinesis(client)``; until then the
        gateway's Kinesis routes answer 503 (Retry-After: 1), and after a failure 503 saying why."""
        gateway.kinesis_unavailable(f"Kinesis is starting: {self.describe()}", retry_after=1)

        def run() -> None:
            try:
                client = self.open()
            except Exception as exc:  # noqa: BLE001 - the routes say why, the Kafka routes go on
                log.warning("the Kinesis proxy routes are unavailable: %s", exc)
                gateway.kinesis_unavailable(f"no Kinesis behind this gateway: {exc}")
                return
            if client is not None:
                gateway.use_kinesis(client)

        self._attaching = threading.Thread(target=run, name="kinesis-stack", daemon=True)
        self._attaching.start()
        return self._attaching

    def close(self, timeout: float = 30.0) -> None:
        """Stop the embedded kinesalite if ``open()`` started it (what it acknowledged stays on disk)."""
        with self._guard:
            self._closed = True
            local, self.local = self.local, None
            self.client = None
        if self._attaching is not None and self._attaching is not threading.current_thread():
            self._attaching.join(timeout)
        if local is not None:
            local.stop()
            with contextlib.suppress(OSError):
                self._pid_file.unlink()
        if self._data_lock is not None:
            self._data_lock.release()
            self._data_lock = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the embedded kinesalite ---------------------------------------------------------------

    @property
    def _pid_file(self) -> Path:
        return self.kinesis_dir / "kinesalite.pid"

    def _start_embedded(self) -> None:
        from pintrest_assets.kinesis.local_server import KinesaliteUnavailable, LocalKinesis

        self.kinesis_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.kinesis_dir / ".lock", thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise ConfigError(
                "PINTREST_HOME", f"another gateway runs the embedded Kinesis in {self.kinesis_dir}; stop it first"
            ) from None
        # A gateway killed without a chance to stop its kinesalite leaves it running on our data.
        _end_orphan(self._pid_file, self.data_dir)
        local = LocalKinesis(
            self.data_dir, self.local_port, install_dir=self.install_dir, log_file=self.kinesis_dir / "kinesalite.log"
        )
        try:
            local.start()
        except BaseException as exc:
            lock.release()
            if not isinstance(exc, KinesaliteUnavailable):
                raise
            busy = "already taken" in str(exc) or "EADDRINUSE" in str(exc)
            setting = "PINTREST_KINESIS_LOCAL_PORT" if busy else "PINTREST_KINESIS_ENDPOINT_URL"
            hint = (
                "choose another port"
                if setting == "PINTREST_KINESIS_LOCAL_PORT"
                else "install Node.js and npm, or point PINTREST_KINESIS_ENDPOINT_URL at a Kinesis"
            )
            raise ConfigError(setting, f"{exc} ({hint})") from None
        self._data_lock = lock
        self._pid_file.write_text(f"{local.process.pid}\n")
        self.local = local


def _region_of(endpoint_url: str | None) -> str | None:
    """The region of an AWS Kinesis endpoint URL (``https://kinesis.<region>.amazonaws.com``)."""
    match = re.match(r"^https?://kinesis(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com", endpoint_url or "")
    return match[1] if match else None


def _end_orphan(pid_file: Path, data_dir: Path, timeout: float = 10.0) -> None:
    """End the kinesalite named in ``pid_file`` if it still runs on ``data_dir``: a gateway
    killed before it could stop its kinesalite left it behind, holding the port and the data."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    command = _command_line(pid)
    if not command or "kinesalite" not in command or str(data_dir) not in command:
        return  # gone, or the pid now belongs to another process
    log.warning("ending kinesalite (pid %d) left running on %s by a gateway that was killed", pid, data_dir)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _command_line(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _command_line(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _command_line(pid):
            time.sleep(0.05)


def _command_line(pid: int) -> str | None:
    """The command line of a live process ``pid``, None if there is none (or only a zombie)."""
    if Path("/proc/self/cmdline").exists():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None
    try:  # no /proc (macOS)
        result = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return result.stdout.strip() or None


def route_handler(action: str):
    """The gateway's handler of the route calling ``action``: the client from the gateway, then the route."""
    handler = HANDLERS[action]

    def handle(gateway, request: Any) -> dict:
        return handler(gateway.kinesis_client(), request)

    handle.__name__ = handler.__name__
    return handle
