"""What a topic's materialisation records of an emulation batch, whoever sent it (a run or `pintrest emulate`)."""

from collections.abc import Callable, Iterator

import dagster as dg

from pintrest_assets.emulation.emulator import EmulationReport
from pintrest_assets.topics import TOPICS, TopicSpec


def batch_metadata(report: EmulationReport, topic_name: str) -> dict:
    """The metadata of one topic's (or Kinesis stream's) materialisation for an emulation batch.

    Kafka: ``topic``, and offsets as numbers. Kinesis: ``stream`` instead of ``topic``, shard ids
    as the ``offset_ranges`` keys and sequence numbers as decimal strings, since they exceed what
    a JSON reader such as the UI's JavaScript keeps exactly (2**53).
    """
    tally = report.topics[topic_name]
    exact = str if tally.kind == "stream" else _same
    metadata = {
        tally.kind: tally.topic,
        "records_sent": tally.sent,
        "records_failed": tally.failed,
        "first_offset": _optional(exact, tally.first_offset),
        "last_offset": _optional(exact, tally.last_offset),
        # partition (or shard) -> [first, last] acknowledged offset: what a reconciliation checks downstream
        "offset_ranges": dg.MetadataValue.json(
            {str(p): [exact(min(o)), exact(max(o))] for p, o in sorted(tally.offsets.items()) if o}
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


def _same(value):
    return value


def _optional(convert, value):
    return None if value is None else convert(value)


def batch_results(
    context: dg.AssetExecutionContext, report: EmulationReport, asset_of: Callable[[TopicSpec], str]
) -> Iterator[dg.MaterializeResult]:
    """An emulation batch run as an asset: a materialisation per stream (``asset_of(spec)``), then
    a failure if the batch stopped early, with what was acknowledged still recorded."""
    context.log.info(
        f"sent {report.records_sent} records of {report.posts} posts "
        f"in {report.seconds:.1f}s ({report.records_per_second:,.0f} records/s)"
    )
    for spec in TOPICS:
        yield dg.MaterializeResult(asset_key=asset_of(spec), metadata=batch_metadata(report, spec.name))
    if report.error is not None:
        raise dg.Failure(f"emulation stopped early: {report.error}", metadata={"records_sent": report.records_sent})
