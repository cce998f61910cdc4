"""The emulation on a schedule: a batch of posts every ten minutes, off until turned on."""

import dagster as dg

from pintrest_assets.defs.ingest.assets import EmulationConfig, topic_streams

emulation_schedule = dg.ScheduleDefinition(
    name="emulation_schedule",
    target=topic_streams,
    cron_schedule="*/10 * * * *",
    run_config=dg.RunConfig(ops={"topic_streams": EmulationConfig(posts=200)}),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Sends a batch of 200 posts every ten minutes (off until turned on).",
)
