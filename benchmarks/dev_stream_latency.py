"""How fresh the stream tables are under ``pintrest dev``, with nothing clicked.

The set-up a user has: ``pintrest dev`` (the local gateway with kinesalite, the streaming
service and the Dagster UI) and posts sent through the Kinesis proxy at a steady rate, as
``pintrest emulate --stream --forever`` sends them (10 posts a second: one PutRecords per post
and stream). Here the benchmark sends them itself, so it knows when each record was
acknowledged and its sequence number. Two figures:

1. first rows: seconds from the moment the gateway's Kinesis and the UI both answer (sending
   starts then) to the first row in each stream table;
2. per-record latency: for every record sent, acknowledged by the proxy -> visible in its table
   (the table's committed position for the record's shard has reached its sequence number; the
   tables are polled every 0.1 s): median, p95 and max, over every record, and over the records
   sent once the service had appended its first rows to all three tables (its steady state: the
   records sent before wait for the service's JVM and first micro-batches).

Everything runs in a temporary PINTREST_HOME on free ports; the machine's load is printed with
the figures, as kinesalite, the gateway, the service's Spark, Dagster and this script share its
cores.

Usage: python benchmarks/dev_stream_latency.py [--rate 10] [--seconds 60]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
from ports import free_port
from processes import stop_process

PINTREST = [sys.executable, "-m", "pintrest_assets.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10.0, help="posts per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of sending")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the UI and the gateway")
    parser.add_argument("--log", type=Path, help="keep pintrest dev's output here, each line with its second")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pintrest-bench-dev-"))
    ui_port, proxy_port, kinesis_port = free_port(), free_port(), free_port()
    proxy = f"http://127.0.0.1:{proxy_port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PINTREST_") and k != "DAGSTER_HOME"},
        "PINTREST_HOME": str(work / "home"),
        "PINTREST_REST_PROXY_URL": proxy,
        "PINTREST_KINESIS_LOCAL_PORT": str(kinesis_port),
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("PINTREST_")})
    from pintrest_assets.database.resource import PostsDatabase
    from pintrest_assets.settings import Settings
    from pintrest_assets.stream.tables import StreamTable
    from pintrest_assets.topics import TOPICS

    settings = Settings.from_env()
    tables = {spec.name: StreamTable.for_user(settings.warehouse, spec, settings.user_id) for spec in TOPICS}
    subprocess.run([*PINTREST, "seed"], env=env, check=True, capture_output=True)
    posts = PostsDatabase(url=settings.db_url).draw_posts(int(args.rate * args.seconds) + 10, random.Random(1)).posts
    log = open(work / "dev.log", "wb")  # noqa: SIM115 - open while dev runs
    launched = time.time()
    dev = subprocess.Popen(
        [*PINTREST, "dev", "--port", str(ui_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    copier = threading.Thread(target=_copy_timed, args=(dev.stdout, log, launched), daemon=True)
    copier.start()
    sent: list[tuple[str, str, str, float]] = []  # (topic, shard, sequence number, acknowledged at)
    visible: dict[tuple[str, str, str], float] = {}
    try:
        _wait_until_ready(f"http://127.0.0.1:{ui_port}/server_info", proxy, dev, work / "dev.log", args.timeout)
        ready = time.time()
        stop = threading.Event()
        sender = threading.Thread(target=_send, args=(proxy, settings.user_id, posts, args.rate, args.seconds, sent))
        sender.start()
        first: dict[str, float] = {}
        waiting: dict[tuple[str, str], collections.deque] = collections.defaultdict(collections.deque)
        seen = 0
        while sender.is_alive() or seen < len(sent) or any(waiting.values()):
            now = time.time()
            for topic, shard, sequence, _ in sent[seen:]:  # a shard's sequence numbers only grow
                waiting[(topic, shard)].append(int(sequence))
                seen += 1
            for name, table in tables.items():
                positions = _positions(table)
                if positions and name not in first:
                    first[name] = now - ready
                for (topic, shard), sequences in waiting.items():
                    position = int(positions.get(shard, "-1")) if topic == name else -1
                    while sequences and sequences[0] <= position:
                        visible[(topic, shard, str(sequences.popleft()))] = now
            if not sender.is_alive() and time.time() - ready > args.seconds + 120:
                break  # what is still not visible counts as missing
            time.sleep(0.1)
        stop.set()
        sender.join()
        load = os.getloadavg()
    finally:
        stop_process(dev, timeout=90)
        copier.join(timeout=10)
        log.close()
        if args.log:
            shutil.copyfile(work / "dev.log", args.log)

    latencies = sorted(visible[(t, s, q)] - acked for t, s, q, acked in sent if (t, s, q) in visible)
    up = ready + max(first.values()) if len(first) == len(tables) else None
    steady = sorted(
        visible[(t, s, q)] - acked for t, s, q, acked in sent if (t, s, q) in visible and up and acked > up + 2
    )
    print(
        f"pintrest dev, {args.rate:g} posts/s through the Kinesis proxy for {args.seconds:g} s, nothing clicked; "
        f"load average {load[0]:.1f}"
    )
    print(f"  the UI and the gateway answered {ready - launched:.1f} s after pintrest dev started")
    for name, table in tables.items():
        seconds = first.get(name)
        print(f"  first rows in {table.name}: " + (f"{seconds:.1f} s after that" if seconds else "none"))
    if latencies:
        print(
            f"  per record, acknowledged -> visible in its table, {len(latencies):,} of {len(sent):,} records: "
            f"median {statistics.median(latencies):.2f} s, p95 {latencies[int(0.95 * (len(latencies) - 1))]:.2f} s, "
            f"max {latencies[-1]:.2f} s"
        )
    if steady:
        print(
            f"  ... of those sent once all three tables had rows ({len(steady):,} records): "
            f"median {statistics.median(steady):.2f} s, p95 {steady[int(0.95 * (len(steady) - 1))]:.2f} s, "
            f"max {steady[-1]:.2f} s"
        )
    from deltalake import DeltaTable

    for table in tables.values():
        with contextlib.suppress(Exception):
            delta = DeltaTable(str(table.path))
            state = table.state()
            compactions = sum(1 for c in delta.history() if c.get("operation") == "OPTIMIZE")
            print(
                f"  {table.name}: {state.batch_id + 1} micro-batches, {len(delta.file_uris())} files now, "
                f"{compactions} compactions"
            )
    _print_first_micro_batches(settings, ready)
    if len(first) < len(tables):
        print(f"  (kept {work} for its dev.log)")
        return
    shutil.rmtree(work, ignore_errors=True)


def _print_first_micro_batches(settings, ready: float, count: int = 3) -> None:
    """Each table's first micro-batches as the service recorded them in the Dagster instance:
    when each committed (seconds after the UI and the gateway answered), its records and its
    seconds (where a table's first rows went)."""
    import dagster as dg

    from pintrest_assets.instance import project_instance
    from pintrest_assets.topics import TOPICS

    with project_instance(settings) as instance:
        for spec in TOPICS:
            events = instance.fetch_materializations(dg.AssetKey(spec.stream_table_asset), limit=1000).records
            first = sorted(events, key=lambda e: e.timestamp)[:count]
            batches = []
            for event in first:
                metadata = event.asset_materialization.metadata
                batches.append(
                    f"{event.timestamp - metadata['seconds'].value - ready:.1f}+{metadata['seconds'].value:.1f} s "
                    f"({metadata['records_read'].value} records)"
                )
            print(f"  {spec.name}'s first micro-batches, started+took: {', '.join(batches)}")


def _send(proxy: str, user_id: str, posts: list[dict], rate: float, seconds: float, sent: list) -> None:
    """One PutRecords per post and stream, ``rate`` posts a second, as the emulator sends them."""
    from pintrest_assets.topics import TOPICS

    session = requests.Session()
    started = time.time()
    for i, post in enumerate(posts):
        due = started + i / rate
        if due - started > seconds:
            return
        time.sleep(max(0.0, due - time.time()))
        for spec in TOPICS:
            stream = spec.kinesis_stream(user_id)
            answer = session.put(
                f"{proxy}/streams/{stream}/records",
                json={"records": [{"data": post[spec.name], "partition-key": str(uuid.uuid4())}]},
                timeout=30,
            )
            answer.raise_for_status()
            [record] = answer.json()["Records"]
            sent.append((spec.name, record["ShardId"], record["SequenceNumber"], time.time()))


def _positions(table) -> dict:
    try:
        return dict(table.state().positions)
    except Exception:  # noqa: BLE001 - a table being created
        return {}


def _copy_timed(output, log, launched: float) -> None:
    """pintrest dev's output into ``log``, each line after the seconds since it was launched."""
    for line in output:
        log.write(f"{time.time() - launched:7.1f} ".encode() + line)
        log.flush()


def _wait_until_ready(ui: str, proxy: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Until the UI answers and the gateway's Kinesis is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"pintrest dev exited:\n{log.read_text()[-3000:]}")
        try:
            requests.get(ui, timeout=2)
            if (requests.get(f"{proxy}/status", timeout=2).json().get("kinesis") or {}).get("ready"):
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.25)
    raise SystemExit(f"no Dagster UI at {ui} or no Kinesis at {proxy} after {timeout:g} s")


if __name__ == "__main__":
    main()
