"""A writer of the lake for the concurrency test, in a process of its own (its own Spark JVM).

Usage: python -m pintrest_assets_tests.lake.concurrent_child MODE, with the PINTREST_* settings
in the environment. MODE is the entry point:
- ``sensor``: a run of ``pin_raw_json`` + ``df_pin``, the selection of new_objects_sensor's run
  request, materialised into the project's (file-backed) instance;
- ``run``: ``pintrest run``'s lake stage (``Pipeline.lake``: every topic's raw JSON and
  DataFrame, executed in process outside the instance's run queue).

The process starts once, then refreshes each time a line comes on stdin, and answers each with
one line on stdout, ``answer: `` and JSON: ``{"ok": bool, "attempts": df_pin's commit attempts, "error": str}``.

With ``PINTREST_TEST_MEET_DIR`` set, each refresh holds its first commit to df_pin until the other
writer's refresh has read the table too (a file per writer and refresh in that directory), so the
two writers always meet: both read the same table version, and one of them must start again.
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path

ANSWER = "answer: "
MEET_TIMEOUT_SECONDS = 120


def _meet_before_committing(mode: str, meet_dir: Path, refreshes) -> None:
    """Holds df_pin's first append attempt of each refresh until the other writer reaches its own."""
    from pintrest_assets.lake.warehouse import WarehouseIOManager

    append = WarehouseIOManager._append
    met = set()

    def meeting_append(self, table, batch):
        refresh = refreshes()
        if table.name == "df_pin" and refresh not in met:
            met.add(refresh)
            (meet_dir / f"{mode}.{refresh}").touch()
            other = meet_dir / f"{'run' if mode == 'sensor' else 'sensor'}.{refresh}"
            deadline = time.monotonic() + MEET_TIMEOUT_SECONDS
            while not other.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return append(self, table, batch)

    WarehouseIOManager._append = meeting_append


def main(mode: str) -> None:
    import dagster as dg

    from pintrest_assets.commands.run import Pipeline
    from pintrest_assets.defs.lake.dataframes import dataframe_assets
    from pintrest_assets.defs.lake.raw_json import raw_json_assets
    from pintrest_assets.instance import project_instance
    from pintrest_assets.resources import resources_for
    from pintrest_assets.settings import Settings
    from pintrest_assets.topics import TOPICS

    settings = Settings.from_env()
    if mode == "run":
        pipeline = Pipeline(settings, verbose=False)
    else:
        instance = project_instance(settings)
        resources = {
            k: v for k, v in resources_for(settings).items() if k in {"s3_mount", "spark", "warehouse_io_manager"}
        }
        wanted = {dg.AssetKey("pin_raw_json"), dg.AssetKey("df_pin")}
        assets = [a for a in [*raw_json_assets, *dataframe_assets] if a.key in wanted]

    refresh = 0
    if os.environ.get("PINTREST_TEST_MEET_DIR"):
        _meet_before_committing(mode, Path(os.environ["PINTREST_TEST_MEET_DIR"]), lambda: refresh)

    print(ANSWER + json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        refresh += 1
        try:
            if mode == "run":
                topics = {spec.name: {} for spec in TOPICS}
                pipeline.lake(topics)
                [run] = pipeline.instance.get_runs(dg.RunsFilter(tags={"pintrest/stage": "lake"}), limit=1)
                result_metadata = _metadata_of(pipeline.instance, run.run_id)
            else:
                result = dg.materialize(
                    assets, resources=resources, instance=instance, tags={"pintrest/topic": "u.pin"}
                )
                result_metadata = _metadata_of(instance, result.run_id)
            answer = {"ok": True, "attempts": result_metadata["commit_attempts"], "read": result_metadata["rows_read"]}
        except Exception:  # noqa: BLE001 - reported to the test
            answer = {"ok": False, "error": traceback.format_exc()}
        print(ANSWER + json.dumps(answer), flush=True)


def _metadata_of(instance, run_id: str) -> dict:
    """df_pin's materialisation metadata in the run."""
    import dagster as dg

    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = event.asset_materialization
        if materialization.asset_key == dg.AssetKey("df_pin"):
            return {k: v.value for k, v in materialization.metadata.items()}
    raise LookupError(f"no materialisation of df_pin in run {run_id}")


if __name__ == "__main__":
    main(sys.argv[1])
