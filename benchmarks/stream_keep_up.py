"""Whether the streaming service keeps up with the emulator at full speed.

``pintrest gateway`` (the Kinesis proxy in front of its kinesalite) and ``pintrest stream`` (the
streaming service) run on a temporary home; once the service's queries are up,
``pintrest emulate --stream --posts N`` sends as fast as the proxy acknowledges. The tables'
committed counts are polled every 0.5 s. Prints the proxy's acknowledged rate, the rate at which
rows reached Delta (from the first send to the last row), and how long after the producer
stopped the service had every record (the lag drained).

Usage: python benchmarks/stream_keep_up.py [--posts 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from ports import free_port

PINTREST = [sys.executable, "-m", "pintrest_assets.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pintrest-bench-keepup-"))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PINTREST_") and k != "DAGSTER_HOME"},
        "PINTREST_HOME": str(work / "home"),
        "PINTREST_REST_PROXY_URL": f"http://127.0.0.1:{port}",
        "PINTREST_KINESIS_LOCAL_PORT": str(free_port()),
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("PINTREST_")})
    from pintrest_assets.settings import Settings
    from pintrest_assets.stream.tables import StreamTable
    from pintrest_assets.topics import TOPICS

    settings = Settings.from_env()
    tables = [StreamTable.for_user(settings.warehouse, spec, settings.user_id) for spec in TOPICS]
    subprocess.run([*PINTREST, "seed"], env=env, check=True, capture_output=True)
    gateway = subprocess.Popen(
        [*PINTREST, "gateway", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, start_new_session=True
    )
    service_log = work / "service.log"
    with open(service_log, "wb") as log:
        service = subprocess.Popen(
            [*PINTREST, "stream"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + args.timeout
        while "follow their streams" not in service_log.read_text():
            if service.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(service_log.read_text()[-3000:])
            time.sleep(0.5)
        while not (requests.get(f"{settings.kinesis_proxy_url}/status", timeout=5).json().get("kinesis") or {}).get(
            "ready"
        ):
            time.sleep(0.5)
        time.sleep(5)  # the queries' first (empty) triggers
        started = time.time()
        emulate = subprocess.run(
            [*PINTREST, "emulate", "--stream", "--posts", str(args.posts), "--seed", "1"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        stopped = time.time()
        acknowledged = 3 * args.posts  # checked against the tables below
        read = 0
        while time.monotonic() < deadline:
            read = sum(_state(t).records_read for t in tables)
            if read >= acknowledged:
                break
            time.sleep(0.5)
        drained = time.time()
        load = os.getloadavg()
    finally:
        for process in (service, gateway):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
    print(f"pintrest stream while pintrest emulate --stream --posts {args.posts:,} sends; load average {load[0]:.1f}")
    print(f"  {emulate.stdout.strip().splitlines()[-1] if emulate.stdout.strip() else ''}")
    print(f"  acknowledged by the proxy: {acknowledged:,} records in {stopped - started:.1f} s "
          f"({acknowledged / (stopped - started):,.0f}/s)")
    print(f"  into Delta: {read:,} records in {drained - started:.1f} s from the first send "
          f"({read / (drained - started):,.0f}/s); every record in its table {drained - stopped:.1f} s after "
          f"the producer stopped")
    rows = [_state(t) for t in tables]
    print(f"  micro-batches: {sum((s.batch_id or 0) + 1 for s in rows):,}; rows {sum(s.rows for s in rows):,}")
    shutil.rmtree(work, ignore_errors=True)


def _state(table):
    from pintrest_assets.stream.tables import StreamState

    try:
        return table.state()
    except Exception:  # noqa: BLE001 - a table being created
        return StreamState()


if __name__ == "__main__":
    main()
