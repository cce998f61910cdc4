"""Lake refresh cost: an incremental refresh after new objects vs a full re-read, and Spark read throughput.

Part 1. A local-directory bucket holds N sink objects per topic (one record each by default, as
the original's ``flush.size`` 1 wrote them; realistic record values from the sample data
generator, serialised as the emulator sends them). The raw JSON and DataFrame assets read them
all once (the initial read, reported but not the figure of interest). Then 100 new objects land
per topic and the same assets refresh: they mount and read only the new objects, so the refresh
should cost about the same with N = 10,000 and N = 50,000 already read. A full re-read (a fresh
mount and warehouse on the same bucket, reading every object) is timed beside it for each N.
Refreshes are repeated (100 more objects each time) and the median is printed.

Part 2. Spark read throughput of df_pin, df_geo and df_user: records per second of each
DataFrame asset reading its topic's mounted JSON into the warehouse (parse with the explicit
schema, profile for describe(), write parquet), and of loading the warehouse table back whole as
a downstream asset does, for objects of one record (the original's layout) and of 500 records.

Every figure is a real run of the project's assets through ``dg.materialize`` with the real
resources (S3MountResource on a directory, SparkResource, WarehouseIOManager). Times are wall
clock; a run's time splits into its mount step (raw JSON asset), its DataFrame step (Spark,
plus reading the mount's ledger) and the run's own overhead (planning, events, resources), from
the steps' durations. One Spark session serves the whole script, as it serves a run; it is
started and warmed up before anything is timed.

Usage: python benchmarks/lake_refresh.py [--sizes 10000,50000] [--topics pin] [--new 100]
       [--repeats 3] [--throughput-records 5000] [--flush-sizes 1,500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from pintrest_assets.defs.lake.dataframes import dataframe_assets
from pintrest_assets.defs.lake.raw_json import raw_json_assets
from pintrest_assets.resources.database import json_ready
from pintrest_assets.resources.s3_mount import S3MountResource
from pintrest_assets.resources.spark import SparkResource, build_spark_resource
from pintrest_assets.resources.warehouse import WarehouseIOManager
from pintrest_assets.sample_data.generate import generate_posts
from pintrest_assets.settings import Settings
from pintrest_assets.sink_layout import object_key
from pintrest_assets.topics import TOPICS, TOPICS_BY_NAME, TopicSpec

USER_ID = "bench"

# Dagster's console logger writes every event at DEBUG: noise here, and time spent in the runs.
_QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", type=_counts, default=[10_000, 50_000], help="objects already read (default 10000,50000)"
    )
    parser.add_argument(
        "--topics", type=_topics, default=[TOPICS_BY_NAME["pin"]], help="topics of part 1: pin,geo,user (default pin)"
    )
    parser.add_argument("--new", type=int, default=100, help="new objects per topic before a refresh (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="refreshes per size; the median is printed (default 3)")
    parser.add_argument("--flush-size", type=int, default=1, help="records per object in part 1 (default 1)")
    parser.add_argument(
        "--throughput-records", type=int, default=5000, help="records per topic in part 2; 0 skips it (default 5000)"
    )
    parser.add_argument(
        "--flush-sizes", type=_counts, default=[1, 500], help="records per object in part 2 (default 1,500)"
    )
    args = parser.parse_args()
    if args.new < 1 or args.repeats < 1 or args.flush_size < 1:
        parser.error("--new, --repeats and --flush-size must be at least 1")
    if args.throughput_records < 0:
        parser.error("--throughput-records must be at least 0")

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
    warm = Lake(work / "warm-up", TOPICS, spark)
    warm.land(posts, 0, 200, flush_size=1)
    print(f"warm-up run (200 objects x 3 topics): {warm.refresh().total:.1f}s\n")
    warm.remove()

    try:
        _refresh_cost(work, spark, posts, args)
        if args.throughput_records:
            _throughput(work, spark, posts, args.throughput_records, args.flush_sizes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _refresh_cost(work: Path, spark: SparkResource, posts: RecordSource, args) -> None:
    topics, sizes, new, flush = args.topics, args.sizes, args.new, args.flush_size
    names = ",".join(spec.name for spec in topics)
    print(
        f"== Refresh after {new} new objects per topic (topics: {names}; {flush} record(s) per object; "
        f"median of {args.repeats} refreshes)"
    )
    results = {}
    for size in sizes:
        lake = Lake(work / f"size-{size}", topics, spark)
        t0 = time.perf_counter()
        lake.land(posts, 0, size * flush, flush_size=flush)
        landed = time.perf_counter() - t0
        initial = lake.refresh(expect_objects=size)
        print(
            f"N={size:,}: landed {size:,} objects per topic in {landed:.1f}s; "
            f"initial read {initial.total:.1f}s (mount {initial.mount:.1f}s, DataFrame {initial.spark:.1f}s)"
        )

        refreshes = []
        for r in range(args.repeats):
            lake.land(posts, (size + r * new) * flush, new * flush, flush_size=flush)
            refreshes.append(lake.refresh(expect_objects=new))
        total_objects = size + args.repeats * new
        # The same bucket, a fresh mount and warehouse: everything read again, as the original did.
        fresh = Lake(work / f"size-{size}", topics, spark, fresh_state="full")
        full = fresh.refresh(expect_objects=total_objects)
        results[size] = (initial, Timing.median(refreshes), full, total_objects)
        print(f"  refreshes: {', '.join(f'{t.total:.2f}s' for t in refreshes)}; full re-read {full.total:.1f}s")
        lake.remove()

    label = 36
    print()
    print("objects already read".ljust(label) + "".join(f"{size:>12,}" for size in sizes) + _ratio_head(sizes))
    rows = [
        ("initial read of N objects", lambda r: r[0].total),
        (f"refresh after {new} new (median)", lambda r: r[1].total),
        ("  mount step (raw JSON)", lambda r: r[1].mount),
        ("  DataFrame step (Spark)", lambda r: r[1].spark),
        ("  run overhead", lambda r: r[1].overhead),
        ("full re-read of all objects", lambda r: r[2].total),
        ("  mount step (raw JSON)", lambda r: r[2].mount),
        ("  DataFrame step (Spark)", lambda r: r[2].spark),
    ]
    for name, value in rows:
        figures = [value(results[size]) for size in sizes]
        print(name.ljust(label) + "".join(f"{x:>11.2f}s" for x in figures) + _ratio(figures))
    ratios = [results[s][2].total / results[s][1].total for s in sizes]
    print("full re-read / refresh".ljust(label) + "".join(f"{x:>11.1f}x" for x in ratios))
    print("objects in the full re-read".ljust(label) + "".join(f"{results[s][3]:>12,}" for s in sizes))
    print()


def _throughput(
    work: Path, spark: SparkResource, posts: RecordSource, records: int, flush_sizes: Sequence[int]
) -> None:
    print(f"== Spark read throughput, {records:,} records per topic (records/s; seconds in brackets)")
    columns = ("JSON -> DataFrame (df step)", "mount step", "warehouse load")
    print(f"{'DataFrame':<10}{'objects':>9}  {columns[0]:>28}  {columns[1]:>22}  {columns[2]:>22}")
    for flush in flush_sizes:
        lake = Lake(work / f"throughput-{flush}", TOPICS, spark)
        lake.land(posts, 0, records, flush_size=flush)
        objects = -(-records // flush)
        run = lake.refresh(expect_objects=objects)
        for spec in TOPICS:
            if run.rows[spec.dataframe] != records:
                raise SystemExit(f"{spec.dataframe}: read {run.rows[spec.dataframe]} rows, expected {records}")
            t0 = time.perf_counter()
            # A full scan of every column, as a downstream asset loading the table would need.
            lake.warehouse.table(spec.dataframe).read(spark.spark_session).write.format("noop").mode("overwrite").save()
            load = time.perf_counter() - t0
            df_step, mount_step = run.steps[spec.dataframe], run.steps[spec.raw_asset]
            print(
                f"{spec.dataframe:<10}{objects:>9,}  {_rate(records, df_step):>28}  "
                f"{_rate(records, mount_step):>22}  {_rate(records, load):>22}"
            )
        lake.remove()


@dataclass(frozen=True)
class Timing:
    """One run of the lake assets: its wall time and its steps' durations (seconds)."""

    total: float
    steps: dict[str, float]  # step key (the asset name) -> seconds
    rows: dict[str, int]  # DataFrame asset -> rows read in this run

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


