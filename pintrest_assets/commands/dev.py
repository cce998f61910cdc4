"""``pintrest dev``: the local gateway, the streaming service, a warm Spark and the Dagster UI
together; Ctrl-C stops them all.

The Dagster instance lives in ``$PINTREST_HOME/dagster`` (unless DAGSTER_HOME is set), the same
one ``pintrest run`` records into, so the UI shows its runs too. The streaming service
(``pintrest stream``, a process of its own) keeps the stream tables fresh within seconds and
records each micro-batch in that instance, so the UI's stream tables update as records arrive.

The runs the UI and its daemon launch (a click, ``new_objects_sensor``'s refreshes) are each a
new process. Rather than each starting a Spark JVM of its own, they share one that stays warm: a
local Spark Connect server (``lake.spark_server``), started here unless the settings name a
Spark master or a remote, and handed to the UI as ``PINTREST_SPARK_REMOTE``, which its runs
inherit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from pintrest_assets.commands import pintrest_command

WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"  # at the repository root


@pintrest_command(
    "dev",
    short_help="Start the local gateway, the streaming service, a warm Spark and the Dagster UI.",
    help=(
        "Start the local gateway (if the REST proxy URL is local and nothing serves it), the streaming service "
        "(pintrest stream: the stream tables fresh within seconds), a local Spark Connect server that the UI's "
        "runs share (unless PINTREST_SPARK_MASTER or PINTREST_SPARK_REMOTE is set) and the Dagster UI on the "
        "project's instance; Ctrl-C stops them all."
    ),
    verbose_help="Show the UI's services' log (warnings only without), the gateway's banner and Spark's log",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface the UI listens on; any but loopback is warned about (the UI has no authentication).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True, help="Port of the UI.")
@click.option(
    "--no-stream", is_flag=True, help="Do not start the streaming service (refresh the stream tables by clicking)."
)
def command(settings, verbose: bool, host: str, port: int, no_stream: bool) -> int:
    from pintrest_assets.gateway.process import local_gateway
    from pintrest_assets.instance import SHARED_SPARK_CONCURRENT_RUNS, runs_share_spark, use_project_instance

    if warning := exposure_warning(host):
        click.echo(warning, err=True)

    # Ctrl-C and a plain kill both stop everything, even when started from a script, which
    # leaves SIGINT ignored in background processes.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    shared = wants_warm_spark(settings) or runs_share_spark(settings)
    use_project_instance(settings, concurrent_runs=SHARED_SPARK_CONCURRENT_RUNS if shared else 1)
    service = None
    if not no_stream:
        _create_instance_storage(settings)
        # Its own process and process group: its Spark JVM and the UI's runs stay apart, and one
        # signal stops the service and its JVM. It starts first: its JVM starts while the gateway
        # does, and it waits for the gateway's streams.
        service = subprocess.Popen(
            [sys.executable, "-m", "pintrest_assets.cli", "stream"],
            cwd=WORKSPACE.parent,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        with (
            warm_spark(settings, verbose) as spark_remote,  # its JVM starts while the rest do
            local_gateway(settings.rest_proxy_url, quiet=not verbose) as started,
        ):
            if started:
                print(f"gateway started on {settings.rest_proxy_url}")
            if service is not None:
                print("stream service started (pintrest stream): the stream tables follow their streams", flush=True)
            ui_env = {**os.environ, "PINTREST_SPARK_REMOTE": spark_remote} if spark_remote else None
            ui = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE), "-h", host, "-p", str(port)]
                + ([] if verbose else ["--log-level", "warning", "--code-server-log-level", "error"]),
                cwd=WORKSPACE.parent,
                env=ui_env,  # its runs inherit it
                start_new_session=True,  # its own process group: one signal stops the UI and its daemon
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
            print(f"Dagster UI on http://{host}:{port} (Ctrl-C stops it and the rest)", flush=True)
            try:
                while True:  # a timeout, so a signal the kernel hands to another thread still gets handled
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        return ui.wait(timeout=0.5)
            except KeyboardInterrupt:
                return 0
            finally:
                _stop(ui)
                if service is not None:
                    _stop(service)  # before the gateway and its Kinesis
    finally:
        if service is not None:
            _stop(service)


def wants_warm_spark(settings) -> bool:
    """Whether ``pintrest dev`` starts its own Spark Connect server: unless the settings name a
    Spark master or a remote."""
    return not (settings.spark_remote or os.environ.get("PINTREST_SPARK_MASTER"))


@contextlib.contextmanager
def warm_spark(settings, verbose: bool) -> Iterator[str | None]:
    """A local Spark Connect server for the UI's runs, stopped on leaving; yields its URL, or
    None when the settings name a Spark master or a remote of their own (the runs use that)."""
    if not wants_warm_spark(settings):
        yield None
        return
    from pintrest_assets.lake.spark_server import local_spark_connect

    def failed(message: str) -> None:
        click.echo(f"warning: {message}; the UI's runs cannot use Spark until pintrest dev restarts", err=True)

    with local_spark_connect(settings.home, verbose=verbose, on_error=failed) as server:
        print(f"Spark Connect server started on {server.url}: the UI's runs share its warm Spark", flush=True)
        yield server.url


def exposure_warning(host: str) -> str | None:
    """The warning for a UI that listens beyond loopback, where anyone who reaches it may use it."""
    from pintrest_assets.gateway.server import is_loopback

    if is_loopback(host):
        return None
    return (
        f"warning: the Dagster UI listens on {host}, reachable beyond this machine. It has no "
        "authentication, and anyone who reaches it can launch runs and wipe assets: put it behind "
        'an authenticating proxy (README: "The Dagster UI beyond this machine").'
    )


def _create_instance_storage(settings) -> None:
    """Creates the instance's storage before the service and the UI open it together: two
    processes creating a new SQLite storage at once may both stamp its schema version, and
    Dagster then refuses it (``project_instance`` creates it under a lock)."""
    from pintrest_assets.instance import project_instance

    with project_instance(settings):
        pass


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
