"""``pintrest dev``: the local gateway and the Dagster UI together; Ctrl-C stops both.

The Dagster instance lives in ``$PINTREST_HOME/dagster`` (unless DAGSTER_HOME is set), the same
one ``pintrest run`` records into, so the UI shows its runs too.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from pintrest_assets.commands.run import local_gateway
from pintrest_assets.instance import use_project_instance
from pintrest_assets.settings import Settings

WORKSPACE = Path(__file__).resolve().parent.parent / "workspace.yaml"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)


def run(args, settings: Settings) -> int:
    # Ctrl-C and a plain kill both stop everything, even when started from a script, which
    # leaves SIGINT ignored in background processes.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    use_project_instance(settings)
    with local_gateway(settings):
        ui = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE), "-h", args.host, "-p", str(args.port)],
            cwd=WORKSPACE.parent,
            start_new_session=True,  # its own process group: one signal stops the UI and its daemon
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        print(f"Dagster UI on http://{args.host}:{args.port} (Ctrl-C stops it and the gateway)")
        try:
            return ui.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            _stop(ui)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
