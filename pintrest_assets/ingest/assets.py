"""The source tables and the three topic streams, all from the one spec table ``TOPICS``."""

import random
from typing import Optional

import dagster as dg

from pintrest_assets.ingest.emulation import EmulationReport, emulate
from pintrest_assets.resources.database import PostsDatabase
from pintrest_assets.resources.rest_proxy import RestProxyResource
from pintrest_assets.topics import TOPICS

source_tables = [
    dg.AssetSpec(
        spec.table,
        group_name="sources",
        kinds={"mysql"},
        description=f"Source table of the {spec.name} topic. {spec.description}",
        metadata={"index_column": spec.index_column},
    )
    for spec in TOPICS
]


class EmulationConfig(dg.Config):
    """One emulation batch: how many posts to send, and how fast."""

    posts: int = 500
    rate: Optional[float] = None  # posts per second; None sends as fast as the proxy acknowledges
    seed: Optional[int] = None  # fixes which posts are drawn


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            spec.stream_asset,
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
    report = emulate(
        database, rest_proxy, config.posts, rate=config.rate, rng=random.Random(config.seed)
    )
    context.log.info(
        f"sent {report.records_sent} records of {report.posts} posts "
        f"in {report.seconds:.1f}s ({report.records_per_second:,.0f} records/s)"
    )
    for spec in TOPICS:
        yield dg.MaterializeResult(asset_key=spec.stream_asset, metadata=stream_metadata(report, spec.name))
    if report.error is not None:
        raise dg.Failure(
            f"emulation stopped early: {report.error}",
            metadata={"records_sent": report.records_sent},
        )


def stream_metadata(report: EmulationReport, topic_name: str) -> dict:
    tally = report.topics[topic_name]
    metadata = {
        "topic": tally.topic,
        "records_sent": tally.sent,
        "records_failed": tally.failed,
        "first_offset": tally.first_offset,
        "last_offset": tally.last_offset,
        # partition -> [first, last] acknowledged offset: what a reconciliation checks in the bucket
        "offset_ranges": dg.MetadataValue.json(
            {str(p): [min(o), max(o)] for p, o in sorted(tally.offsets.items()) if o}
        ),
        "retries": tally.retries,
        "requests": tally.requests,
        "posts_drawn": report.posts,
        "indexes_missing": report.missing,
        "records_per_second": round(tally.sent / report.seconds, 1) if report.seconds else 0.0,
    }
    if tally.failures:
        metadata["failure_examples"] = dg.MetadataValue.md("\n".join(f"- {m}" for m in tally.failures))
    return metadata


emulation_schedule = dg.ScheduleDefinition(
    name="emulation_schedule",
    target=topic_streams,
    cron_schedule="*/10 * * * *",
    run_config=dg.RunConfig(ops={"topic_streams": EmulationConfig(posts=200)}),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Sends a batch of 200 posts every ten minutes (off until turned on).",
)
