"""Lake read cost: the initial read of N one-record objects beside the same records in objects of
500, and a refresh after new objects with N already read; on a local-directory bucket and on S3.

The original's S3 sink wrote one record per object (``flush.size`` 1). For each N (10,000 and
50,000 by default), a bucket holds N one-record objects per topic (realistic record values from
the sample data generator, serialised as the emulator sends them), and a fresh mount and
warehouse read them all: the initial read. Beside it, the same N records landed as objects of
500 are read the same way, in turns with it (medians of three on a local bucket): the cost of
one-record objects should be close to it, since the mount gathers objects into a few batch files
and Spark opens those. Then 100 new objects land per
topic and the assets refresh, ``--repeats`` times (the median is printed): a refresh mounts and
reads only the new objects, so it should cost the same at every N.

The same runs on S3: moto's S3 server, in a process of its own on loopback. There the mount
fetches each object with a GET, several at a time; the GETs and list requests are counted.

Every figure is a real run of the raw JSON and DataFrame assets through ``dg.materialize`` with
the real resources (S3MountResource, SparkResource, the Delta WarehouseIOManager). Times are wall
clock; a run splits into its mount step (raw JSON asset), its DataFrame step (Spark read, the
Delta commit) and the run's own overhead (planning, events, resources). One Spark session serves
the whole script, as it serves a run; it is started and warmed up before anything is timed.

Usage: python benchmarks/lake_refresh.py [--sizes 10000,50000] [--s3-sizes 10000,50000 | --s3-sizes 0]
       [--topics pin] [--new 100] [--repeats 3] [--big-objects 500]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import dagster as dg
from dagster_aws.s3 import S3Resource

from pintrest_assets.defs.lake.dataframes import dataframe_assets
from pintrest_assets.defs.lake.raw_json import raw_json_assets
from pintrest_assets.database.resource import json_ready
from pintrest_assets.lake.mount.resource import S3MountResource
from pintrest_assets.lake.spark import SparkResource, build_spark_resource
from pintrest_assets.lake.warehouse import WarehouseIOManager
from pintrest_assets.database.generate import generate_posts
from pintrest_assets.settings import Settings
from pintrest_assets.kafka.sink_layout import object_key
from pintrest_assets.topics import TOPICS, TOPICS_BY_NAME, TopicSpec

USER_ID = "bench"
# The figure before batch files and Delta (make bench at commit 626560e, this machine): the
# initial read of 50,000 one-record objects of one topic.
BEFORE = {50_000: 42.8}

# Dagster's console logger writes every event at DEBUG: noise here, and time spent in the runs.
_QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

# S3 requests sent by the mount's clients, by operation.
_S3_REQUESTS: collections.Counter = collections.Counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", type=_counts, default=[10_000, 50_000], help="N on a local bucket (default 10000,50000)"
    )
    parser.add_argument(
        "--s3-sizes",
        type=_counts_or_none,
        default=[10_000, 50_000],
        help="N on S3 (moto); 0 skips it (default 10000,50000)",
    )
    parser.add_argument(
        "--topics", type=_topics, default=[TOPICS_BY_NAME["pin"]], help="topics read: pin,geo,user (default pin)"
    )
    parser.add_argument("--new", type=int, default=100, help="new objects per topic before a refresh (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="refreshes per N; the median is printed (default 3)")
    parser.add_argument(
        "--big-objects", type=int, default=500, help="records per object of the comparison (default 500)"
    )
    args = parser.parse_args()
    if args.new < 1 or args.repeats < 1 or args.big_objects < 2:
        parser.error("--new and --repeats must be at least 1, --big-objects at least 2")

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    work = Path(tempfile.mkdtemp(prefix="pintrest-lake-bench-"))
    # Only the Spark settings come from the environment: a cluster may be benchmarked too.
    spark_env = {k: v for k, v in os.environ.items() if k.startswith("PINTREST_SPARK_")}
    spark = build_spark_resource(Settings.from_env({**spark_env, "PINTREST_HOME": str(work)}))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"spark: {spark.spark_config.get('spark.remote') or spark.spark_config.get('spark.master')}")

    posts = RecordSource()
    t0 = time.perf_counter()
    spark.spark_session.range(1).count()
    print(f"Spark session started in {time.perf_counter() - t0:.1f}s")
    warm_store = LocalStore(work / "warm-up")
    warm_store.land(TOPICS, posts, 0, 200, flush_size=1)
    warm = Lake(work / "warm-up", warm_store, TOPICS, spark)
    print(f"warm-up run (200 objects x 3 topics): {warm.refresh().total:.1f}s\n")

    try:
        print(
            _table(
                "Local-directory bucket",
                _suite(LocalStore(work / "local"), work / "local", spark, posts, args.sizes, args),
                args,
            )
        )
        if args.s3_sizes:
            with MotoStore.started(work / "moto") as store:
                results = _suite(store, work / "s3", spark, posts, args.s3_sizes, args)
            print(_table("S3 bucket (moto's server, its own process, loopback)", results, args))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class SizeResult:
    initial: Timing  # N one-record objects, read by a fresh mount and warehouse (median)
    big: Timing  # the same N records in objects of --big-objects records, read the same way (median)
    refresh: Timing  # median refresh after --new objects, N already read


def _suite(store, root: Path, spark: SparkResource, posts: RecordSource, sizes: Sequence[int], args) -> dict:
    """Per N: the initial read of N one-record objects and of the same records in big objects,
    taken in turns (``store.initial_reads`` times each, medians kept: a shared machine's load
    then weighs on both alike), and refreshes after new objects."""
    topics, new = args.topics, args.new
    results = {}
    landed = 0
    for size in sorted(sizes):
        t0 = time.perf_counter()
        store.land(topics, posts, landed, size - landed, flush_size=1)  # the bucket grows to N objects
        big_store = store.sibling(f"big-{size}")
        big_store.land(topics, posts, 0, size, flush_size=args.big_objects)
        print(f"{store.kind} N={size:,}: landed {size - landed:,} objects per topic in {time.perf_counter() - t0:.1f}s")

        initial, big, lake = [], [], None
        for r in range(store.initial_reads):
            if lake is not None:
                lake.remove()  # the last one is kept for the refreshes
            lake = Lake(root / f"lake-{size}-{r}", store, topics, spark)
            initial.append(lake.refresh(expect_objects=size))
            big_lake = Lake(root / f"big-{size}-{r}", big_store, topics, spark)
            big.append(big_lake.refresh(expect_objects=-(-size // args.big_objects)))
            big_lake.remove()
        refreshes = []
        for r in range(args.repeats):
            store.land(topics, posts, size + r * new, new, flush_size=1)
            refreshes.append(lake.refresh(expect_objects=new))
        landed = size + args.repeats * new
        lake.remove()

        results[size] = SizeResult(Timing.median(initial), Timing.median(big), Timing.median(refreshes))
        print(
            f"  initial {', '.join(f'{t.total:.1f}s' for t in initial)}; "
            f"in objects of {args.big_objects} {', '.join(f'{t.total:.1f}s' for t in big)}; "
            f"refreshes {', '.join(f'{t.total:.2f}s' for t in refreshes)}"
        )
    print()
    return results


def _table(title: str, results: dict, args) -> str:
    sizes = sorted(results)
    label = 52
    lines = [f"== {title}: topics {','.join(s.name for s in args.topics)}; N one-record objects per topic"]
    lines.append("N (objects already read)".ljust(label) + "".join(f"{n:>12,}" for n in sizes) + _ratio_head(sizes))

    def row(name: str, values: Sequence[float], unit: str = "s", fmt: str = "{:>11.2f}") -> None:
        lines.append(name.ljust(label) + "".join(fmt.format(v) + unit for v in values) + _ratio(values))

    def counts(name: str, values: Sequence[int]) -> None:
        lines.append(name.ljust(label) + "".join(f"{v:>12,}" for v in values))

    initial = [results[n].initial for n in sizes]
    big = [results[n].big for n in sizes]
    refresh = [results[n].refresh for n in sizes]
    row("initial read of N one-record objects", [t.total for t in initial])
    row("  mount step (raw JSON)", [t.mount for t in initial])
    row("  DataFrame step (Spark read, Delta commit)", [t.spark for t in initial])
    row("  run overhead", [t.overhead for t in initial])
    counts("  records read per second", [round(n * len(args.topics) / t.total) for n, t in zip(sizes, initial)])
    if initial[0].requests:
        counts("  S3 GET requests", [t.requests["GetObject"] for t in initial])
        counts("  S3 list requests", [t.requests["ListObjectsV2"] for t in initial])
        counts("  GETs in flight at once", [t.fetch_threads for t in initial])
    row(f"the same N records in objects of {args.big_objects}", [t.total for t in big])
    row("  mount step (raw JSON)", [t.mount for t in big])
    row("  DataFrame step (Spark read, Delta commit)", [t.spark for t in big])
    row(
        f"one-record / {args.big_objects}-record objects",
        [a.total / b.total for a, b in zip(initial, big)],
        "x",
        "{:>11.2f}",
    )
    before = [BEFORE.get(n) for n in sizes]
    if title.startswith("Local") and any(before):
        lines.append(
            "before (flat parquet warehouse, one file per object)".ljust(label)
            + "".join(f"{b:>11.1f}s" if b else f"{'':>12}" for b in before)
        )
        lines.append(
            "  speed-up of the initial read".ljust(label)
            + "".join(f"{b / t.total:>11.1f}x" if b else f"{'':>12}" for b, t in zip(before, initial))
        )
    row(f"refresh after {args.new} new objects (median)", [t.total for t in refresh])
    row("  mount step (raw JSON)", [t.mount for t in refresh])
    row("  DataFrame step (Spark read, Delta commit)", [t.spark for t in refresh])
    row("  run overhead", [t.overhead for t in refresh])
    if refresh[0].requests:
        counts("  S3 GET requests", [t.requests["GetObject"] for t in refresh])
        counts("  S3 keys listed", [t.requests["keys listed"] for t in refresh])
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Timing:
    """One run of the lake assets: its wall time and its steps' durations (seconds)."""

    total: float
    steps: dict[str, float]  # step key (the asset name) -> seconds
    rows: dict[str, int]  # DataFrame asset -> rows read in this run
    requests: dict[str, int] = field(default_factory=dict)  # S3 requests by operation
    fetch_threads: int = 1

    @property
    def mount(self) -> float:
        return sum(s for key, s in self.steps.items() if key.endswith("_raw_json"))

    @property
    def spark(self) -> float:
        return sum(s for key, s in self.steps.items() if key.startswith("df_"))

    @property
    def overhead(self) -> float:
        return self.total - self.mount - self.spark

    @staticmethod
    def median(timings: Sequence[Timing]) -> Timing:
        """The run of median wall time (a real run, so its steps add up)."""
        return sorted(timings, key=lambda t: t.total)[len(timings) // 2]


class LocalStore:
    """A local-directory bucket."""

    kind = "local"
    initial_reads = 3  # seconds each: medians of three

    def __init__(self, root: Path):
        self.root = root / "bucket"
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = str(self.root)
        self.s3: S3Resource | None = None

    def sibling(self, name: str) -> LocalStore:
        return LocalStore(self.root.parent / name)

    def land(self, topics: Sequence[TopicSpec], posts: RecordSource, first: int, records: int, flush_size: int) -> None:
        """Objects of ``flush_size`` records for offsets ``first ..``, written straight to the directory
        as LocalBucket lays keys out (its put fsyncs every object: slow for 50,000)."""
        for key, data in _objects(topics, posts, first, records, flush_size):
            path = self.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


class MotoStore:
    """A bucket on moto's S3 server, run as a process of its own so that it does not share this
    process's interpreter with the mount it serves."""

    kind = "s3"
    initial_reads = 1  # minutes each at moto's pace, bound by its GETs, not by the machine's load

    def __init__(self, endpoint: str, bucket: str):
        self.endpoint = endpoint
        self.bucket = bucket
        self.url = f"s3://{bucket}"
        credentials = {"region_name": "us-east-1", "aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        self.client = boto3.client("s3", endpoint_url=endpoint, **credentials)
        self.client.create_bucket(Bucket=bucket)
        self.s3 = _CountingS3Resource(endpoint_url=endpoint, **credentials)

    @classmethod
    def started(cls, log_dir: Path):
        import contextlib

        @contextlib.contextmanager
        def server():
            log_dir.mkdir(parents=True, exist_ok=True)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            moto = Path(sys.executable).with_name("moto_server")
            with open(log_dir / "moto.log", "wb") as log:
                process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
            try:
                deadline = time.monotonic() + 60
                while not _listening(port):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("moto's S3 server did not start")
                    time.sleep(0.1)
                yield cls(f"http://127.0.0.1:{port}", "bench-lake")
            finally:
                process.terminate()
                process.wait(timeout=30)

        return server()

    def sibling(self, name: str) -> MotoStore:
        return MotoStore(self.endpoint, f"bench-lake-{name}")

    def land(self, topics: Sequence[TopicSpec], posts: RecordSource, first: int, records: int, flush_size: int) -> None:
        objects = list(_objects(topics, posts, first, records, flush_size))
        with ThreadPoolExecutor(max_workers=10) as pool:
            list(pool.map(lambda o: self.client.put_object(Bucket=self.bucket, Key=o[0], Body=o[1]), objects))


class _CountingS3Resource(S3Resource):
    """An S3Resource whose clients count the requests they send."""

    def get_client(self):
        client = super().get_client()
        client.meta.events.register("after-call.s3.*", _count_request)
        return client


def _count_request(model, parsed=None, **_):
    _S3_REQUESTS[model.name] += 1
    if model.name == "ListObjectsV2" and isinstance(parsed, dict):
        _S3_REQUESTS["keys listed"] += len(parsed.get("Contents", []))


class Lake:
    """A mount and a warehouse of their own on a bucket, and the lake assets of some topics."""

    def __init__(self, root: Path, store, topics: Sequence[TopicSpec], spark: SparkResource):
        self.root = root
        self.topics = list(topics)
        self.s3_mount = S3MountResource(bucket_url=store.url, mount_dir=str(root / "mnt"), user_id=USER_ID, s3=store.s3)
        self.warehouse = WarehouseIOManager(base_dir=str(root / "warehouse"), spark=spark)
        self.spark = spark
        wanted = {dg.AssetKey(name) for spec in self.topics for name in (spec.raw_asset, spec.dataframe)}
        self.assets = [a for a in [*raw_json_assets, *dataframe_assets] if a.key in wanted]

    def refresh(self, expect_objects: int | None = None) -> Timing:
        """Materialise the raw JSON and DataFrame assets; check each read ``expect_objects`` new objects."""
        resources = {"s3_mount": self.s3_mount, "spark": self.spark, "warehouse_io_manager": self.warehouse}
        _S3_REQUESTS.clear()
        t0 = time.perf_counter()
        result = dg.materialize(self.assets, resources=resources, run_config=_QUIET_RUN)
        total = time.perf_counter() - t0
        steps = {e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.get_step_success_events()}
        rows, threads = {}, 1
        for spec in self.topics:
            metadata = _metadata(result, spec.dataframe)
            if expect_objects is not None and metadata["objects_read"] != expect_objects:
                raise SystemExit(f"{spec.dataframe} read {metadata['objects_read']} objects, expected {expect_objects}")
            rows[spec.dataframe] = metadata["rows_read"]
            threads = _metadata(result, spec.raw_asset)["fetch_threads"]
        return Timing(total, steps, rows, dict(_S3_REQUESTS), threads)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _metadata(result, asset: str) -> dict:
    [materialization] = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in materialization.metadata.items()}


def _objects(topics, posts, first: int, records: int, flush_size: int):
    for spec in topics:
        topic = spec.topic(USER_ID)
        for start in range(first, first + records, flush_size):
            end = min(start + flush_size, first + records)
            yield object_key(topic, 0, start), b"".join(posts.line(spec.name, offset) for offset in range(start, end))


class RecordSource:
    """Record values of the sample posts as NDJSON lines, one per offset, generated once and kept.

    Offset ``i`` of every topic is post ``i`` (its pin, geo or user row), serialised as the
    emulator sends it: datetimes as ISO-8601 strings, UTF-8 text.
    """

    def __init__(self):
        self._posts = generate_posts(rows=10**9)
        self._lines: dict[str, list[bytes]] = {spec.name: [] for spec in TOPICS}

    def line(self, topic: str, offset: int) -> bytes:
        lines = self._lines[topic]
        while len(lines) <= offset:
            post = next(self._posts)
            for name, row in post.items():
                encoded = json.dumps(json_ready(row), ensure_ascii=False, separators=(",", ":"))
                self._lines[name].append(encoded.encode() + b"\n")
        return lines[offset]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ratio_head(sizes: Sequence[int]) -> str:
    return f"{f'{_short(sizes[-1])}/{_short(sizes[0])}':>12}" if len(sizes) > 1 else ""


def _short(count: int) -> str:
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


def _ratio(figures: Sequence[float]) -> str:
    return f"{figures[-1] / figures[0]:>11.2f}x" if len(figures) > 1 and figures[0] else ""


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers of at least 1, got {text!r}")
    return counts


def _counts_or_none(text: str) -> list[int]:
    return [] if text.strip() == "0" else _counts(text)


def _topics(text: str) -> list[TopicSpec]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in TOPICS_BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected topics among {', '.join(TOPICS_BY_NAME)}, got {text!r}")
    return [TOPICS_BY_NAME[name] for name in names]


if __name__ == "__main__":
    main()
