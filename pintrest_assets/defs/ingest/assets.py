"""The three topic streams, from the one spec table ``TOPICS``: one emulation batch materialises all three."""

import random
from typing import Optional

import dagster as dg

from pintrest_assets.emulation.emulator import emulate
from pintrest_assets.emulation.batch_metadata import batch_results
from pintrest_assets.database.resource import PostsDatabase
from pintrest_assets.kafka.client import RestProxyResource
from pintrest_assets.topics import TOPICS


class EmulationConfig(dg.Config):
    """One emulation batch: how many posts to send, and how fast."""

    posts: int = 500
    rate: Optional[float] = None  # posts per second; None sends as fast as the proxy acknowledges
    seed: Optional[int] = None  # fixes which posts are drawn


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            spec.topic_asset,
            deps=[spec.table],
            group_name="ingest",
            kinds={"kafka"},
            description=f"The `<user_id>.{spec.name}` topic: posts sent through the Kafka REST proxy. "
            + spec.description,
        )
        for spec in TOPICS
    ],
    # One post is three records drawn together: the three topics are always sent together.
    can_subset=False,
)
def topic_streams(
    context: dg.AssetExecutionContext,
    config: EmulationConfig,
    database: PostsDatabase,
    rest_proxy: RestProxyResource,
):
    """Runs one emulation batch: random posts from the database to the three topics."""
    report = emulate(database, rest_proxy, config.posts, rate=config.rate, rng=random.Random(config.seed))
    yield from batch_results(context, report, lambda spec: spec.topic_asset)
