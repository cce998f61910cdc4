"""The three topics the emulation produces to, from the one spec table ``TOPICS``: one emulation
batch materialises all three. ``emulation_asset`` builds the same batch for the streaming half's
Kinesis streams (``defs/stream/assets.py``)."""

import random
from collections.abc import Callable
from typing import Optional

import dagster as dg

from pintrest_assets.emulation.batch_metadata import batch_results
from pintrest_assets.emulation.emulator import emulate
from pintrest_assets.topics import TOPICS, TopicSpec


class EmulationConfig(dg.Config):
    """One emulation batch: how many posts to send, and how fast."""

    posts: int = 500
    rate: Optional[float] = None  # posts per second; None sends as fast as the proxy acknowledges
    seed: Optional[int] = None  # fixes which posts are drawn


def emulation_asset(
    name: str,
    *,
    proxy: str,
    asset_of: Callable[[TopicSpec], str],
    describe: Callable[[TopicSpec], str],
    group_name: str,
    kind: str,
) -> dg.AssetsDefinition:
    """One emulation batch as a multi-asset ``name``: random posts from the ``database`` resource
    sent through the ``proxy`` resource (the REST proxy's or the Kinesis proxy's client), one
    asset per topic (``asset_of(spec)``), each recording what it was sent."""

    @dg.multi_asset(
        name=name,
        specs=[
            dg.AssetSpec(
                asset_of(spec), deps=[spec.table], group_name=group_name, kinds={kind}, description=describe(spec)
            )
            for spec in TOPICS
        ],
        # One post is three records drawn together: the three are always sent together.
        can_subset=False,
        required_resource_keys={"database", proxy},
        description="Runs one emulation batch: random posts from the database, through the proxy, to the three "
        + ("topics." if kind == "kafka" else "streams."),
    )
    def _emulation(context: dg.AssetExecutionContext, config: EmulationConfig):
        client = getattr(context.resources, proxy)
        report = emulate(context.resources.database, client, config.posts, rate=config.rate, rng=random.Random(config.seed))
        yield from batch_results(context, report, asset_of)

    return _emulation


topic_streams = emulation_asset(
    "topic_streams",
    proxy="rest_proxy",
    asset_of=lambda spec: spec.topic_asset,
    describe=lambda spec: f"The `<user_id>.{spec.name}` topic: posts sent through the Kafka REST proxy. "
    + spec.description,
    group_name="ingest",
    kind="kafka",
)
