"""df_pin, df_geo and df_user: each topic's mounted objects read by Spark into a Delta table.

The original read the whole mount into a DataFrame every time. Here a refresh reads only the
objects mounted after the table's cursor (per partition, the last key read: sink keys grow with
the offset) and appends them, so its cost follows what is new. The mount gathers objects into
batch files, so Spark opens a few files however many one-record objects landed, and parses the
records that Spark would read alike with pyarrow: Spark reads their columns and writes them in
one job, and parses the few lines left (``lake.parsing``). Every line of an object is accounted
for: a row of the table, or a quarantined line kept with its source key and the reason it was
rejected. The original's ``display(df.describe())`` is kept as running per-column statistics
that each refresh merges its new rows into (those of the records parsed on mount come with
them): a summary of the whole table for the price of the new rows.

Once the refresh's commit is durable, the mount releases the batch files it read: the mount
holds what is not read yet, not a second copy of the bucket.

A refresh commits through ``WarehouseIOManager.append_with_retry``: when another run (a sensor's
refresh, ``pintrest run``) appended to the table after this one read its state, the refresh
starts again from the new state, reading only the objects after the new cursor.
"""

# No ``from __future__ import annotations``: Dagster reads the context annotation of a
# generator asset as written, and a string would not match.

from collections.abc import Mapping
from functools import reduce

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pintrest_assets.lake.parsing import good_rows, parse_records, read_batches, read_parsed, rejected_lines
from pintrest_assets.lake.schemas import SCHEMAS, column_schema
from pintrest_assets.lake.statistics import (
    BatchProfile,
    column_aggregates,
    column_stats,
    merge_stats,
    profile,
    summary_markdown,
)
from pintrest_assets.lake.mount.resource import MountedSelection, S3MountResource
from pintrest_assets.lake.spark import SparkResource
from pintrest_assets.lake.warehouse import (
    CommittedAppend,
    TableAppend,
    TableState,
    WarehouseIOManager,
    WarehouseTable,
)
from pintrest_assets.topics import TOPICS, TopicSpec


def cursor_after(cursor: Mapping[str, str], selection: MountedSelection) -> dict[str, str]:
    """The cursor moved past the selected objects: per partition prefix, the last key read."""
    moved = dict(cursor)
    for prefix, key in selection.last_keys.items():
        moved[prefix] = max(key, moved.get(prefix, ""))
    return moved


