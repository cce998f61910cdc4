"""The transform at volume: the cleaned tables, the nine answers and their checks over df_pin,
df_geo and df_user holding ``--posts`` posts (1,000,000 by default), side by side with a
reference commit's transform on the same tables.

The DataFrame tables are what a long emulation leaves: the sample database's 11,153 posts
(the generator's, serialised as the emulator sends them), drawn ``--posts`` times with
replacement, appended in ``--appends`` batches through the warehouse IO manager. Each side
(the reference commit's code, from ``git archive``, and the working tree's) runs in a process
of its own on a copy of those tables, with a Spark session started before anything is timed:

1. a first run: the cleaned tables and answers built from nothing;
2. ``--new`` posts appended to each DataFrame table (the same posts on both sides), then a
   second run: a refresh, as ``transform_on_new_dataframes`` or the daily schedule requests;
3. the transform's tables deleted, then a third run from nothing, in a JVM that has run Spark
   work before (the first run pays the JVM's loading and compiling of Spark's code; in
   ``pintrest run`` the lake's runs have, and in ``pintrest dev`` the Connect server's warm-up).

Each run is ``dg.materialize`` of the transform group and its checks with the real warehouse IO
manager; the figures are the steps' durations from the run's events (step start to step
success), summed over the cleaned tables and the answers ("transform steps") and over the
checks; and the CPU seconds the run took (this process and the Spark JVM), which load from other
work on the machine stretches less than the wall clock. The answers of the two sides are read
back and compared row by row: a speed-up that changes an answer is no speed-up. ``--profile`` also writes Spark's event log and prints each
step's Spark jobs (count, time, the slowest ones' call sites).

Usage: python benchmarks/transform.py [--posts 1000000] [--new 1000] [--ref a813c51]
       [--appends 10] [--repeat 1] [--profile]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The last commit before the transform's speed-up: the reference it is compared with.
REFERENCE = "a813c51"
SAMPLE_POSTS = 11_153
RUNS = ("first", "refresh", "again")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=1_000, help="posts appended before the second run")
    parser.add_argument("--appends", type=int, default=10, help="batches the DataFrame tables are appended in")
    parser.add_argument("--ref", default=REFERENCE, help="the commit to compare with ('' for none)")
    parser.add_argument("--profile", action="store_true", help="print each step's Spark jobs")
    parser.add_argument("--repeat", type=int, default=1, help="runs a side, alternating (figures: medians)")
    parser.add_argument("--data", type=Path, help="keep the DataFrame tables here, and reuse them if there")
    parser.add_argument("--child", nargs=3, metavar=("CODE", "WAREHOUSE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child, args)
        return

    work = Path(tempfile.mkdtemp(prefix="pintrest-bench-transform-"))
    try:
        t0 = time.perf_counter()
        base = args.data or work / "base"
        if not (base / "df_user").exists():
            _run_child(
                [sys.executable, __file__, "--child", str(REPO), str(base), "", "--posts", str(args.posts),
                 "--appends", str(args.appends)],
                work / "base.log",
            )
        print(f"df_pin, df_geo, df_user: {args.posts:,} posts each, in {args.appends} appends "
              f"({time.perf_counter() - t0:.0f} s to write)")
        sides = []
        if args.ref:
            code = work / "ref-code"
            code.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.ref, "pintrest_assets"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
            sides.append((f"ref {args.ref}", code))
        sides.append(("working tree", REPO))
        repeats: dict[str, list[dict]] = {label: [] for label, _ in sides}
        loads = []
        for _ in range(args.repeat):  # the sides alternate: a change of load meets both
            for label, code in sides:
                warehouse = work / label.replace(" ", "-")
                shutil.copytree(base, warehouse)
                out = work / f"{label.replace(' ', '-')}.json"
                command = [sys.executable, __file__, "--child", str(code), str(warehouse), str(out),
                           "--new", str(args.new)]
                loads.append(os.getloadavg()[0])
                _run_child(command + (["--profile"] if args.profile else []), work / f"{label.replace(' ', '-')}.log")
                repeats[label].append(json.loads(out.read_text()))
                shutil.rmtree(warehouse)
        loads.append(os.getloadavg()[0])
        _report({label: _median(runs) for label, runs in repeats.items()}, args, loads)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_child(command: list[str], log: Path) -> None:
    """Runs one side; its Dagster and Spark logs go to ``log``, shown only if it fails."""
    with open(log, "wb") as output:
        done = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[2:4])} failed:\n{log.read_text()[-5000:]}")


def _median(runs: list[dict]) -> dict:
    """One side's runs as one: each figure the median of its repeats (answers and jobs: the last's)."""
    result = {}
    for run in RUNS:
        each = [r[run] for r in runs]
        medians = {k: statistics.median(e[k] for e in each) for k in ("wall", "cpu", "transform", "checks")}
        result[run] = {**each[-1], **medians}
        result[run]["steps"] = {
            step: statistics.median(e["steps"].get(step, float("nan")) for e in each) for step in each[-1]["steps"]
        }
    return result


def _report(results: dict, args, loads: list[float]) -> None:
    labels = list(results)
    repeated = f"medians of {args.repeat} runs a side, alternating; " if args.repeat > 1 else ""
    print(f"\n{repeated}load average {min(loads):.1f}-{max(loads):.1f}; seconds of steps (step start to step success)")
    titles = {
        "first": "first run (from nothing, the process's first Spark work)",
        "refresh": f"refresh after {args.new:,} new posts",
        "again": "from nothing again, in the same process (a JVM that has run Spark work, as the lake's in "
        "`pintrest run`)",
    }
    for run in RUNS:
        title = titles[run]
        print(f"\n{title}:")
        print(f"  {'step':45}" + "".join(f"{label:>18}" for label in labels))
        steps = sorted({step for label in labels for step in results[label][run]["steps"]})
        for step in steps:
            print(f"  {step:45}" + "".join(f"{results[label][run]['steps'].get(step, float('nan')):>18.2f}"
                                           for label in labels))
        for group in ("transform", "checks"):
            totals = [results[label][run][group] for label in labels]
            ratio = f"   ({totals[0] / totals[-1]:.1f}x)" if len(totals) > 1 and totals[-1] else ""
            print(f"  {group + ' steps, total':45}" + "".join(f"{t:>18.2f}" for t in totals) + ratio)
        totals = [results[label][run]["wall"] for label in labels]
        print(f"  {'the run, wall clock':45}" + "".join(f"{t:>18.2f}" for t in totals))
        totals = [results[label][run]["cpu"] for label in labels]
        ratio = f"   ({totals[0] / totals[-1]:.1f}x)" if len(totals) > 1 and totals[-1] else ""
        print(f"  {'the run, CPU seconds (Python + Spark JVM)':45}" + "".join(f"{t:>18.2f}" for t in totals) + ratio)
        if args.profile:
            for label in labels:
                print(f"\n  Spark jobs per step, {label}:")
                for step, jobs in sorted(results[label][run]["jobs"].items()):
                    slowest = ", ".join(f"{site} {s:.1f}s" for site, s in sorted(jobs["each"], key=lambda j: -j[1])[:3])
                    print(f"    {step:43} {jobs['count']:>3} jobs {jobs['seconds']:>6.2f} s  slowest: {slowest}")
    if len(labels) > 1:
        for run in RUNS:
            answers = [results[label][run]["answers"] for label in labels]
            differ = [name for name in answers[0] if answers[0][name] != answers[-1].get(name)]
            rows = sum(len(v) for v in answers[-1].values())
            print(f"\nanswers after the {run} run, {rows:,} rows in all: "
                  + ("identical on both sides" if not differ else f"DIFFER: {', '.join(differ)}"))
        cleaned = [results[label]["refresh"]["cleaned_rows"] for label in labels]
        print(f"cleaned tables' rows: {cleaned[0]} vs {cleaned[-1]}")


# --- the child: one side's runs, with its own code and Spark -------------------------------------


def _child(code: str, warehouse: str, out: str, args) -> None:
    sys.path.insert(0, code)
    sys.path.insert(1, str(REPO / "benchmarks"))
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    import dagster as dg

    from pintrest_assets.lake.spark import SparkResource, spark_config
    from pintrest_assets.lake.warehouse import WarehouseIOManager

    events = Path(warehouse).parent / f"events-{Path(warehouse).name}"
    config = spark_config("local[*]", verbose=False)
    if args.profile:
        events.mkdir(parents=True, exist_ok=True)
        config = {**config, "spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(),
                  "spark.eventLog.compress": "false"}
    spark = SparkResource(spark_config=config)
    session = spark.spark_session
    session.range(1).count()
    io_manager = WarehouseIOManager(base_dir=warehouse, spark=spark)
    if not out:
        for i in range(args.appends):
            share = args.posts // args.appends + (1 if i < args.posts % args.appends else 0)
            _append_posts(io_manager, session, share, seed=i)
        return

    import pintrest_assets.defs.transform.answers as answers
    import pintrest_assets.defs.transform.checks as checks
    import pintrest_assets.defs.transform.clean_tables as clean_tables
    from pintrest_assets.topics import TOPICS

    transform = [*clean_tables.clean_table_assets, *answers.answer_assets]
    dataframes = [dg.AssetSpec(spec.dataframe).with_io_manager_key("warehouse_io_manager") for spec in TOPICS]
    result, seen = {}, set()
    for run in RUNS:
        if run == "refresh":
            _append_posts(io_manager, session, args.new, seed=1_000_003)
        if run == "again":  # the transform's tables deleted: built from nothing once more
            for table in Path(warehouse).iterdir():
                if table.name not in {spec.dataframe for spec in TOPICS}:
                    shutil.rmtree(table)
        started, cpu = time.time(), _cpu_seconds()
        instance = dg.DagsterInstance.ephemeral()
        outcome = dg.materialize(
            [*dataframes, *transform, *checks.clean_table_checks],
            resources={"warehouse_io_manager": io_manager},
            instance=instance,
        )
        wall, cpu = time.time() - started, _cpu_seconds() - cpu
        steps, windows = _step_times(instance, outcome.run_id)
        transform_ops = {op for asset in transform for op in _op_names(asset)}
        result[run] = {
            "wall": wall,
            "cpu": cpu,
            "steps": steps,
            "transform": sum(s for step, s in steps.items() if step in transform_ops),
            "checks": sum(s for step, s in steps.items() if step not in transform_ops),
            "answers": {a.name: _rows(warehouse, a.name) for a in answers.ANSWERS},
            "cleaned_rows": {spec.clean_asset: len(_rows(warehouse, spec.clean_asset)) for spec in TOPICS},
            "jobs": _spark_jobs(events, windows, seen) if args.profile else {},
        }
    Path(out).write_text(json.dumps(result, default=str))


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its children (the Spark driver's JVM), from
    /proc: the work a run does, which other load on the machine stretches less than its wall clock."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)  # ppid, utime+stime
    mine, total = {os.getpid()}, 0.0
    for _ in range(4):  # children, grandchildren...
        mine |= {pid for pid, (ppid, _) in stats.items() if ppid in mine}
    for pid in mine:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def _op_names(asset) -> list[str]:
    return [asset.node_def.name]


def _step_times(instance, run_id: str) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    starts, windows = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            windows[event.step_key] = (starts[event.step_key], entry.timestamp)
    return {step: end - start for step, (start, end) in windows.items()}, windows


def _spark_jobs(events: Path, windows: dict[str, tuple[float, float]], seen: set) -> dict:
    """Each step's Spark jobs, from the event log: those submitted while the step ran (``seen``:
    the jobs of earlier runs, left out)."""
    jobs, ends = {}, {}
    for path in sorted(p for p in events.rglob("*") if p.is_file()):
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written
            if event["Event"] == "SparkListenerJobStart":
                props = event.get("Properties") or {}
                site = props.get("callSite.short") or "?"
                jobs[event["Job ID"]] = (event["Submission Time"] / 1000, site)
            elif event["Event"] == "SparkListenerJobEnd":
                ends[event["Job ID"]] = event["Completion Time"] / 1000
    per_step = collections.defaultdict(lambda: {"count": 0, "seconds": 0.0, "each": []})
    for job, (submitted, site) in jobs.items():
        if job in seen:
            continue
        seen.add(job)
        seconds = ends.get(job, submitted) - submitted
        step = next((s for s, (a, b) in windows.items() if a <= submitted <= b), "(between steps)")
        per_step[step]["count"] += 1
        per_step[step]["seconds"] += seconds
        per_step[step]["each"].append((site, seconds))
    return dict(per_step)


def _rows(warehouse: str, table: str) -> list:
    from deltalake import DeltaTable

    data = DeltaTable(str(Path(warehouse) / table)).to_pyarrow_table().to_pylist()
    return sorted((json.dumps(list(row.values()), default=str) for row in data))


def _append_posts(io_manager, spark, count: int, seed: int) -> None:
    """``count`` posts drawn with replacement from the sample posts, appended to each DataFrame table."""
    from pyspark.sql import functions as F

    from pintrest_assets.lake.schemas import SCHEMAS
    from pintrest_assets.database.resource import json_ready
    from pintrest_assets.lake.warehouse import TableAppend
    from pintrest_assets.database.generate import generate_posts
    from pintrest_assets.topics import TOPICS

    posts = list(generate_posts(SAMPLE_POSTS))
    drawn = spark.range(count).select((F.rand(seed) * SAMPLE_POSTS).cast("long").alias("_drawn"))
    for spec in TOPICS:
        schema = SCHEMAS[spec.name]
        rows = [tuple(json_ready(post[spec.name]).get(f.name) for f in schema.fields) for post in posts]
        sample = spark.createDataFrame(rows, schema)
        key = schema.fields[0].name  # index / ind
        batch = drawn.join(F.broadcast(sample), F.col("_drawn") == F.col(key)).select(*schema.fieldNames())

        def build(state, batch=batch, schema=schema):
            return TableAppend(base=state, schema=schema, rows=batch, row_count=count, quarantine=None,
                               quarantined=0, objects=1, cursor={"bench": str(state.appends + 1)})

        io_manager.append_with_retry(spec.dataframe, build)


if __name__ == "__main__":
    main()
