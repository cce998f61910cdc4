"""How fresh the batch half is under ``pintrest dev``, with no click.

The set-up a user has: ``pintrest dev`` (the local gateway, the Dagster UI and its daemon) and
posts sent through the REST proxy at ``--rate`` posts a second, as ``pintrest emulate --forever``
sends them (the same ``emulate`` call, in this process, so that each acknowledgement's time is
known: the emulator sends a second's posts as one request per topic). Nothing else:
``new_objects_sensor`` sees the objects the sink lands and requests a run, which mounts them and
appends them to df_pin, df_geo and df_user. Figures:

1. first row: seconds from the first send to the first row in df_pin;
2. acknowledgement -> row: for every pin record acknowledged over ``--steady`` seconds, from its
   acknowledgement to the first moment df_pin (its Delta table, polled every 0.2 s) holds it:
   median, p95 and max. df_pin's rows are its topic's records in offset order (one partition;
   the sink lands and the mount reads in key order), so record ``k`` is in once it has ``k + 1``
   rows;
3. with ``--transform``, ``transform_on_new_dataframes`` is turned on (through the
   UI's GraphQL API, as the switch in the UI does) and the same is measured to the answers:
   from a pin record's acknowledgement to the first answer materialised from a pin_clean that
   read it (pin_clean's ``rows_in``: the df_pin rows it read).

``--gateway-rotate-ms`` starts the gateway first with that rotate interval (``pintrest dev`` then
uses it), to measure the sink's share. Everything runs in a temporary PINTREST_HOME on free
ports; the machine's load is printed with the figures.

``--ref COMMIT`` first measures that commit's ``pintrest dev`` (its files from ``git archive``),
side by side.

Usage: python benchmarks/dev_batch_latency.py [--rate 10] [--steady 120] [--transform]
       [--gateway-rotate-ms MS] [--ref COMMIT]
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from ports import free_port
from processes import stop_process

PINTREST = [sys.executable, "-m", "pintrest_assets.cli"]
REPO = Path(__file__).resolve().parent.parent
ANSWER = "most_popular_category_by_country"
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10.0, help="posts per second (--forever's default: 10)")
    parser.add_argument("--steady", type=float, default=120.0, help="seconds of sending measured")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the first row")
    parser.add_argument("--transform", action="store_true", help="turn transform_on_new_dataframes on")
    parser.add_argument("--gateway-rotate-ms", type=int, help="start the gateway with this rotate interval")
    parser.add_argument("--ref", help="also measure this commit's pintrest dev first, side by side")
    args = parser.parse_args()

    sides = []
    if args.ref:
        tree = Path(tempfile.mkdtemp(prefix="pintrest-bench-ref-"))
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.ref], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        sides.append((f"ref {args.ref}", tree))
    sides.append(("working tree", REPO))
    for label, tree in sides:
        figures = measure(tree, args)
        rotate = f", gateway rotate interval {args.gateway_rotate_ms} ms" if args.gateway_rotate_ms else ""
        print(f"{label}: pintrest dev + posts at {args.rate:g}/s through the REST proxy for {args.steady:g} s"
              f"{rotate}{', transform_on_new_dataframes on' if args.transform else ''}; "
              f"load average {figures['load']:.1f}")
        first = figures["first"]
        print("  first row in df_pin: " + (f"{first:.1f} s after the first send" if first is not None else "none"))
        _print_latencies("  acknowledgement -> row in df_pin", figures["rows"])
        print(f"  runs: {figures['runs']}")
        print(f"  Spark Connect server: {figures['spark_server']}")
        if args.transform:
            _print_latencies("  acknowledgement -> answers refreshed", figures["answers"])
            print(f"  answer refreshes: {figures['refreshes']}")
        if tree != REPO:
            shutil.rmtree(tree, ignore_errors=True)


def measure(tree: Path, args) -> dict:
    """One side: ``pintrest dev`` of the code in ``tree``, posts sent, df_pin (and the answers) watched."""
    work = Path(tempfile.mkdtemp(prefix="pintrest-bench-dev-batch-"))
    ui_port, proxy_port, kinesis_port = free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PINTREST_") and k != "DAGSTER_HOME"},
        "PINTREST_HOME": str(work / "home"),
        "PINTREST_REST_PROXY_URL": f"http://127.0.0.1:{proxy_port}",
        "PINTREST_KINESIS_LOCAL_PORT": str(kinesis_port),
    }
    if tree != REPO:
        env["PYTHONPATH"] = str(tree)
    os.environ.update({k: v for k, v in env.items() if k.startswith("PINTREST_")})
    from pintrest_assets.emulation.emulator import emulate
    from pintrest_assets.resources import database_for, rest_proxy_for
    from pintrest_assets.lake.warehouse import WarehouseTable
    from pintrest_assets.settings import Settings

    settings = Settings.from_env()
    df_pin = WarehouseTable(settings.warehouse, "df_pin")
    subprocess.run([*PINTREST, "seed"], env=env, cwd=tree, check=True, capture_output=True)
    log = open(work / "dev.log", "wb")  # noqa: SIM115 - open while the UI runs
    processes = []
    acks: list[tuple[float, int]] = []  # (time, pin records acknowledged so far)
    rows: list[tuple[float, int]] = []  # (time, rows in df_pin)
    stop = threading.Event()
    try:
        if args.gateway_rotate_ms:
            processes.append(subprocess.Popen(
                [*PINTREST, "gateway", "--port", str(proxy_port), "--rotate-interval-ms", str(args.gateway_rotate_ms)],
                env=env, cwd=tree, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))
        processes.append(subprocess.Popen(
            [*PINTREST, "dev", "--port", str(ui_port)], env=env, cwd=tree, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        ))
        _wait_for(f"http://127.0.0.1:{ui_port}/server_info", processes[-1], work / "dev.log")
        if args.transform:
            _start_sensor(ui_port, "transform_on_new_dataframes")
        time.sleep(15)  # the daemon's first ticks, with nothing to do

        database = database_for(settings, resolve_secrets=True)
        proxy = rest_proxy_for(settings, resolve_secrets=True)

        def on_chunk(report, n):
            acks.append((time.time(), report.topics["pin"].sent))

        sender = threading.Thread(
            target=emulate, args=(database, proxy, None),
            kwargs={"rate": args.rate, "rng": random.Random(7), "on_chunk": on_chunk, "stop": stop}, daemon=True,
        )
        started = time.time()
        sender.start()
        deadline = started + args.steady
        while True:
            now = time.time()
            if now > deadline:
                stop.set()
            n = _rows(df_pin)
            if not rows or n != rows[-1][1]:
                rows.append((now, n))
            sent = acks[-1][1] if acks else 0
            if stop.is_set() and (n >= sent or now > deadline + args.timeout):
                break
            time.sleep(0.2)
        sender.join(timeout=30)
        answers = []
        while args.transform:
            answers = _answer_refreshes(work / "home" / "dagster")
            if (answers and answers[-1][1] >= acks[-1][1]) or time.time() > deadline + 2 * args.timeout:
                break
            time.sleep(5)
        runs = _runs(work / "home" / "dagster")
        load = os.getloadavg()[0]
        spark_server = _connect_server_peak_rss(work / "dev.log")
    finally:
        stop.set()
        for process in reversed(processes):
            stop_process(process, timeout=60)
        log.close()
    first = next((t - started for t, n in rows if n), None)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "first": first,
        "rows": _latencies(acks, rows),
        "answers": _latencies(acks, answers),
        "refreshes": len(answers),
        "runs": runs,
        "load": load,
        "spark_server": spark_server,
    }


def _runs(dagster_home: Path) -> str:
    """How many runs the instance holds, their median duration, and the median of each part of a
    run: queued (requested -> the launcher starts its process), the process's start (-> the run
    starts in it: Python, Dagster, the definitions), resources (-> its first step starts), steps."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    phases: dict[str, list[float]] = {"queued": [], "process start": [], "resources": [], "steps": []}
    steps: dict[str, list[float]] = {}
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records()
        durations = sorted(r.end_time - r.start_time for r in records if r.start_time and r.end_time)
        for record in records:
            times: dict[str, float] = {}
            started: dict[str, float] = {}
            for entry in instance.all_logs(record.dagster_run.run_id):
                kind = entry.dagster_event_type
                if kind == dg.DagsterEventType.STEP_START:
                    started[entry.step_key] = entry.timestamp
                elif kind == dg.DagsterEventType.STEP_SUCCESS and entry.step_key in started:
                    steps.setdefault(entry.step_key, []).append(entry.timestamp - started[entry.step_key])
                if kind is not None:
                    times.setdefault(kind.value, entry.timestamp)  # the first of each kind
                    if kind == dg.DagsterEventType.STEP_SUCCESS:
                        times["LAST_STEP_SUCCESS"] = entry.timestamp
            marks = [
                ("queued", "PIPELINE_ENQUEUED", "PIPELINE_STARTING"),
                ("process start", "PIPELINE_STARTING", "PIPELINE_START"),
                ("resources", "PIPELINE_START", "STEP_START"),
                ("steps", "STEP_START", "LAST_STEP_SUCCESS"),
            ]
            for name, start, end in marks:
                if start in times and end in times:
                    phases[name].append(times[end] - times[start])
    median = f", median {statistics.median(durations):.1f} s from start to end" if durations else ""
    parts = ", ".join(f"{name} {statistics.median(v):.1f} s" for name, v in phases.items() if v)
    slowest = sorted(steps.items(), key=lambda item: -statistics.median(item[1]))[:6]
    by_step = ", ".join(f"{key} {statistics.median(v):.1f} s" for key, v in slowest)
    return (
        f"{len(records)}{median}"
        + (f" (medians: {parts})" if parts else "")
        + (f"\n  slowest steps, median: {by_step}" if by_step else "")
    )