class Lake:
    """A local-directory bucket with its mount and warehouse, and the lake assets of some topics."""

    def __init__(self, root: Path, topics: Sequence[TopicSpec], spark: SparkResource, fresh_state: str = "state"):
        self.root = root
        self.topics = list(topics)
        self.bucket_dir = root / "bucket"
        self.bucket_dir.mkdir(parents=True, exist_ok=True)
        state = root / fresh_state
        self.s3_mount = S3MountResource(bucket_url=str(self.bucket_dir), mount_dir=str(state / "mnt"), user_id=USER_ID)
        self.warehouse = WarehouseIOManager(base_dir=str(state / "warehouse"), spark=spark)
        self.spark = spark
        wanted = {dg.AssetKey(name) for spec in self.topics for name in (spec.raw_asset, spec.dataframe)}
        self.assets = [a for a in [*raw_json_assets, *dataframe_assets] if a.key in wanted]

    def land(self, posts: RecordSource, first_offset: int, records: int, flush_size: int) -> None:
        """Sink objects of ``flush_size`` records for offsets ``first_offset ..`` of each topic.

        Written straight to the bucket's directory, as LocalBucket lays keys out: its put fsyncs
        every object, which would make landing 50,000 objects the slowest part of the benchmark.
        """
        for spec in self.topics:
            topic = spec.topic(USER_ID)
            for start in range(first_offset, first_offset + records, flush_size):
                end = min(start + flush_size, first_offset + records)
                path = self.bucket_dir / object_key(topic, 0, start)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"".join(posts.line(spec.name, offset) for offset in range(start, end)))

    def refresh(self, expect_objects: int | None = None) -> Timing:
        """Materialise the raw JSON and DataFrame assets; check each read ``expect_objects`` new objects."""
        resources = {"s3_mount": self.s3_mount, "spark": self.spark, "warehouse_io_manager": self.warehouse}
        t0 = time.perf_counter()
        result = dg.materialize(self.assets, resources=resources, run_config=_QUIET_RUN)
        total = time.perf_counter() - t0
        steps = {e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.get_step_success_events()}
        rows = {}
        for spec in self.topics:
            [materialization] = result.asset_materializations_for_node(spec.dataframe)
            metadata = {k: v.value for k, v in materialization.metadata.items()}
            if expect_objects is not None and metadata["objects_read"] != expect_objects:
                raise SystemExit(f"{spec.dataframe} read {metadata['objects_read']} objects, expected {expect_objects}")
            rows[spec.dataframe] = metadata["rows_read"]
        return Timing(total, steps, rows)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


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


def _rate(records: int, seconds: float) -> str:
    return f"{records / seconds:,.0f} ({seconds:.2f}s)"


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


def _topics(text: str) -> list[TopicSpec]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in TOPICS_BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected topics among {', '.join(TOPICS_BY_NAME)}, got {text!r}")
    return [TOPICS_BY_NAME[name] for name in names]


if __name__ == "__main__":
    main()
