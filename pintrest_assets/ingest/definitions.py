import dagster as dg

from pintrest_assets.ingest.assets import emulation_schedule, source_tables, topic_streams

defs = dg.Definitions(assets=[*source_tables, topic_streams], schedules=[emulation_schedule])