def _connect_server_peak_rss(dev_log: Path) -> str:
    """The peak resident memory of the Spark Connect server pintrest dev started (its JVM's
    VmHWM), found by the port it printed; read before pintrest dev stops it."""
    import re

    found = re.search(rb"Spark Connect server started on sc://127\.0\.0\.1:(\d+)", dev_log.read_bytes())
    if not found:
        return "none started"
    port = found.group(1).decode()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            cmdline = (status.parent / "cmdline").read_bytes().split(b"\0")
            if b"spark.connect.grpc.binding.port=" + port.encode() not in cmdline:
                continue
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("Name", "").strip() == "java":
            peak, now = (int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "VmRSS"))
            return f"sc://127.0.0.1:{port}, JVM peak RSS {peak:,.0f} MB (now {now:,.0f} MB)"
    return f"sc://127.0.0.1:{port}, JVM not found"


def _latencies(acks: list[tuple[float, int]], seen: list[tuple[float, int]]) -> tuple[list[float], int]:
    """Per acknowledged record, the seconds until ``seen`` (time, records held; non-decreasing)
    first holds it; and how many never were."""
    times, counts = [t for t, _ in seen], [n for _, n in seen]
    # The running maximum: a count seen is never taken back.
    for i in range(1, len(counts)):
        counts[i] = max(counts[i], counts[i - 1])
    latencies, missing, before = [], 0, 0
    for acked_at, sent in acks:
        for record in range(before, sent):
            i = bisect.bisect_right(counts, record)  # the first sample holding record + 1 rows
            if i == len(counts):
                missing += 1
            else:
                latencies.append(max(0.0, times[i] - acked_at))
        before = sent
    return latencies, missing


