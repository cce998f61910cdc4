"""The resources every stage uses, chosen by the settings, and the executor runs use."""

import dagster as dg

from pintrest_assets.resources import resources_for
from pintrest_assets.settings import Settings


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources=resources_for(Settings.from_env()),
        # One process per run: Spark starts one JVM per process, not one per step.
        executor=dg.in_process_executor,
    )
