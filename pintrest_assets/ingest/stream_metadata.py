"""What a topic stream's materialisation records of an emulation batch, whoever sent it (a run or `pintrest emulate`)."""

import dagster as dg

from pintrest_assets.ingest.emulation import EmulationReport


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
