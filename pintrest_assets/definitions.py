"""The project's Definitions: each stage's assets, checks, sensors and schedules, and the resources."""

import dagster as dg

from pintrest_assets.ingest.definitions import defs as ingest_defs
from pintrest_assets.resources import build_resources
from pintrest_assets.settings import Settings

defs = dg.Definitions.merge(
    ingest_defs,
    dg.Definitions(
        resources=build_resources(Settings.from_env()),
        # One process per run: Spark starts one JVM per process, not one per step.
        executor=dg.in_process_executor,
    ),
)