def build_dataframe_asset(spec: TopicSpec) -> dg.AssetsDefinition:
    """The Spark DataFrame asset of one topic (``spec.dataframe``), fed by its raw JSON asset."""
    schema = SCHEMAS[spec.name]

    @dg.asset(
        name=spec.dataframe,
        group_name="lake",
        deps=[spec.raw_asset],
        kinds={"spark", "delta"},
        io_manager_key="warehouse_io_manager",
        description=f"The `<user_id>.{spec.name}` topic as a Spark DataFrame (the original's `{spec.dataframe}`), "
        f"read with an explicit schema and appended to a Delta table as new objects land. {spec.description}",
        metadata={"dagster/column_schema": column_schema(schema)},
    )
    def dataframe(
        context: dg.AssetExecutionContext,
        s3_mount: S3MountResource,
        spark: SparkResource,
        warehouse_io_manager: dg.ResourceParam[WarehouseIOManager],
    ):
        table = warehouse_io_manager.table(spec.dataframe)
        read: dict = {}  # what the latest attempt read: its selection and profile
        cached: list[DataFrame] = []

        def build_batch(base: TableState) -> TableAppend:
            # An attempt before this one lost its commit: its rows are not needed any more.
            while cached:
                cached.pop().unpersist()
            new = s3_mount.select(topic, after=base.cursor)
            read.update(base=base, new=new)
            if not new.objects:
                # Nothing to read: no Spark session is started.
                context.log.info(f"{spec.dataframe}: no new objects; the table keeps its {base.rows} rows")
                read.update(batch=_NOTHING_READ, parsed_on_mount=0)
                return _batch(base, schema, new, _NOTHING_READ, rows=None, quarantine=None)

            session = spark.spark_session
            # The records the mount parsed come counted and described (in its ledger); only those
            # of a batch read in part (a cursor inside a sync: rare) are profiled here.
            partial = [s for s in new.slices if s.parsed and s.keys is not None]
            parsed = BatchProfile(rows=new.parsed, rejected=0, stats=new.parsed_stats)
            if partial:
                part = read_parsed(session, partial, schema)
                row = part.agg(F.count(F.lit(1)).alias("rows"), *column_aggregates(schema)).first().asDict()
                stats = merge_stats(parsed.stats, column_stats(row, schema))
                parsed = BatchProfile(parsed.rows + row["rows"], 0, stats)
            parts = [df for df in [read_parsed(session, new.slices, schema)] if df is not None]
            # The lines it left to Spark (few: those pyarrow's strict reader refused) are parsed,
            # kept or quarantined here, and profiled in one pass over them.
            lines = read_batches(session, new.slices)
            left = _NOTHING_READ
            quarantine = None
            if lines is not None:
                checked = parse_records(lines, schema, spec.index_column).cache()
                cached.append(checked)
                left = profile(checked, schema)
                parts.append(good_rows(checked))
                quarantine = rejected_lines(checked) if left.rejected else None
            batch = BatchProfile(parsed.rows + left.rows, left.rejected, merge_stats(parsed.stats, left.stats))
            read.update(batch=batch, parsed_on_mount=parsed.rows)
            if batch.rows + batch.rejected != new.records:
                context.log.warning(
                    f"{spec.dataframe}: read {batch.rows + batch.rejected} records from {new.objects} objects "
                    f"where the mount counted {new.records} (batch files changed since they were mounted?)"
                )
            context.log.info(
                f"{spec.dataframe}: {new.objects} new objects in {len(new.slices)} batches, {batch.rows} rows "
                f"({parsed.rows} parsed on mount), {batch.rejected} lines quarantined"
            )
            rows = reduce(DataFrame.unionByName, parts) if parts else None
            return _batch(base, schema, new, batch, rows=rows, quarantine=quarantine)

        topic = s3_mount.topic_for(spec)
        try:
            committed = warehouse_io_manager.append_with_retry(spec.dataframe, build_batch, log=context.log.warning)
        finally:
            for parsed in cached:
                parsed.unpersist()
        # The commit is durable: the mount needs no copy of what it read any more.
        released = s3_mount.release(topic, committed.batch.cursor)
        if released:
            context.log.info(f"{spec.dataframe}: released {released} batches of the mount, read and committed")
        # The IO manager only reports the table: the batch is committed.
        yield _output(table, committed, schema, read["new"], read["batch"], read["parsed_on_mount"], released)

    return dataframe


_NOTHING_READ = BatchProfile(rows=0, rejected=0, stats={})


def _batch(
    base: TableState,
    schema: T.StructType,
    new: MountedSelection,
    batch: BatchProfile,
    *,
    rows: DataFrame | None,
    quarantine: DataFrame | None,
) -> TableAppend:
    return TableAppend(
        base=base,
        schema=schema,
        rows=rows,
        row_count=batch.rows,
        quarantine=quarantine,
        quarantined=batch.rejected,
        objects=new.objects,
        cursor=cursor_after(base.cursor, new),
        summary=merge_stats(base.summary, batch.stats),
    )


def _output(
    table: WarehouseTable,
    committed: CommittedAppend,
    schema: T.StructType,
    new: MountedSelection,
    batch: BatchProfile,
    parsed_on_mount: int,
    released: int,
) -> dg.Output:
    append = committed.batch
    base = append.base
    total = base.rows + batch.rows
    metadata = {
        "dagster/row_count": total,
        "rows_read": batch.rows,
        "rows_parsed_on_mount": parsed_on_mount,  # the others: lines the mount left to Spark's parser
        "objects_read": new.objects,
        "batch_files_read": len(new.slices),
        "records_in_objects": new.records,
        "quarantined": batch.rejected,
        "quarantined_total": base.quarantined + batch.rejected,
        "objects_total": base.objects + new.objects,
        "commit_attempts": committed.attempts,
        "batch_files_released": released,
        "dagster/column_schema": column_schema(schema),
        "describe": dg.MetadataValue.md(
            summary_markdown(
                append.summary,
                schema.fieldNames(),
                f"describe() of the whole table: {total:,} rows, {batch.rows:,} of them read in this refresh",
            )
        ),
        "cursor": dg.MetadataValue.json(dict(sorted(append.cursor.items()))),
    }
    if metadata["quarantined_total"]:
        metadata["quarantine_path"] = dg.MetadataValue.path(str(table.quarantine_path))
    return dg.Output(committed, metadata=metadata)


dataframe_assets: list[dg.AssetsDefinition] = [build_dataframe_asset(spec) for spec in TOPICS]
