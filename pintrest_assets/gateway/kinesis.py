"""The Kinesis endpoint behind the local gateway's Kinesis-proxy routes (``kinesis_routes``).

``KinesisStack`` is that endpoint, from the settings: on the embedded default it starts
kinesalite (``LocalKinesis``) with its data under ``$PINTREST_HOME/kinesis``, else it connects
to ``PINTREST_KINESIS_ENDPOINT_URL`` (``aws``: AWS's endpoint for boto3's region) with boto3's
credentials; either way it creates whichever of the three streams is missing. One gateway per
home runs the embedded kinesalite: ``<home>/kinesis/.lock``, a ``filelock`` lock held while it
runs, keeps a second one off its data.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

from filelock import FileLock, Timeout

from pintrest_assets.gateway.kinesis_routes import INTEGRATION_TIMEOUT_SECONDS
from pintrest_assets.settings import ConfigError

log = logging.getLogger(__name__)

DEFAULT_SHARDS = 1  # per stream, when the stack creates the three streams


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
        if self._data_lock is not None:
            self._data_lock.release()
            self._data_lock = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the embedded kinesalite ---------------------------------------------------------------

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
        # A gateway killed without a chance to stop its kinesalite leaves it running on our data:
        # the pid file lets start() end it.
        local = LocalKinesis(
            self.data_dir,
            self.local_port,
            install_dir=self.install_dir,
            log_file=self.kinesis_dir / "kinesalite.log",
            pid_file=self.kinesis_dir / "kinesalite.pid",
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
        self.local = local


def _region_of(endpoint_url: str | None) -> str | None:
    """The region of an AWS Kinesis endpoint URL (``https://kinesis.<region>.amazonaws.com``)."""
    match = re.match(r"^https?://kinesis(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com", endpoint_url or "")
    return match[1] if match else None
