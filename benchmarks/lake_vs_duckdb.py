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

``--before REV`` runs the same refresh with the project at git revision REV too (a temporary
worktree), on the same bucket, after this checkout's: before and after side by side.

Usage: python benchmarks/lake_vs_duckdb.py [--posts 1000000] [--per-object 100] [--work DIR] [--before REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pintrest_assets.database.resource import json_ready
from pintrest_assets.database.generate import generate_posts
from pintrest_assets.kafka.sink_layout import object_key
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
    parser.add_argument("--before", help="also run the lake of this git revision (e.g. a813c51), side by side")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="pintrest-lake-duckdb-"))
    work.mkdir(parents=True, exist_ok=True)
    bucket = work / "bucket"
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    landed = _land(bucket, args.posts, args.per_object)
    bucket_bytes = _du(bucket)
    print(f"bucket: {landed:,} records in {_objects(bucket):,} objects, {bucket_bytes / 1e6:,.0f} MB\n")

    # DuckDB before and after the lake runs: the machine's load changes, the mean is the reference.
    ducks = [_duckdb(work, bucket)]
    runs = {"this checkout": _lake_run(work, bucket, Path(__file__).resolve().parents[1])}
    if args.before:
        with _checkout(args.before) as code:
            runs[f"at {args.before}"] = _lake_run(work, bucket, code)
    ducks.append(_duckdb(work, bucket))
    duck_query = sum(q for q, _ in ducks) / len(ducks)
    duck_process = sum(p for _, p in ducks) / len(ducks)
    print(f"DuckDB runs (query, process): {', '.join(f'{q:.1f} s, {p:.1f} s' for q, p in ducks)}")

    print(f"{'':38}" + "".join(f"{label:>26}" for label in runs))
    print(f"{'DuckDB: read_json_auto -> parquet':38}{duck_query:>10.1f} s")
    print(f"{'DuckDB: whole process':38}{duck_process:>10.1f} s")
    print(f"{'lake: the run steps (first to last)':38}" + "".join(_vs(r["span"], duck_query) for r in runs.values()))
    print(f"{'lake: whole process':38}" + "".join(_vs(r["process"], duck_process) for r in runs.values()))
    for name in LAKE_ASSETS:
        print(f"  {name:36}" + "".join(f"{r['steps'][name]:>24.1f} s" for r in runs.values()))
    print(f"{'peak RSS, Dagster process':38}" + "".join(f"{r['rss_python'] / 1e6:>23,.0f} MB" for r in runs.values()))
    print(f"{'peak RSS, Spark JVM':38}" + "".join(f"{r['rss_jvm'] / 1e6:>23,.0f} MB" for r in runs.values()))
    print(
        f"{'mnt/ after the run':38}"
        + "".join(f"{r['mnt'] / 1e6:>15,.1f} MB ({r['mnt'] / bucket_bytes:>5.1%})" for r in runs.values())
    )
    for label, r in runs.items():
        print(f"rows ({label}): {json.dumps(r['rows'])}")
    print(f"(the bucket: {bucket_bytes / 1e6:,.0f} MB; work directory: {work})")


def _duckdb(work: Path, bucket: Path) -> tuple[float, float]:
    """DuckDB reading every object into a parquet file per topic: its query's and its process's seconds."""
    out = work / "duckdb"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", DUCKDB_SCRIPT, str(bucket), str(out), *(spec.topic(USER_ID) for spec in TOPICS)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(result.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def _vs(seconds: float, reference: float) -> str:
    return f"{seconds:>10.1f} s = {seconds / reference:>5.1f}x DuckDB"


@contextlib.contextmanager
def _checkout(rev: str):
    """The project at ``rev``, in a temporary git worktree."""
    repo = Path(__file__).resolve().parents[1]
    directory = Path(tempfile.mkdtemp(prefix="pintrest-before-"))
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(directory), rev], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(directory)], check=True)


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


def _lake_run(work: Path, bucket: Path, code: Path) -> dict:
    """A click's refresh of the lake assets, with the project's code at ``code``."""
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
        "PYTHONPATH": str(code),
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
    process = subprocess.Popen(
        command, env=env, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
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
    stats = [s for s in instance.get_run_step_stats(run.run_id) if s.step_key in LAKE_ASSETS]
    steps = {s.step_key: s.end_time - s.start_time for s in stats}
    rows = {}
    for spec in TOPICS:
        table = DeltaTable(str(home / "warehouse" / spec.dataframe))
        rows[spec.dataframe] = table.to_pyarrow_dataset().count_rows()
    return {
        "process": elapsed,
        "span": max(s.end_time for s in stats) - min(s.start_time for s in stats),
        "steps": steps,
        "mnt": _du(home / "mnt"),
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
