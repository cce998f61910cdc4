"""``pintrest dev``: the local gateway, the streaming service and the Dagster UI together; Ctrl-C
stops all three.

The Dagster instance lives in ``$PINTREST_HOME/dagster`` (unless DAGSTER_HOME is set), the same
one ``pintrest run`` records into, so the UI shows its runs too. The streaming service
(``pintrest stream``, a process of its own) keeps the stream tables fresh within seconds and
records each micro-batch in that instance, so the UI's stream tables update as records arrive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click

from pintrest_assets.commands import pintrest_command

WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"  # at the repository root


@pintrest_command(
    "dev",
    short_help="Start the local gateway, the streaming service and the Dagster UI.",
    help=(
        "Start the local gateway (if the REST proxy URL is local and nothing serves it), the streaming service "
        "(pintrest stream: the stream tables fresh within seconds) and the Dagster UI on the project's instance; "
        "Ctrl-C stops all three."
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
    from pintrest_assets.instance import use_project_instance

    if warning := exposure_warning(host):
        click.echo(warning, err=True)

    # Ctrl-C and a plain kill both stop everything, even when started from a script, which
    # leaves SIGINT ignored in background processes.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    use_project_instance(settings)
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
        with local_gateway(settings.rest_proxy_url, quiet=not verbose) as started:
            if started:
                print(f"gateway started on {settings.rest_proxy_url}")
            if service is not None:
                print("stream service started (pintrest stream): the stream tables follow their streams", flush=True)
            ui = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE), "-h", host, "-p", str(port)]
                + ([] if verbose else ["--log-level", "warning", "--code-server-log-level", "error"]),
                cwd=WORKSPACE.parent,
                start_new_session=True,  # its own process group: one signal stops the UI and its daemon
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
            print(
                f"Dagster UI on http://{host}:{port} (Ctrl-C stops it, the stream service and the gateway)", flush=True
            )
            try:
                return ui.wait()
            except KeyboardInterrupt:
                return 0
            finally:
                _stop(ui)
                if service is not None:
                    _stop(service)  # before the gateway and its Kinesis
    finally:
        if service is not None:
            _stop(service)


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
    Dagster then refuses it."""
    import dagster as dg

    from pintrest_assets.instance import project_instance

    with project_instance(settings) as instance:
        instance.get_runs(limit=1)
        instance.fetch_materializations(dg.AssetKey("pinterest_data"), limit=1)
        instance.all_instigator_state()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
