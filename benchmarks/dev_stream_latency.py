"""How fresh the stream tables are under ``pintrest dev``, with no click.

The set-up a user has: ``pintrest dev`` (the local gateway with kinesalite, the Dagster UI and
its daemon) in one terminal, ``pintrest emulate --stream --forever`` in another. Nothing else:
``stream_tables_sensor`` sees the records and requests a run, which starts Spark, refreshes the
three stream tables and then follows the streams. Two figures:

1. first rows: seconds from the emulator's start to the first row in each stream table (the
   sensor's tick, the run's queue and process, a cold Spark and the first refresh);
2. steady state: sampled every second for ``--steady`` seconds after that, the age of the newest
   record each table holds (now minus its arrival in Kinesis): median, p95 and max.

Everything runs in a temporary PINTREST_HOME on free ports; the machine's load is printed with
the figures, as the emulator, kinesalite, the gateway, Dagster and Spark share its cores.

Usage: python benchmarks/dev_stream_latency.py [--rate 10] [--steady 120]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
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
    parser.add_argument("--rate", type=float, default=None, help="posts per second (default: --forever's own)")
    parser.add_argument("--steady", type=float, default=120.0, help="seconds of steady-state samples")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the first rows")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pintrest-bench-dev-"))
    ui_port, proxy_port, kinesis_port = free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PINTREST_") and k != "DAGSTER_HOME"},
        "PINTREST_HOME": str(work / "home"),
        "PINTREST_REST_PROXY_URL": f"http://127.0.0.1:{proxy_port}",
        "PINTREST_KINESIS_LOCAL_PORT": str(kinesis_port),
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("PINTREST_")})
    from pintrest_assets.settings import Settings
    from pintrest_assets.stream.tables import StreamTable
    from pintrest_assets.topics import TOPICS

    settings = Settings.from_env()
    tables = [StreamTable.for_user(settings.warehouse, spec, settings.user_id) for spec in TOPICS]
    subprocess.run([*PINTREST, "seed"], env=env, check=True, capture_output=True)
    log = open(work / "dev.log", "wb")  # noqa: SIM115 - open while the UI runs
    dev = subprocess.Popen(
        [*PINTREST, "dev", "--port", str(ui_port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    emulator = None
    try:
        _wait_for(f"http://127.0.0.1:{ui_port}/server_info", dev, work / "dev.log")
        time.sleep(15)  # the daemon's first ticks, with nothing to do
        rate = ["--rate", f"{args.rate:g}"] if args.rate else []
        emulator = subprocess.Popen(
            [*PINTREST, "emulate", "--stream", "--forever", *rate],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started = time.time()
        first: dict[str, float] = {}
        while len(first) < len(tables) and time.time() - started < args.timeout:
            for table in tables:
                if table.name not in first and _rows(table):
                    first[table.name] = time.time() - started
            time.sleep(0.25)
        ages = []
        sampling = time.time()
        while time.time() - sampling < args.steady:
            for table in tables:
                arrivals = _arrivals(table)
                if arrivals:
                    ages.append(time.time() - max(arrivals.values()))
            time.sleep(1)
        load = os.getloadavg()
    finally:
        for process in (emulator, dev):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        log.close()

    pace = f"{args.rate:g} posts/s" if args.rate else "--forever's default pace"
    print(f"pintrest dev + pintrest emulate --stream --forever ({pace}); load average {load[0]:.1f}")
    for table in tables:
        seconds = first.get(table.name)
        print(f"  first rows in {table.name}: " + (f"{seconds:.1f} s" if seconds else f"none in {args.timeout:g} s"))
    if ages:
        ages.sort()
        print(
            f"  steady state, age of the newest row, {len(ages)} samples over {args.steady:g} s: "
            f"median {statistics.median(ages):.1f} s, p95 {ages[int(0.95 * (len(ages) - 1))]:.1f} s, "
            f"max {ages[-1]:.1f} s"
        )
    shutil.rmtree(work, ignore_errors=True)


def _rows(table) -> int:
    try:
        return table.state().rows
    except Exception:  # noqa: BLE001 - a table being created
        return 0


def _arrivals(table) -> dict:
    try:
        return dict(table.state().arrivals)
    except Exception:  # noqa: BLE001 - a table being created
        return {}


def _wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"pintrest dev exited:\n{log.read_text()[-3000:]}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.5)
    raise SystemExit(f"no Dagster UI at {url} after {timeout:g} s")


if __name__ == "__main__":
    main()
