"""The project's Definitions: each stage's assets, checks, sensors and schedules, and the resources."""

import dagster as dg

import pintrest_assets.ingest.definitions as ingest
import pintrest_assets.lake.definitions as lake
import pintrest_assets.transform.definitions as transform
from pintrest_assets.resources import build_resources
from pintrest_assets.settings import Settings

defs = dg.Definitions.merge(
    ingest.defs,
    lake.defs,
    transform.defs,
    dg.Definitions(
        resources=build_resources(Settings.from_env()),
        # One process per run: Spark starts one JVM per process, not one per step.
        executor=dg.in_process_executor,
    ),
)
