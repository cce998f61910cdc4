"""The streaming half beside the batch path, for the same posts.

One local gateway (``pintrest gateway``, a separate process) serves both proxies: the Kafka REST
proxy, landing into a local-directory bucket as the S3 sink does, and the Kinesis proxy in front
of the embedded kinesalite (one shard per stream, as the gateway creates them). Three figures,
each for both paths:

1. into the proxy: records acknowledged per second by ``emulate`` for N posts (the same draws
   through each proxy); for the batch path also records landed in the bucket per second;
2. into Delta: records per second from Kinesis into the three stream tables (their queries with
   ``trigger(availableNow=True)``), beside the batch path's refresh of the same posts from the
   bucket into ``df_pin``/``df_geo``/``df_user`` (raw JSON mount + DataFrame append); both in
   the same warm Spark session, through ``dg.materialize``;
3. end-to-end latency, post acknowledged -> row in its table, with the posts sent at a steady
   rate for a while and a refresh every 10 seconds (the stream path's former sensor cadence;
   ``new_objects_sensor`` ticks every 20): median and 95th percentile over every record. Each
   path runs on
   its own (the stream path first), with the same posts at the same rate. A record's latency is
   the end of the first refresh after which its table holds it: with one shard (one partition)
   per topic, a table holds the first k records of its stream (topic) once it has k.

The refreshes here run in this process's warm Spark session. Under ``make dev`` a sensor's run
is a new process that starts its own Spark JVM: the "run start" line measures that cost (one
cold process importing the project and starting Spark), paid once per run. The streaming
service (``pintrest stream``) pays it once; ``dev_stream_latency.py`` measures it under ``make dev``.

Usage: python benchmarks/streaming.py [--posts 2000] [--rate 10] [--duration 60] [--cadence 10]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from ports import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=2000, help="posts for the throughput figures")
    parser.add_argument("--rate", type=float, default=10.0, help="posts per second for the latency figures")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending for the latency figures")
    parser.add_argument("--cadence", type=float, default=10.0, help="seconds between refreshes (the stream sensor's)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pintrest-bench-stream-"))
    port, kinesis_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PINTREST_") and k != "DAGSTER_HOME"},
        "PINTREST_HOME": str(work / "home"),
        "PINTREST_REST_PROXY_URL": f"http://127.0.0.1:{port}",
        "PINTREST_KINESIS_PROXY_URL": f"http://127.0.0.1:{port}",
        "PINTREST_KINESIS_LOCAL_PORT": str(kinesis_port),
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("PINTREST_")})
    os.environ.pop("DAGSTER_HOME", None)

    from pintrest_assets.database.resource import PostsDatabase
    from pintrest_assets.database.seed import seed
    from pintrest_assets.settings import Settings

    settings = Settings.from_env()
    seed(settings.db_url)
    database = PostsDatabase(url=settings.db_url)
    gateway = subprocess.Popen(
        [sys.executable, "-m", "pintrest_assets.cli", "gateway", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for_kinesis(settings.kinesis_proxy_url)
        bench = Bench(settings, database)
        print(
            f"streaming benchmark: {args.posts:,} posts ({3 * args.posts:,} records) for throughput; "
            f"{args.rate:g} posts/s for {args.duration:g} s, refreshed every {args.cadence:g} s, for latency"
        )
        ingest = bench.ingest("throughput", args.posts)
        into_delta = bench.into_delta("throughput", ingest)
        latency = {path: bench.latency(path, args.rate, args.duration, args.cadence) for path in ("stream", "batch")}
        cold = run_start_seconds(env)
    finally:
        gateway.terminate()
        gateway.wait(timeout=120)

    rows = [
        ("into the proxy, acknowledged", f"{ingest['stream']:,.0f} records/s", f"{ingest['batch']:,.0f} records/s"),
        ("  landed in the bucket", "-", f"{ingest['batch_landed']:,.0f} records/s"),
        ("into Delta (warm Spark)", f"{into_delta['stream']:,.0f} records/s", f"{into_delta['batch']:,.0f} records/s"),
    ]
    for label, key in (("latency, median", "median"), ("latency, p95", "p95")):
        rows.append(
            (
                f"{label} ({args.cadence:g} s cadence)",
                f"{latency['stream'][key]:.1f} s",
                f"{latency['batch'][key]:.1f} s",
            )
        )
    rows.append(("  records measured", f"{latency['stream']['records']:,}", f"{latency['batch']['records']:,}"))
    rows.append(("run start under `make dev`", f"+{cold:.1f} s", f"+{cold:.1f} s"))
    print(f"\n{'':36}{'stream (Kinesis)':>22}{'batch (Kafka + S3)':>22}")
    for label, stream, batch in rows:
        print(f"{label:36}{stream:>22}{batch:>22}")


class Bench:
    def __init__(self, settings, database):
        import dagster as dg

        self.settings = settings
        self.database = database
        self.instance = dg.DagsterInstance.ephemeral()

    def resources(self, user_id: str) -> dict:
        from dataclasses import replace

        from pintrest_assets.resources import resources_for

        return resources_for(replace(self.settings, user_id=user_id), resolve_secrets=True)

    def create_streams(self, user_id: str) -> None:
        from pintrest_assets.kinesis.streams import ensure_streams, kinesis_client

        ensure_streams(kinesis_client(self.settings.kinesis_client_endpoint), user_id, shard_count=1)

    # -- 1. into the proxies ------------------------------------------------------------------

    def ingest(self, user_id: str, posts: int) -> dict:
        from pintrest_assets.emulation.emulator import emulate

        self.create_streams(user_id)
        resources = self.resources(user_id)
        result = {}
        for path, proxy in (("stream", resources["kinesis_proxy"]), ("batch", resources["rest_proxy"])):
            started = time.perf_counter()
            report = emulate(self.database, proxy, posts, rng=random.Random(7))
            acknowledged = time.perf_counter() - started
            if report.error is not None:
                raise SystemExit(f"{path}: the emulation failed: {report.error}")
            result[path] = report.records_sent / acknowledged
            result[f"{path}_records"] = report.records_sent
            if path == "batch":
                self.wait_until_landed(report)
                result["batch_landed"] = report.records_sent / (time.perf_counter() - started)
            print(f"  {path}: {report.records_sent:,} records acknowledged in {acknowledged:.1f} s")
        return result

    def wait_until_landed(self, report, timeout: float = 120) -> None:
        from pintrest_assets.bucket import LocalBucket
        from pintrest_assets.emulation.landing import LandingWatcher

        bucket = LocalBucket(self.settings.bucket)
        deadline = time.monotonic() + timeout
        # New watchers each look: the local sink uploads full files in parallel, so a key may
        # land after a later one, which a watcher listing after its last key seen would skip.
        while (
            landed := sum(LandingWatcher(bucket, t.topic).landed(0, 10**12) for t in report.topics.values())
        ) < report.records_sent:
            if time.monotonic() > deadline:
                raise SystemExit(f"{landed} of {report.records_sent} records landed within {timeout:g} s")
            time.sleep(0.05)

    # -- 2. into Delta --------------------------------------------------------------------------

    def into_delta(self, user_id: str, ingest: dict) -> dict:
        resources = self.resources(user_id)
        resources["spark"].spark_session.range(10).count()  # the session started before timing
        result = {}
        for path in ("batch", "stream"):
            started = time.perf_counter()
            self.refresh(path, resources)
            seconds = time.perf_counter() - started
            read = self.records_read(path, user_id)
            if read != ingest[f"{path}_records"]:
                raise SystemExit(f"{path}: {read} records read of {ingest[f'{path}_records']}")
            result[path] = read / seconds
            print(f"  {path}: {read:,} records into Delta in {seconds:.1f} s")
        return result

    def refresh(self, path: str, resources: dict) -> None:
        """One refresh of the path's three tables in one run, as its sensor requests it."""
        import dagster as dg

        from pintrest_assets.defs.lake.dataframes import dataframe_assets
        from pintrest_assets.defs.lake.raw_json import raw_json_assets
        from pintrest_assets.defs.sources.assets import source_tables
        from pintrest_assets.defs.stream.assets import kinesis_streams, stream_tables
        from pintrest_assets.topics import TOPICS

        if path == "stream":
            selection = [spec.stream_table_asset for spec in TOPICS]
        else:
            selection = [name for spec in TOPICS for name in (spec.raw_asset, spec.dataframe)]
        dg.materialize(
            [*source_tables, kinesis_streams, stream_tables, *raw_json_assets, *dataframe_assets],
            selection=selection,
            resources=resources,
            instance=self.instance,
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )

    def records_read(self, path: str, user_id: str, spec=None) -> int:
        from pintrest_assets.lake.warehouse import WarehouseTable
        from pintrest_assets.stream.tables import StreamTable
        from pintrest_assets.topics import TOPICS

        total = 0
        for s in [spec] if spec is not None else TOPICS:
            if path == "stream":
                total += StreamTable.for_user(self.settings.warehouse, s, user_id).state().records_read
            else:
                state = WarehouseTable(self.settings.warehouse, s.dataframe).state()
                total += state.rows + state.quarantined
        return total

    # -- 3. end-to-end latency ------------------------------------------------------------------

    def latency(self, path: str, rate: float, duration: float, cadence: float | None) -> dict:
        """Posts sent at ``rate`` for ``duration`` seconds, the path's tables refreshed every
        ``cadence`` seconds (None: ``FOLLOW_POLL_SECONDS`` after each refresh, as a following
        run does) until they hold every record."""
        FOLLOW_POLL_SECONDS = 2.0  # noqa: N806 - a refresh again this long after the last one ends
        from pintrest_assets.emulation.emulator import emulate
        from pintrest_assets.topics import TOPICS

        user_id = f"lat{path}" if cadence is not None else f"follow{path}"
        if path == "stream":
            self.create_streams(user_id)
        resources = self.resources(user_id)
        proxy = resources["kinesis_proxy" if path == "stream" else "rest_proxy"]
        acknowledged: dict[str, list[tuple[float, int]]] = {spec.name: [] for spec in TOPICS}
        stop = threading.Event()

        def chunk_done(report, _posts) -> None:
            now = time.time()
            for spec in TOPICS:
                acknowledged[spec.name].append((now, report.topics[spec.name].sent))

        def send() -> None:
            emulate(self.database, proxy, int(rate * duration), rate=rate, rng=random.Random(11), on_chunk=chunk_done)
            stop.set()

        sender = threading.Thread(target=send)
        refreshed: dict[str, list[tuple[float, int]]] = {spec.name: [] for spec in TOPICS}
        # df_pin and the others are one table for every user id: count from what they hold now.
        base = {spec.name: self.records_read(path, user_id, spec) for spec in TOPICS}
        started = time.time()
        sender.start()
        tick = 0
        while True:
            due = started + tick * cadence if cadence is not None else time.time() + FOLLOW_POLL_SECONDS * (tick > 0)
            time.sleep(max(0.0, due - time.time()))
            tick += 1
            self.refresh(path, resources)
            now = time.time()
            for spec in TOPICS:
                refreshed[spec.name].append((now, self.records_read(path, user_id, spec) - base[spec.name]))
            sent = {name: marks[-1][1] if marks else 0 for name, marks in acknowledged.items()}
            if stop.is_set() and all(refreshed[n][-1][1] >= sent[n] for n in sent):
                break
            if time.time() > started + duration + 200:
                raise SystemExit(f"{path}: the tables did not catch up within 200 s of the last post")
        sender.join()
        latencies = []
        for name, marks in acknowledged.items():
            previous = 0
            for when, count in marks:
                for k in range(previous + 1, count + 1):
                    held = next(t for t, n in refreshed[name] if n >= k)
                    latencies.append(held - when)
                previous = count
        latencies.sort()
        print(f"  {path}: {len(latencies):,} records, {tick} refreshes")
        return {
            "median": statistics.median(latencies),
            "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
            "records": len(latencies),
        }


def run_start_seconds(env: dict) -> float:
    """A cold process importing the project's definitions and starting a local Spark session."""
    code = (
        "import pintrest_assets.definitions as d; "
        "from pintrest_assets.resources import resources_for; "
        "from pintrest_assets.settings import Settings; "
        "resources_for(Settings.from_env())['spark'].spark_session.range(1).count()"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def _wait_for_kinesis(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/status", timeout=2).json()["kinesis"]["ready"]:
                return
        except (requests.RequestException, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"the gateway on {url} served no Kinesis within {timeout:g} s")


if __name__ == "__main__":
    main()
