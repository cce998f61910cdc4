"""A click-refresh of a backlog in the three Kinesis streams, whole process, beside the floor.

N records per stream (posts from the sample database, as the Kinesis proxy stores them) are put
into a kinesalite of their own (one shard per stream, as the gateway creates them). Then:

1. the floor: a plain boto3 GetRecords (Limit 10,000) + ``json.loads`` loop over the same
   records, stream after stream;
2. the click: ``dagster asset materialize`` of the three stream tables in a new process (the
   Dagster CLI, the definitions, a cold Spark, the three availableNow queries, their checks),
   as a click in the UI runs it with no streaming service running.

Prints both, their ratio and the click's rows per second, with the load average before and
after each. ``--ref COMMIT`` runs the same click with that commit's code (from ``git archive``)
too, on the same backlog, alternating with the working tree's ``--repeat`` times, the floor
measured again before each pair: on a shared machine only figures of the same stretch compare.

Usage: python benchmarks/stream_backlog.py [--records 100000] [--ref COMMIT] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ports import free_port

USER = "bench"
REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per stream")
    parser.add_argument("--ref", default="", help="a commit to compare with, side by side ('' for none)")
    parser.add_argument("--repeat", type=int, default=1, help="clicks per side, alternating")
    args = parser.parse_args()

    from pintrest_assets.kinesis import proxy_contract as kinesis_proxy
    from pintrest_assets.kinesis.local_server import LocalKinesis
    from pintrest_assets.kinesis.streams import ensure_streams, kinesis_client
    from pintrest_assets.database.resource import PostsDatabase
    from pintrest_assets.database.seed import seed
    from pintrest_assets.topics import TOPICS

    work = Path(tempfile.mkdtemp(prefix="pintrest-bench-backlog-"))
    db = f"sqlite:///{work / 'posts.db'}"
    seed(db)
    server = LocalKinesis(work / "kinesis", free_port())
    server.start()
    try:
        client = kinesis_client(server.endpoint_url, "us-east-1")
        ensure_streams(client, USER, shard_count=1, timeout=60)
        posts = PostsDatabase(url=db).draw_posts(args.records, random.Random(3)).posts
        for spec in TOPICS:
            stream = spec.kinesis_stream(USER)
            for first in range(0, len(posts), 500):
                client.put_records(
                    StreamName=stream,
                    Records=[
                        {"Data": kinesis_proxy.record_bytes(p[spec.name]), "PartitionKey": str(uuid.uuid4())}
                        for p in posts[first : first + 500]
                    ],
                )
        total = len(posts) * len(TOPICS)
        print(f"stream backlog: {total:,} records ({len(posts):,} per stream) in kinesalite; load {os.getloadavg()[0]:.1f}")

        sides = [("working tree", REPO)]
        if args.ref:
            code = work / "ref-code"
            code.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", args.ref, "pintrest_assets", "pyproject.toml"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
            sides.insert(0, (f"ref {args.ref}", code))
        clicks: dict[str, list[float]] = {label: [] for label, _ in sides}
        for round_ in range(args.repeat):
            floor = _floor(client, TOPICS)
            for label, code in sides:
                load = os.getloadavg()[0]
                seconds, rows, parts = _click(work / f"home-{round_}-{label.split()[0]}", code, server.endpoint_url, TOPICS)
                clicks[label].append(seconds)
                print(
                    f"  click-refresh, whole process (dagster asset materialize), {label}: {rows:,} rows in "
                    f"{seconds:.1f} s ({rows / seconds:,.0f} rows/s), {seconds / floor:.1f}x the floor; "
                    f"load {load:.1f} -> {os.getloadavg()[0]:.1f}\n    {parts}",
                    flush=True,
                )
        if args.repeat > 1:
            for label, times in clicks.items():
                print(f"  {label}: median {statistics.median(times):.1f} s of {', '.join(f'{t:.1f}' for t in times)}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _floor(client, topics) -> float:
    """A plain boto3 GetRecords (Limit 10,000) + ``json.loads`` loop over every stream: seconds."""
    started = time.perf_counter()
    read = 0
    for spec in topics:
        iterator = client.get_shard_iterator(
            StreamName=spec.kinesis_stream(USER), ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                json.loads(record["Data"])
                read += 1
            iterator = page["NextShardIterator"]
            if not page["Records"]:
                break
    floor = time.perf_counter() - started
    print(
        f"  floor, boto3 GetRecords + json.loads: {read:,} records in {floor:.1f} s ({read / floor:,.0f}/s); "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return floor


def _click(home: Path, code: Path, endpoint_url: str, topics) -> tuple[float, int, str]:
    """``dagster asset materialize`` of the stream tables with ``code``, on a new home: seconds,
    the rows the tables then hold, and where the seconds went (from the run's step events)."""
    from deltalake import DeltaTable

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PINTREST_")},
        "PINTREST_HOME": str(home),
        "PINTREST_KINESIS_ENDPOINT_URL": endpoint_url,
        "PINTREST_USER_ID": USER,
        "DAGSTER_HOME": str(home / "dagster"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")])),
    }
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    selection = ",".join(spec.stream_table_asset for spec in topics)
    started, started_at = time.perf_counter(), time.time()
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pintrest_assets.definitions",
         "--select", selection],
        env=env,
        cwd=code,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    rows = sum(
        DeltaTable(str(home / "warehouse" / spec.stream_table(USER))).to_pyarrow_dataset().count_rows()
        for spec in topics
    )
    parts = _parts(home / "dagster", started_at, seconds)
    shutil.rmtree(home, ignore_errors=True)
    return seconds, rows, parts


def _parts(dagster_home: Path, started_at: float, seconds: float) -> str:
    """The click's seconds before its first step (the CLI, the definitions, the run's start), each
    step's, and after its last step (the run's end, the process's exit)."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    [run] = instance.get_runs(limit=1)
    steps = sorted(instance.get_run_step_stats(run.run_id), key=lambda s: s.start_time)
    first, last = steps[0].start_time, max(s.end_time for s in steps)
    each = ", ".join(f"{s.step_key} {s.end_time - s.start_time:.1f}" for s in steps)
    return (
        f"before the first step {first - started_at:.1f} s; steps {last - first:.1f} s ({each}); "
        f"after {started_at + seconds - last:.1f} s"
    )


if __name__ == "__main__":
    main()
