"""``pintrest emulate``: the original's user_posting_emulation.py as a command."""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading

from tqdm import tqdm

from pintrest_assets.ingest.emulation import EmulationReport, emulate
from pintrest_assets.resources.by_settings import resources_for
from pintrest_assets.topics import TOPICS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--posts", type=int, default=1000, help="posts to send (default 1000)")
    amount.add_argument("--forever", action="store_true", help="send until Ctrl-C")
    parser.add_argument("--rate", type=float, help="posts per second (default: as fast as acknowledged)")
    parser.add_argument("--seed", type=int, help="fix which posts are drawn")


def run(args, settings) -> int:
    resources = resources_for(settings, resolve_secrets=True)
    database, rest_proxy = resources["database"], resources["rest_proxy"]
    database.check()
    total = None if args.forever else args.posts
    stop = threading.Event()
    # Ctrl-C finishes the chunk in flight, so every acknowledged record is counted; a second
    # Ctrl-C interrupts at once.
    signal.signal(signal.SIGINT, lambda *_: (stop.set(), signal.signal(signal.SIGINT, signal.default_int_handler)))
    with tqdm(total=total, unit="post", desc="emulating", file=sys.stderr) as bar:
        report = emulate(
            database,
            rest_proxy,
            total,
            rate=args.rate,
            rng=random.Random(args.seed),
            on_chunk=lambda report, n: bar.update(n),
            stop=stop,
        )
    print(summary_line(report))
    _record_in_instance(report, settings)
    if report.error is not None:
        print(f"pintrest emulate: stopped early: {report.error}", file=sys.stderr)
        return 1
    return 130 if report.interrupted else 0


def _record_in_instance(report: EmulationReport, settings) -> None:
    """Records the batch as materialisations of the topic streams, as a run of the asset would."""
    import dagster as dg

    from pintrest_assets.ingest.stream_metadata import stream_metadata
    from pintrest_assets.instance import project_instance

    instance = project_instance(settings)
    for spec in TOPICS:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                spec.stream_asset,
                description="sent by `pintrest emulate`",
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
