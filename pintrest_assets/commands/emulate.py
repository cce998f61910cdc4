"""``pintrest emulate``: the original's user_posting_emulation.py as a command, and with ``--stream``
its user_posting_emulation_streaming.py."""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import click

from pintrest_assets.commands import pintrest_command

if TYPE_CHECKING:
    from pintrest_assets.emulation.emulator import EmulationReport, ReportMark

DEFAULT_POSTS = 1000
# --forever's pace unless --rate says otherwise: a steady stream of posts, as a site's users make
# them, which the stream tables keep up with on a laptop. As fast as acknowledged, forever, would
# fill the disk (about 10 MB/s) and outrun any local consumer.
FOREVER_RATE = 10.0
# What was acknowledged is recorded in the instance at least this often while posts are sent.
RECORD_EVERY_SECONDS = 30.0


@pintrest_command(
    "emulate",
    short_help="Send random posts to the three topics, or with --stream to the three Kinesis streams.",
    help=(
        "Draw random posts from the posts database and send them to the three topics through the REST proxy, "
        "as the original user_posting_emulation.py did, with a progress bar; with --stream, to the three Kinesis "
        "streams through the Kinesis proxy, as user_posting_emulation_streaming.py did. Ctrl-C stops cleanly and "
        "reports what was sent. What was acknowledged is recorded in the Dagster instance as it goes: a "
        "materialisation of each stream every --record-every seconds and at the end, each counting the records "
        "acknowledged since the one before."
    ),
    verbose_help="Show Dagster's log and Python's warnings",
)
@click.option(
    "--posts", type=click.IntRange(min=1), help=f"Posts to send (default {DEFAULT_POSTS}; not with --forever)."
)
@click.option("--forever", is_flag=True, help=f"Send until Ctrl-C, {FOREVER_RATE:g} posts a second unless --rate.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help=f"Posts per second (default: as fast as acknowledged; {FOREVER_RATE:g} with --forever).",
)
@click.option("--seed", type=int, help="Fix which posts are drawn.")
@click.option(
    "--stream",
    is_flag=True,
    help="Send to the three Kinesis streams (streaming-<user_id>-pin, -geo, -user) through the Kinesis proxy "
    "(PINTREST_KINESIS_PROXY_URL).",
)
@click.option(
    "--record-every",
    "record_every",
    type=click.FloatRange(min=0, min_open=True),
    default=RECORD_EVERY_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Record what was acknowledged so far in the Dagster instance this often (and at the end).",
)
def command(
    settings,
    verbose: bool,
    posts: int | None,
    forever: bool,
    rate: float | None,
    seed: int | None,
    stream: bool,
    record_every: float,
) -> int:
    if forever and posts is not None:
        raise click.UsageError("--posts and --forever exclude each other")
    if forever and rate is None:
        rate = FOREVER_RATE
    # The database and proxy resources load Dagster; nothing here loads Spark.
    from tqdm import tqdm

    from pintrest_assets.emulation.emulator import emulate
    from pintrest_assets.instance import project_instance
    from pintrest_assets.resources import database_for, rest_proxy_for
    from pintrest_assets.kinesis.proxy_client import kinesis_proxy_for

    database = database_for(settings, resolve_secrets=True)
    proxy = (kinesis_proxy_for if stream else rest_proxy_for)(settings, resolve_secrets=True)
    database.check()
    total = None if forever else (posts or DEFAULT_POSTS)
    stop = threading.Event()
    # Ctrl-C finishes the chunk in flight, so every acknowledged record is counted; a second
    # Ctrl-C interrupts at once.
    signal.signal(signal.SIGINT, lambda *_: (stop.set(), signal.signal(signal.SIGINT, signal.default_int_handler)))
    with tqdm(total=total, unit="post", desc="emulating", file=sys.stderr, leave=False, disable=None) as bar:
        recorder = BatchRecorder(
            project_instance(settings), record_every, warn=lambda message: bar.write(message, file=sys.stderr)
        )

        def on_chunk(report: EmulationReport, n: int) -> None:
            bar.update(n)
            recorder.on_chunk(report)

        try:
            report = emulate(database, proxy, total, rate=rate, rng=random.Random(seed), on_chunk=on_chunk, stop=stop)
        except BaseException:
            # A second Ctrl-C, or an error outside the requests: what was acknowledged is still recorded.
            recorder.finish()
            raise
    print(summary_line(report), flush=True)
    recorder.finish(report)
    if report.error is not None:
        print(f"pintrest emulate: stopped early: {report.error}", file=sys.stderr)
        return 1
    return 130 if report.interrupted else 0


class BatchRecorder:
    """Records what the emulation acknowledged in the Dagster instance as it goes, as runless
    materialisations of the topic streams (of the Kinesis streams for a Kinesis batch), as a run
    of the asset would record a batch.

    ``on_chunk(report)``, after each acknowledged chunk, records once ``every`` seconds have passed
    since the last record; ``finish()`` records the rest. Each materialisation is the batch of the
    records acknowledged since the stream's previous one (``EmulationReport.since``): its count,
    offsets and rate are that part's, so the reconciliation's sums over the materialisations count
    each record once, and a process killed between records leaves those before recorded.
    """

    def __init__(self, instance, every: float, warn=None):
        self.instance = instance
        self.every = every
        self.warn = warn or (lambda message: print(message, file=sys.stderr))
        self.report: EmulationReport | None = None  # the report being sent, once a chunk was acknowledged
        self.marks: dict[str, ReportMark | None] = {}  # stream -> how far its last record went
        self.last = time.monotonic()

    def on_chunk(self, report: EmulationReport) -> None:
        self.report = report
        if time.monotonic() - self.last < self.every:
            return
        try:
            self.record(report)
        except Exception as exc:  # noqa: BLE001 - tried again next time, with the records since
            self.warn(f"pintrest emulate: could not record the batch so far in the Dagster instance: {exc}")

    def finish(self, report: EmulationReport | None = None) -> None:
        """Records what was acknowledged since the last record (every stream once, if never recorded)."""
        report = report or self.report
        if report is not None:
            self.record(report, final=True)

    def record(self, report: EmulationReport, final: bool = False) -> None:
        import dagster as dg

        from pintrest_assets.emulation.batch_metadata import batch_metadata
        from pintrest_assets.topics import TOPICS

        self.last = time.monotonic()
        mark = report.mark()
        # Kinesis batches are the Kinesis stream assets': each reconciliation reads its own kind of positions.
        streaming = any(tally.kind == "stream" for tally in report.topics.values())
        for spec in TOPICS:
            part = report.since(self.marks.get(spec.name))
            tally = part.topics[spec.name]
            empty = not (part.posts or tally.sent or tally.failed or tally.requests)
            # Nothing new: no record, but at the end every stream has one, if only of nothing sent.
            if empty and (spec.name in self.marks or not final):
                continue
            self.instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    spec.kinesis_asset if streaming else spec.topic_asset,
                    description="sent by `pintrest emulate --stream`" if streaming else "sent by `pintrest emulate`",
                    metadata=batch_metadata(part, spec.name),
                )
            )
            self.marks[spec.name] = mark


def summary_line(report: EmulationReport) -> str:
    topics = ", ".join(
        f"{t.topic}: {t.sent} sent" + (f", {t.failed} failed" if t.failed else "") for t in report.topics.values()
    )
    how = "interrupted after" if report.interrupted else "sent"
    return (
        f"{how} {report.posts} posts in {report.seconds:.1f}s "
        f"({report.records_per_second:,.0f} records/s; {report.missing} missing indexes skipped). {topics}"
    )
