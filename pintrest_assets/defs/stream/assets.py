"""The streaming half: the three Kinesis streams and their Delta stream tables.

``kinesis_streams`` runs one emulation batch through the Kinesis proxy, as ``topic_streams``
does through the REST proxy (``pintrest emulate --stream`` records its batches as
materialisations of the same assets).

The stream tables are kept fresh by the streaming service (``pintrest stream``, started by
``pintrest dev``), which records each micro-batch it commits as a materialisation of its
table, without a run (``reporting.py``). Materialising a stream table here (a click, ``pintrest
run --stream``) never races it: with the service running, the run waits until the service has
committed what had arrived when the run started and reports that; with no service, it runs the
table's Structured Streaming query with ``trigger(availableNow=True)``: every record that
arrived before it started, appended in micro-batches, then it stops (``stream/refresh.py``).
"""

import dagster as dg
from pydantic import Field

from pintrest_assets.defs.ingest.assets import emulation_asset
from pintrest_assets.defs.lake.reconciliation import bring_up_to_date
from pintrest_assets.lake.schemas import column_schema
from pintrest_assets.lake.spark import SparkResource
from pintrest_assets.lake.warehouse import WarehouseIOManager
from pintrest_assets.kinesis.positions import lag_table
from pintrest_assets.stream.refresh import StreamRefresh, refresh_or_wait
from pintrest_assets.stream.resource import KinesisResource
from pintrest_assets.topics import TOPICS, TopicSpec
from pintrest_assets.transform.metadata_table import metadata_table

GROUP = "stream"


kinesis_streams = emulation_asset(
    "kinesis_streams",
    proxy="kinesis_proxy",
    asset_of=lambda spec: spec.kinesis_asset,
    describe=lambda spec: f"The `streaming-<user_id>-{spec.name}` Kinesis stream: posts sent through the API "
    f"Gateway Kinesis proxy. {spec.description}",
    group_name=GROUP,
    kind="kinesis",
)


def _stream_table_spec(spec: TopicSpec) -> dg.AssetSpec:
    return dg.AssetSpec(
        spec.stream_table_asset,
        deps=[spec.kinesis_asset],
        group_name=GROUP,
        kinds={"spark", "delta", "kinesis"},
        description=f"The `streaming-<user_id>-{spec.name}` Kinesis stream as the Delta table "
        f"`<user_id>_{spec.name}_table`, appended to by Spark Structured Streaming: each record decoded with "
        f"the batch path's explicit schema and cleaned by the same cleaning as `{spec.clean_asset}`; records "
        "that do not parse are quarantined and counted. A stream table holds records, not unique posts: a post "
        "the emulation drew twice is two rows (the cleaned batch table keeps one). Materialising runs the query "
        "with trigger(availableNow=True) from its checkpoint: exactly once across restarts and crashes.",
    )


class StreamTablesConfig(dg.Config):
    """How long a refresh waits for a running streaming service."""

    wait_seconds: float = Field(
        default=300.0,
        ge=0,
        description="With the streaming service running (pintrest stream), how long to wait for it to commit "
        "the records that had arrived when the run started, before failing with a message.",
    )


@dg.multi_asset(
    name="stream_tables",
    specs=[_stream_table_spec(spec) for spec in TOPICS],
    # Each table on its own, or several together: the queries of one step run at once.
    can_subset=True,
)
def stream_tables(
    context: dg.AssetExecutionContext,
    config: StreamTablesConfig,
    kinesis: KinesisResource,
    spark: SparkResource,
    warehouse_io_manager: dg.ResourceParam[WarehouseIOManager],
):
    """Refreshes the selected stream tables: waits for the streaming service if it runs, or runs
    their queries with trigger(availableNow=True), together."""
    specs = [spec for spec in TOPICS if dg.AssetKey(spec.stream_table_asset) in context.selected_asset_keys]
    outcomes = refresh_or_wait(
        specs,
        kinesis,
        warehouse_io_manager,
        lambda: spark.streaming_session,
        log=context.log,
        wait_seconds=config.wait_seconds,
    )
    failed = []
    for spec, outcome in zip(specs, outcomes):
        if isinstance(outcome, Exception):
            context.log.error(f"{spec.stream_table_asset}: {type(outcome).__name__}: {outcome}")
            failed.append((spec, outcome))
            continue
        yield dg.MaterializeResult(asset_key=spec.stream_table_asset, metadata=_metadata(context, outcome))
    if len(failed) == 1:
        raise failed[0][1]
    if failed:
        raise dg.Failure("; ".join(f"{spec.stream_table_asset}: {type(exc).__name__}: {exc}" for spec, exc in failed))


def _metadata(context: dg.AssetExecutionContext, outcome: StreamRefresh) -> dict:
    return refresh_metadata(outcome, acknowledged_so_far(context.instance, outcome.spec, outcome.stream))


def acknowledged_so_far(instance: dg.DagsterInstance, spec: TopicSpec, stream: str) -> int:
    """Records the Kinesis proxy acknowledged for ``stream``, over every batch recorded so far
    (the reconciliation's tally, read without recording it)."""
    from pintrest_assets.defs.stream.checks import check_key

    tally, _ = bring_up_to_date(instance, spec.kinesis_asset, check_key(spec), stream, kind="stream")
    return tally.acknowledged


def refresh_metadata(refresh: StreamRefresh, acknowledged: int) -> dict:
    """A stream table's materialisation metadata: what this refresh appended, the table's totals
    (the reconciliation reads them), and how far behind each shard's tip the table is left."""
    state = refresh.state
    lag = lag_table(refresh.shards, state.arrivals)
    waiting = [s for s in refresh.shards if s.waiting]
    run = refresh.run
    metadata = {
        "stream": refresh.stream,
        "table": refresh.table.name,
        "path": dg.MetadataValue.path(str(refresh.table.path)),
        "checkpoint": dg.MetadataValue.path(str(refresh.table.checkpoint)),
        "dagster/row_count": state.rows,
        "rows_appended": refresh.rows,
        "records_read": refresh.records,
        "quarantined": refresh.quarantined,
        "micro_batches": refresh.micro_batches,
        "micro_batches_replayed": run.replayed if run else 0,
        "records_read_total": state.records_read,
        "quarantined_total": state.quarantined,
        "seconds": round(run.seconds, 2) if run else 0.0,
        "records_per_second": round(run.records_per_second, 1) if run else 0.0,
        # Lag: records acknowledged by the proxy but not read yet (negative: records put into the
        # stream outside this instance's batches), and per shard the first unread record's age.
        "records_behind": acknowledged - state.records_read,
        "shards_behind": len(waiting),
        "first_unread_age_s": round(max((s.waiting_seconds() for s in waiting), default=0.0), 1),
        "lag": metadata_table(list(lag[0]) if lag else ["shard"], [list(row.values()) for row in lag]),
        "positions": dg.MetadataValue.json(dict(sorted(state.positions.items()))),
        **{f"maintenance_{k}": v for k, v in refresh.maintenance.items()},
    }
    if refresh.by_service:
        # The streaming service appended the rows: this run waited for it to commit what waited.
        metadata["appended_by"] = "stream service"
        metadata["waited_s"] = refresh.waited_seconds
    if state.quarantined:
        metadata["quarantine_path"] = dg.MetadataValue.path(str(refresh.table.quarantine_path))
    if refresh.schema is not None:
        metadata["dagster/column_schema"] = column_schema(refresh.schema)
    return metadata
