"""The lake refresh as a click runs it, side by side with DuckDB reading the same objects.

A bucket holds ``--posts`` posts per topic (pin, geo, user) in sink objects of ``--per-object``
records (1,000,000 posts: 3,000,000 records in 30,000 objects), written straight in the S3 sink's
layout (``sink_layout.object_key``, one compact JSON value per line, as the local gateway lands
them: realistic rows from the sample data generator). Then, in turns:

- DuckDB, in a process of its own, reads every object (``read_json_auto``) and writes each
  topic as a parquet file: the reference. Its query time and its whole process are timed.
- ``dagster asset materialize`` of the six lake assets (the three raw JSON mounts and df_pin,
  df_geo, df_user) on a fresh ``PINTREST_HOME`` over that bucket, as a click in the UI runs
  them: the whole process is timed, and the run's steps are read from the instance (first step
  start to last step end, and each step). The peak RSS of the Dagster process and of its Spark
  JVM are sampled from /proc. After the run: the size of ``mnt/`` beside the bucket's, and the
  rows of each table.

Usage: python benchmarks/lake_vs_duckdb.py [--posts 1000000] [--per-object 100] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pintrest_assets.resources.database import json_ready
from pintrest_assets.sample_data.generate import generate_posts
from pintrest_assets.sink_layout import object_key
from pintrest_assets.topics import TOPICS

USER_ID = "bench"
# The record values as the local gateway lands them: compact JSON, UTF-8.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
LAKE_ASSETS = [*(spec.raw_asset for spec in TOPICS), *(spec.dataframe for spec in TOPICS)]

DUCKDB_SCRIPT = """
import sys, time, duckdb
bucket, out, topics = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
con = duckdb.connect()
for topic in topics:
    src = f"{bucket}/topics/{topic}/partition=*/*.json"
    con.execute(f"COPY (SELECT * FROM read_json_auto('{src}')) TO '{out}/{topic}.parquet' (FORMAT parquet)")
print(time.perf_counter() - t0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000, help="posts per topic (default 1000000)")
    parser.add_argument("--per-object", type=int, default=100, help="records per sink object (default 100)")
    parser.add_argument("--work", type=Path, help="keep the bucket here (reused when it holds the same posts)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="pintrest-lake-duckdb-"))
    work.mkdir(parents=True, exist_ok=True)
    bucket = work / "bucket"
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    landed = _land(bucket, args.posts, args.per_object)
    bucket_bytes = _du(bucket)
    print(f"bucket: {landed:,} records in {_objects(bucket):,} objects, {bucket_bytes / 1e6:,.0f} MB\n")

    duck_out = work / "duckdb"
    shutil.rmtree(duck_out, ignore_errors=True)
    duck_out.mkdir()
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", DUCKDB_SCRIPT, str(bucket), str(duck_out), *(spec.topic(USER_ID) for spec in TOPICS)],
        check=True,
        capture_output=True,
        text=True,
    )
    duck_process = time.perf_counter() - t0
    duck_query = float(result.stdout.strip().splitlines()[-1])

    lake = _lake_run(work, bucket)

    steps = lake["steps"]
    span = max(s["end"] for s in steps.values()) - min(s["start"] for s in steps.values())
    print(f"{'':38}{'seconds':>10}{'x DuckDB':>10}")
    print(f"{'DuckDB: read_json_auto -> parquet':38}{duck_query:>10.1f}")
    print(f"{'DuckDB: whole process':38}{duck_process:>10.1f}")
    print(f"{'lake: the run steps (first to last)':38}{span:>10.1f}{span / duck_query:>9.1f}x")
    print(f"{'lake: whole process':38}{lake['process']:>10.1f}{lake['process'] / duck_process:>9.1f}x")
    for name in LAKE_ASSETS:
        s = steps[name]
        print(f"  {name:36}{s['end'] - s['start']:>10.1f}")
    print()
    print(f"peak RSS: Dagster process {lake['rss_python'] / 1e6:,.0f} MB, Spark JVM {lake['rss_jvm'] / 1e6:,.0f} MB")
    mnt = _du(work / "home" / "mnt")
    share = f"{mnt / bucket_bytes:.1%} of the bucket's {bucket_bytes / 1e6:,.0f} MB"
    print(f"mnt/ after the run: {mnt / 1e6:,.1f} MB, {share}")
    print(f"rows: {json.dumps(lake['rows'])}")
    print(f"(work directory: {work})")


def _land(bucket: Path, posts: int, per_object: int) -> int:
    """Writes the objects as the sink lands them, unless the bucket already holds them."""
    marker = bucket / f".landed-{posts}-{per_object}"
    if marker.exists():
        return 3 * posts
    shutil.rmtree(bucket, ignore_errors=True)
    generated = generate_posts(rows=10**9)
    t0 = time.perf_counter()
    for spec in TOPICS:
        (bucket / object_key(spec.topic(USER_ID), 0, 0)).parent.mkdir(parents=True)
    for start in range(0, posts, per_object):
        lines: dict[str, list[bytes]] = {spec.name: [] for spec in TOPICS}
        for _ in range(min(posts, start + per_object) - start):
            for name, row in next(generated).items():
                lines[name].append(_COMPACT.encode(json_ready(row)).encode() + b"\n")
        for spec in TOPICS:
            (bucket / object_key(spec.topic(USER_ID), 0, start)).write_bytes(b"".join(lines[spec.name]))
    marker.touch()
    print(f"landed {3 * posts:,} records in {time.perf_counter() - t0:.0f}s")
    return 3 * posts


def _lake_run(work: Path, bucket: Path) -> dict:
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    (home / "dagster").mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PINTREST_", "DAGSTER_"))},
        "PINTREST_HOME": str(home),
        "PINTREST_BUCKET": str(bucket),
        "PINTREST_USER_ID": USER_ID,
        "DAGSTER_HOME": str(home / "dagster"),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset",
        "materialize",
        "-m",
        "pintrest_assets.definitions",
        "--select",
        ",".join(LAKE_ASSETS),
    ]
    t0 = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, tuple[str, int]] = {}
    sampler = threading.Thread(target=_sample_rss, args=(process, peaks), daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - t0
    sampler.join()
    if process.returncode:
        sys.exit(f"the run failed:\n{stderr[-4000:]}")

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    import dagster as dg
    from deltalake import DeltaTable

    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs(limit=1)
    steps = {
        s.step_key: {"start": s.start_time, "end": s.end_time} for s in instance.get_run_step_stats(run.run_id)
    }
    rows = {}
    for spec in TOPICS:
        table = DeltaTable(str(home / "warehouse" / spec.dataframe))
        rows[spec.dataframe] = table.to_pyarrow_dataset().count_rows()
    return {
        "process": elapsed,
        "steps": steps,
        "rss_python": max((rss for kind, rss in peaks.values() if kind == "python"), default=0),
        "rss_jvm": max((rss for kind, rss in peaks.values() if kind == "java"), default=0),
        "rows": rows,
    }


def _sample_rss(process: subprocess.Popen, peaks: dict) -> None:
    """Peak RSS (VmHWM) of the process and its descendants, sampled until it ends."""
    while process.poll() is None:
        for pid in _tree(process.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if "VmHWM" not in fields:
                continue
            kind = "java" if "java" in fields.get("Name", "") else "python"
            peaks[pid] = (kind, max(peaks.get(pid, ("", 0))[1], int(fields["VmHWM"].split()[0]) * 1024))
        time.sleep(0.2)


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _objects(bucket: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(bucket) if files) - 1


def _du(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                pass
    return total


if __name__ == "__main__":
    main()
