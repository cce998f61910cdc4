"""Reconciliation of each stream table, from the Kinesis proxy to the Delta table.

Three counts should agree for a stream:

1. acknowledged: the records the Kinesis proxy acknowledged, summed over every materialisation
   of the Kinesis stream asset (``pin_kinesis_stream``: ``records_sent``) for this stream name,
   by the same running tally as the batch path's check (``defs/lake/reconciliation.py``);
2. read: the records the stream table's query read from the stream (``pin_stream_table``:
   ``records_read_total``, committed with the rows in each micro-batch);
3. rows + quarantined: the rows of the stream table plus the records it quarantined.

Like the batch check, it reads the assets' materialisation metadata only, never the data.
"""

import dagster as dg

from pintrest_assets.defs.lake.reconciliation import (
    CHECK_NAME,
    Tally,
    bring_up_to_date,
    latest_materialisation,
    materialisation_metadata,
)
from pintrest_assets.topics import TOPICS, TopicSpec

_HOW_TO_READ = """\
Every record the Kinesis proxy acknowledged for the stream (summed over all Kinesis stream \
materialisations) must have been read by the stream table's query, and every record read must be \
a row of the stream table or a quarantined record. A mismatch fails with ERROR and says at which \
step and by how much.

How to read a failure: records acknowledged but not read are normal until the stream table is \
refreshed (the check says when it was not refreshed since the last batch sent; the streaming \
service, `pintrest stream`, appends records within seconds and evaluates this check as it commits): \
refresh it and run the check again. A \
gap that stays means records lost, or past the stream's retention (24 hours by default). More \
read than acknowledged means a request was sent again after its answer was lost (delivery is at \
least once), or records were put into the stream outside this Dagster instance's history."""


def check_key(spec: TopicSpec) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(spec.stream_table_asset), CHECK_NAME)


def stream_mismatches(tally: Tally, read: int, rows: int, quarantined: int, spec: TopicSpec) -> list[str]:
    """Each step where the counts disagree, saying by how much."""
    where = f"stream {tally.topic or spec.kinesis_stream('<user_id>')}"
    problems = []
    if tally.acknowledged != read:
        gap = tally.acknowledged - read
        problems.append(
            f"Kinesis proxy -> {spec.stream_table_asset} ({where}): {tally.acknowledged} records acknowledged, "
            f"{read} read from the stream: " + (f"{gap} not read" if gap > 0 else f"{-gap} more than acknowledged")
        )
    if read != rows + quarantined:
        problems.append(
            f"stream -> table ({where}): {read} records read, {spec.stream_table_asset} holds {rows} rows "
            f"+ {quarantined} quarantined = {rows + quarantined}"
        )
    return problems


def stream_reconciliation(instance: dg.DagsterInstance, spec: TopicSpec) -> dg.AssetCheckResult:
    table = latest_materialisation(instance, spec.stream_table_asset)
    meta = materialisation_metadata(table)
    stream = meta.get("stream") or None  # the stream the table reads now (None: never materialised)
    tally, settled = bring_up_to_date(instance, spec.kinesis_asset, check_key(spec), stream, kind="stream")
    read = int(meta.get("records_read_total", 0))
    rows = int(meta.get("dagster/row_count", 0))
    quarantined = int(meta.get("quarantined_total", 0))
    problems = stream_mismatches(tally, read, rows, quarantined, spec)
    notes = []
    if tally.last_batch is not None and (table is None or table.storage_id < tally.last_batch):
        notes.append(
            f"{spec.stream_table_asset} was not refreshed since the last batch sent to the stream "
            "(a mismatch may be transient: refresh and check again)"
        )
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="\n".join(problems + notes) or None,
        metadata={
            **tally.metadata(settled),
            "read": read,
            "rows": rows,
            "quarantined": quarantined,
            "not_read": tally.acknowledged - read,
        },
    )


def build_stream_reconciliation_check(spec: TopicSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=spec.stream_table_asset, name=CHECK_NAME, description=_HOW_TO_READ)
    def records_reconciled(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return stream_reconciliation(context.instance, spec)

    return records_reconciled


stream_reconciliation_checks: list[dg.AssetChecksDefinition] = [
    build_stream_reconciliation_check(spec) for spec in TOPICS
]
