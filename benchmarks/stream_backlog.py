"""A click-refresh of a backlog in the three Kinesis streams, whole process, beside the floor.

N records per stream (posts from the sample database, as the Kinesis proxy stores them) are put
into a kinesalite of their own (one shard per stream, as the gateway creates them). Then:

1. the floor: a plain boto3 GetRecords (Limit 10,000) + ``json.loads`` loop over the same
   records, stream after stream;
2. the click: ``dagster asset materialize`` of the three stream tables in a new process (the
   Dagster CLI, the definitions, a cold Spark, the three availableNow queries, their checks),
   as a click in the UI runs it with no streaming service running.

Prints both, their ratio and the click's rows per second.

Usage: python benchmarks/stream_backlog.py [--records 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ports import free_port

USER = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per stream")
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

        started = time.perf_counter()
        read = 0
        for spec in TOPICS:
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
        print(f"  floor, boto3 GetRecords + json.loads: {read:,} records in {floor:.1f} s ({read / floor:,.0f}/s)")

        home = work / "home"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PINTREST_")},
            "PINTREST_HOME": str(home),
            "PINTREST_KINESIS_ENDPOINT_URL": server.endpoint_url,
            "PINTREST_USER_ID": USER,
            "DAGSTER_HOME": str(home / "dagster"),
        }
        (home / "dagster").mkdir(parents=True)
        (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        selection = ",".join(spec.stream_table_asset for spec in TOPICS)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pintrest_assets.definitions",
             "--select", selection],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        click = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
        from deltalake import DeltaTable

        rows = sum(
            DeltaTable(str(home / "warehouse" / spec.stream_table(USER))).to_pyarrow_dataset().count_rows()
            for spec in TOPICS
        )
        print(
            f"  click-refresh, whole process (dagster asset materialize): {rows:,} rows in {click:.1f} s "
            f"({rows / click:,.0f} rows/s), {click / floor:.1f}x the floor; load {os.getloadavg()[0]:.1f}"
        )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
