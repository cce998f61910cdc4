"""``pintrest emulate``: the original's user_posting_emulation.py as a command."""

from __future__ import annotations

import random
import signal
import sys
import threading
from typing import TYPE_CHECKING

import click

from pintrest_assets.commands import pintrest_command

if TYPE_CHECKING:
    from pintrest_assets.ingest.emulation import EmulationReport

DEFAULT_POSTS = 1000


@pintrest_command(
    "emulate",
    short_help="Send random posts to the three topics, or with --stream to the three Kinesis streams.",
    help=(
        "Draw random posts from the posts database and send them to the three topics through the REST proxy, "
        "as the original user_posting_emulation.py did, with a progress bar; with --stream, to the three Kinesis "
        "streams through the Kinesis proxy, as user_posting_emulation_streaming.py did. Ctrl-C stops cleanly and "
        "reports what was sent. The batch is recorded in the Dagster instance as a materialisation of each stream."
    ),
    verbose_help="Show Dagster's log and Python's warnings",
)
@click.option(
    "--posts", type=click.IntRange(min=1), help=f"Posts to send (default {DEFAULT_POSTS}; not with --forever)."
)
@click.option("--forever", is_flag=True, help="Send until Ctrl-C.")
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), help="Posts per second (default: as fast as acknowledged)."
)
@click.option("--seed", type=int, help="Fix which posts are drawn.")
@click.option(
    "--stream",
    is_flag=True,
    help="Send to the three Kinesis streams (streaming-<user_id>-pin, -geo, -user) through the Kinesis proxy "
    "(PINTREST_KINESIS_PROXY_URL).",
)
def command(
    settings, verbose: bool, posts: int | None, forever: bool, rate: float | None, seed: int | None, stream: bool
) -> int:
    if forever and posts is not None:
        raise click.UsageError("--posts and --forever exclude each other")
    # The database and proxy resources load Dagster; nothing here loads Spark.
    from tqdm import tqdm

    from pintrest_assets.ingest.emulation import emulate
    from pintrest_assets.resources.by_settings import database_for, rest_proxy_for
    from pintrest_assets.resources.kinesis_proxy import kinesis_proxy_for

    database = database_for(settings, resolve_secrets=True)
    proxy = (kinesis_proxy_for if stream else rest_proxy_for)(settings, resolve_secrets=True)
    database.check()
    total = None if forever else (posts or DEFAULT_POSTS)
    stop = threading.Event()
    # Ctrl-C finishes the chunk in flight, so every acknowledged record is counted; a second
    # Ctrl-C interrupts at once.
    signal.signal(signal.SIGINT, lambda *_: (stop.set(), signal.signal(signal.SIGINT, signal.default_int_handler)))
    with tqdm(total=total, unit="post", desc="emulating", file=sys.stderr, leave=False, disable=None) as bar:
        report = emulate(
            database,
            proxy,
            total,
            rate=rate,
            rng=random.Random(seed),
            on_chunk=lambda report, n: bar.update(n),
            stop=stop,
        )
    print(summary_line(report), flush=True)
    _record_in_instance(report, settings)
    if report.error is not None:
        print(f"pintrest emulate: stopped early: {report.error}", file=sys.stderr)
        return 1
    return 130 if report.interrupted else 0


def _record_in_instance(report: EmulationReport, settings) -> None:
    """Records the batch as materialisations of the topic or Kinesis streams, as a run of the asset would."""
    import dagster as dg

    from pintrest_assets.ingest.stream_metadata import stream_metadata
    from pintrest_assets.instance import project_instance
    from pintrest_assets.topics import TOPICS

    # Kinesis batches are the Kinesis stream assets': each reconciliation reads its own kind of positions.
    streaming = any(tally.kind == "stream" for tally in report.topics.values())
    instance = project_instance(settings)
    for spec in TOPICS:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                spec.kinesis_asset if streaming else spec.stream_asset,
                description="sent by `pintrest emulate --stream`" if streaming else "sent by `pintrest emulate`",
                metadata=stream_metadata(report, spec.name),
            )
        )


def summary_line(report: EmulationReport) -> str:
    topics = ", ".join(
        f"{t.topic}: {t.sent} sent" + (f", {t.failed} failed" if t.failed else "") for t in report.topics.values()
    )
    how = "interrupted after" if report.interrupted else "sent"
    return (
        f"{how} {report.posts} posts in {report.seconds:.1f}s "
        f"({report.records_per_second:,.0f} records/s; {report.missing} missing indexes skipped). {topics}"
    )
