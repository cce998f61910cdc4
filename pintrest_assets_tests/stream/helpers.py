"""The stream tests' shared pieces: the stream group's assets, drawing posts, and running and
reading the group with ``dg.materialize``."""

from __future__ import annotations

import random

import dagster as dg

from pintrest_assets.database.resource import PostsDatabase
from pintrest_assets.defs.sources.assets import source_tables
from pintrest_assets.defs.stream.assets import kinesis_streams, stream_tables
from pintrest_assets.defs.stream.checks import stream_reconciliation_checks
from pintrest_assets.topics import TOPICS

SHARDS = 2  # per stream, as the user_id fixture creates them
STREAM_TABLES = [dg.AssetKey(spec.stream_table_asset) for spec in TOPICS]
ASSETS = [*source_tables, kinesis_streams, stream_tables, *stream_reconciliation_checks]


def draw(database: PostsDatabase, count: int, seed_value: int = 7) -> list[dict]:
    """``count`` posts drawn as the emulation draws them (with replacement)."""
    return database.draw_posts(count, random.Random(seed_value)).posts


def emulate(instance, resources, posts: int, seed: int = 5):
    return dg.materialize(
        ASSETS,
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.assets(*[spec.kinesis_asset for spec in TOPICS]),
        run_config={"ops": {"kinesis_streams": {"config": {"posts": posts, "seed": seed}}}},
    )


def refresh(instance, resources):
    """The three stream tables and their checks, in one run."""
    return dg.materialize(
        ASSETS, resources=resources, instance=instance, selection=dg.AssetSelection.assets(*STREAM_TABLES)
    )


def check_only(instance, resources):
    result = dg.materialize(
        ASSETS,
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.checks_for_assets(*STREAM_TABLES),
        raise_on_error=False,
    )
    return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}


def materialisations(result, asset: str) -> list[dict]:
    """The metadata of each materialisation of ``asset`` in the run, in order."""
    return [
        {k: v.value for k, v in e.event_specific_data.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == asset
    ]


def metadata(result, asset: str) -> dict:
    [only] = materialisations(result, asset)
    return only
