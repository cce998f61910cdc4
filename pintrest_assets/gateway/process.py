"""The local gateway as a process of its own, for the commands that need one running (`pintrest run`, `pintrest dev`)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlparse

from pintrest_assets.ports import listening
from pintrest_assets.settings import ConfigError

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


@contextlib.contextmanager
def local_gateway(
    rest_proxy_url: str, *, kinesis: bool = True, quiet: bool = True, start_timeout: float = 30
) -> Iterator[bool]:
    """Starts ``pintrest gateway`` for a local REST proxy URL that nothing serves, and stops it after.

    Yields whether it started one: a remote URL, or a local one something already listens on,
    is left to what serves it. ``kinesis`` serves the Kinesis-proxy routes too (starting the
    embedded kinesalite when no endpoint is set). ``quiet`` keeps the gateway's banner off stdout; its errors go
    to stderr either way. On leaving, the gateway lands what it holds before it exits.
    """
    url = urlparse(rest_proxy_url)
    host, port = url.hostname, url.port or 80
    if host not in LOCAL_HOSTS or listening(host, port):
        yield False
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "pintrest_assets.cli", "gateway", "--host", host, "--port", str(port)]
        + ([] if kinesis else ["--no-kinesis"]),
        stdout=subprocess.DEVNULL if quiet else None,
        start_new_session=True,  # Ctrl-C in the terminal reaches the command, which stops it in order
    )
    try:
        deadline = time.monotonic() + start_timeout
        while not listening(host, port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ConfigError("PINTREST_REST_PROXY_URL", f"the local gateway did not start on {host}:{port}")
            time.sleep(0.1)
        yield True
    finally:
        process.terminate()  # the gateway lands what is pending before it exits
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
