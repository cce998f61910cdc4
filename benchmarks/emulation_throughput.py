"""Emulation throughput, end to end into the local gateway: this project's method vs the original's.

The original draws one post with one ``LIMIT offset, 1`` query per table and sends one record
per request; this project draws posts in bulk and sends many records per request, the three
topics in parallel. Both run here against the same seeded SQLite database and the same local
gateway (a separate process, landing into a local-directory bucket), one after the other.

Prints records acknowledged per second, records landed per second, and the ratio.
Usage: python benchmarks/emulation_throughput.py [--posts 5000] [--original-posts 300] [--no-fsync]
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ports import free_port

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.emulation.emulator import emulate
from pintrest_assets.emulation.landing import LandingWatcher
from pintrest_assets.database.resource import PostsDatabase
from pintrest_assets.kafka.client import RestProxyResource
from pintrest_assets.database.seed import seed
from pintrest_assets.topics import TOPICS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--original-posts", type=int, default=300)
    parser.add_argument("--flush-size", type=int, default=500)
    parser.add_argument(
        "--no-fsync", action="store_true", help="the gateway skips fsync (its cost falls mostly on one-record requests)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pintrest-bench-"))
    db_url = f"sqlite:///{work / 'posts.db'}"
    started = time.perf_counter()
    seed(db_url)
    print(f"seeded the sample database in {time.perf_counter() - started:.1f}s")
    database = PostsDatabase(url=db_url)

    results = {}
    for method, user_id, posts in (("bulk", "bench-bulk", args.posts), ("original", "bench-orig", args.original_posts)):
        bucket = LocalBucket(work / f"bucket-{method}")
        port = free_port()
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pintrest_assets.cli",
                "gateway",
                "--no-kinesis",
                "--port",
                str(port),
                "--flush-size",
                str(args.flush_size),
                "--rotate-interval-ms",
                "1000",
            ]
            + (["--no-fsync"] if args.no_fsync else []),
            env={**_env(), "PINTREST_HOME": str(work / f"home-{method}"), "PINTREST_BUCKET": str(bucket.root)},
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port)
            proxy = RestProxyResource(url=f"http://127.0.0.1:{port}", user_id=user_id)
            rng = random.Random(7)
            t0 = time.perf_counter()
            if method == "bulk":
                report = emulate(database, proxy, posts, rng=rng)
                sent = report.records_sent
            else:
                sent = _original_method(database, proxy, posts, rng)
            acked = time.perf_counter() - t0
            _wait_until_landed(bucket, proxy, sent)
            landed = time.perf_counter() - t0
        finally:
            gateway.terminate()
            gateway.wait(timeout=60)
        results[method] = (sent, sent / acked, sent / landed)
        print(f"{method:>9}: {sent:>7,} records  {sent / acked:>9,.0f} acknowledged/s  {sent / landed:>9,.0f} landed/s")

    bulk, original = results["bulk"], results["original"]
    print(f"    ratio: {bulk[1] / original[1]:.1f}x acknowledged/s, {bulk[2] / original[2]:.1f}x landed/s")


def _original_method(database: PostsDatabase, proxy: RestProxyResource, posts: int, rng: random.Random) -> int:
    """One post at a time: a LIMIT offset,1 query per table, one record per request (no sleep)."""
    sent = 0
    for _ in range(posts):
        post = database.draw_post_one_by_one(rng)
        if post is None:  # an offset missing from one table: skipped, as the bulk draw skips it
            continue
        for spec in TOPICS:
            sent += proxy.produce(proxy.topic_for(spec), [post[spec.name]]).sent
    return sent


def _wait_until_landed(bucket: LocalBucket, proxy: RestProxyResource, sent: int, timeout: float = 120) -> None:
    watchers = [LandingWatcher(bucket, proxy.topic_for(spec)) for spec in TOPICS]
    deadline = time.monotonic() + timeout
    while (landed := sum(w.landed(0, 10**12) for w in watchers)) < sent:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {landed} of {sent} records landed within {timeout}s")
        time.sleep(0.05)


def _wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"the gateway did not start on port {port}")


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PINTREST_")}


if __name__ == "__main__":
    main()
