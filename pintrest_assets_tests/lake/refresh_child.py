"""A refresh of pin_raw_json and df_pin in a process of its own, for the crash tests to SIGKILL.

Usage: python -m pintrest_assets_tests.lake.refresh_child BUCKET MOUNT WAREHOUSE USER_ID MARKER MODE

MODE says where the refresh stops for the kill; MARKER is a file created when it gets there:
- ``during-write``: when Spark starts writing the batch's parquet files; each row then costs
  Spark a few milliseconds, so the write is still running when the kill comes.
- ``before-commit``: when the files are written and the Delta commit is next; it waits there.
"""

import os
import sys
import time
from pathlib import Path

import dagster as dg
from pyspark.sql import functions as F

from pintrest_assets.defs.lake.dataframes import dataframe_assets
from pintrest_assets.defs.lake.raw_json import raw_json_assets
from pintrest_assets.lake import delta as lake_delta
from pintrest_assets.lake.mount.resource import S3MountResource
from pintrest_assets.lake.spark import SparkResource, spark_config
from pintrest_assets.lake.warehouse import WarehouseIOManager


def main(bucket: str, mount: str, warehouse_dir: str, user_id: str, marker: str, mode: str) -> None:
    if mode == "during-write":
        write_files = lake_delta.write_files

        def write_then_mark(df, path):
            Path(marker).touch()
            pause = F.udf(lambda _: time.sleep(0.01) is None, "boolean")
            return write_files(df.where(pause(F.col("index"))), path)

        lake_delta.write_files = write_then_mark
    elif mode == "before-commit":

        def wait_for_the_kill(*args, **kwargs):
            Path(marker).touch()
            time.sleep(600)
            raise SystemExit("not killed")

        lake_delta.commit_files = wait_for_the_kill
    else:
        raise SystemExit(f"unknown mode {mode!r}")

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = SparkResource(spark_config={**spark_config("local[2]"), "spark.sql.shuffle.partitions": "2"})
    wanted = {dg.AssetKey("pin_raw_json"), dg.AssetKey("df_pin")}
    dg.materialize(
        [a for a in [*raw_json_assets, *dataframe_assets] if a.key in wanted],
        resources={
            "s3_mount": S3MountResource(bucket_url=bucket, mount_dir=mount, user_id=user_id),
            "spark": spark,
            "warehouse_io_manager": WarehouseIOManager(base_dir=warehouse_dir, spark=spark),
        },
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