def _print_latencies(label: str, measured: tuple[list[float], int]) -> None:
    latencies, missing = measured
    if not latencies:
        print(f"{label}: none seen ({missing} records)")
        return
    latencies.sort()
    print(f"{label}: median {statistics.median(latencies):.1f} s, p95 "
          f"{latencies[int(0.95 * (len(latencies) - 1))]:.1f} s, max {latencies[-1]:.1f} s "
          f"over {len(latencies):,} records" + (f"; {missing} not seen by the end" if missing else ""))


def _rows(table) -> int:
    try:
        return table.state().rows
    except Exception:  # noqa: BLE001 - a table being created
        return 0


def _answer_refreshes(dagster_home: Path) -> list[tuple[float, int]]:
    """(time, df_pin rows behind it) of each materialisation of ``ANSWER``: the rows_in of the
    pin_clean it read, the latest pin_clean materialised before it."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with dg.DagsterInstance.get() as instance:
        def events(asset):
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records
            return sorted(records, key=lambda r: r.timestamp)

        cleaned = [(r.timestamp, r.asset_materialization.metadata["rows_in"].value) for r in events("pin_clean")]
        refreshes = []
        for record in events(ANSWER):
            behind = [rows_in for t, rows_in in cleaned if t <= record.timestamp]
            if behind:
                refreshes.append((record.timestamp, behind[-1]))
        return refreshes


def _start_sensor(ui_port: int, name: str, timeout: float = 120) -> None:
    """Turns a sensor on as its switch in the UI does; the code location may still be loading."""
    selector = {"repositoryLocationName": "pintrest_assets", "repositoryName": "__repository__", "sensorName": name}
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.post(
            f"http://127.0.0.1:{ui_port}/graphql", json={"query": START_SENSOR, "variables": {"selector": selector}},
            timeout=60,
        ).json()
        state = (answer.get("data") or {}).get("startSensor") or {}
        if state.get("__typename") == "Sensor":
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"could not turn {name} on: {answer}")
        time.sleep(2)


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
