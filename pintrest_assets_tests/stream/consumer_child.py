"""A stream table's consumer in a process of its own, for the crash tests to SIGKILL.

Usage: python -m pintrest_assets_tests.stream.consumer_child ENDPOINT USER_ID WAREHOUSE MARKER MODE [PER_BATCH]

Runs the pin stream table's query with trigger(availableNow=True), PER_BATCH records per
micro-batch at most, and prints what the run did as JSON. MODE says where it stops for the kill;
MARKER is a file created when it gets there:
- ``mid-run``: once micro-batch 2 is committed to the Delta table; the query goes on, and the
  kill lands wherever it happens to be (reading, writing, committing, checkpointing);
- ``after-commit``: once micro-batch 2 is committed to the Delta table, before Spark's checkpoint
  marks it done; it waits there;
- ``finish``: no marker, no stop: the run a restart makes.
"""

import json
import os
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession

from pintrest_assets.lake import delta as lake_delta
from pintrest_assets.stream.query import run_available_now, source_options
from pintrest_assets.stream.tables import STATE_KEY, StreamTable
from pintrest_assets.topics import TOPICS_BY_NAME

MARK_AFTER_BATCH = 2


def main(endpoint: str, user_id: str, warehouse_dir: str, marker: str, mode: str, per_batch: str = "500") -> None:
    if mode in ("mid-run", "after-commit"):
        commit_files = lake_delta.commit_files

        def commit_then_mark(path, delta, adds, schema, how, properties):
            version = commit_files(path, delta, adds, schema, how, properties)
            info = (properties.custom_metadata or {}).get(STATE_KEY) if properties is not None else None
            if info is not None and info["batch_id"] >= MARK_AFTER_BATCH:
                Path(marker).touch()
                if mode == "after-commit":
                    time.sleep(600)
                    raise SystemExit("not killed")
            return version

        lake_delta.commit_files = commit_then_mark
    elif mode != "finish":
        raise SystemExit(f"unknown mode {mode!r}")

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "ERROR")
        .getOrCreate()
    )
    pin = TOPICS_BY_NAME["pin"]
    table = StreamTable.for_user(warehouse_dir, pin, user_id)
    options = source_options(pin.kinesis_stream(user_id), endpoint, "us-east-1", max_records_per_batch=int(per_batch))
    done = run_available_now(spark, table, options, timeout=600)
    print(
        json.dumps(
            {
                "records": done.records,
                "rows": done.rows,
                "micro_batches": done.micro_batches,
                "replayed": [b.batch_id for b in done.batches if b.replayed],
            }
        ),
        flush=True,
    )
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
