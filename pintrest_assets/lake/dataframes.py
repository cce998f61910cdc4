"""df_pin, df_geo and df_user: each topic's mounted JSON objects read by Spark into the warehouse.

The original read the whole mount into a DataFrame every time. Here a refresh reads only the
objects mounted after the table's cursor (per partition, the last key read: sink keys grow with
the offset) and appends them, so its cost follows what is new. Every line of an object is
accounted for: a row of the table, or a quarantined line kept with its source key and the
reason it was rejected. The original's ``display(df.describe())`` is kept as running per-column
statistics that each refresh merges its new rows into: a summary of the whole table for the
price of the new rows.
"""

# No ``from __future__ import annotations``: Dagster reads the context annotation of a
# generator asset as written, and a string would not match.

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pintrest_assets.lake.io_manager import TableAppend, TableState, WarehouseIOManager, WarehouseTable
from pintrest_assets.lake.schemas import SCHEMAS, column_schema
from pintrest_assets.resources.s3_mount import MountedObject, S3MountResource
from pintrest_assets.resources.spark import SparkResource
from pintrest_assets.sink_layout import partition_of
from pintrest_assets.topics import TOPICS, TopicSpec

CORRUPT_RECORD = "_corrupt_record"

# Long strings (descriptions, URLs) would drown the summary table.
_SUMMARY_CELL_WIDTH = 32

Stats = dict  # one column's statistics: count, min, max, and mean and m2 for numeric columns


def parse_objects(spark, objects: Sequence[tuple[str, str]], schema: T.StructType, key_column: str) -> DataFrame:
    """The lines of ``objects`` ((key, path) pairs) parsed with ``schema``, one row per non-blank line.

    Columns: ``record`` (a struct in ``schema``), ``line`` (the text as read), ``path`` (the
    object's file, to find its key) and ``problem``: null for a good record, else why the line is
    rejected (not valid JSON, does not match the schema, or has no ``key_column``). Reading lines
    as text first keeps one line one record, where the JSON reader would split a top-level array
    into several rows.
    """
    with_corrupt = T.StructType([*schema.fields, T.StructField(CORRUPT_RECORD, T.StringType())])
    record = F.from_json("line", with_corrupt, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_RECORD})
    lines = (
        spark.read.text([path for _, path in objects])
        .select(F.col("value").alias("line"), _file_path(F.col("_metadata.file_path")).alias("path"))
        .where(F.col("line").rlike(r"\S"))
    )
    problem = F.when(
        F.col(f"record.{CORRUPT_RECORD}").isNotNull(),
        F.when(F.try_parse_json("line").isNull(), F.lit("not valid JSON")).otherwise(F.lit("does not match the schema")),
    ).when(F.col(f"record.{key_column}").isNull(), F.lit(f"no {key_column}"))
    return lines.select(record.alias("record"), "line", "path").select(
        F.struct(*(F.col(f"record.{f.name}").alias(f.name) for f in schema.fields)).alias("record"),
        "line",
        "path",
        problem.alias("problem"),
    )


def good_rows(parsed: DataFrame) -> DataFrame:
    """The records that passed, as rows of the topic's schema."""
    return parsed.where(F.col("problem").isNull()).select("record.*")


def rejected_lines(parsed: DataFrame, key_of: Mapping[str, str]) -> DataFrame:
    """The rejected lines with the key of their object: ``source_key``, ``line``, ``reason``.

    ``key_of`` maps the path of each object holding rejected lines (``BatchProfile.rejected_paths``)
    to its key. It goes into the plan as a literal map: no Python on the executors, and a plan
    as small as the number of objects with rejected lines.
    """
    keys = F.create_map(*(F.lit(part) for path, key in key_of.items() for part in (path, key)))
    return parsed.where(F.col("problem").isNotNull()).select(
        keys[F.col("path")].alias("source_key"), "line", F.col("problem").alias("reason")
    )


@dataclass(frozen=True)
class BatchProfile:
    rows: int  # good records
    rejected: int  # lines rejected
    stats: dict[str, Stats]  # per column, of the good records
    rejected_paths: tuple[str, ...]  # the files that hold the rejected lines


def profile(parsed: DataFrame, schema: T.StructType) -> BatchProfile:
    """Counts and per-column statistics of a parsed batch, in one pass over it."""
    ok = F.col("problem").isNull()
    aggregates = [
        F.count_if(ok).alias("rows"),
        F.count_if(~ok).alias("rejected"),
        F.collect_set(F.when(~ok, F.col("path"))).alias("rejected_paths"),
    ]
    for f in schema.fields:
        value = F.when(ok, F.col(f"record.{f.name}"))
        measures = {"count": F.count, "min": F.min, "max": F.max}
        if isinstance(f.dataType, T.NumericType):
            measures |= {"mean": F.avg, "variance": F.var_samp}
        aggregates += [measure(value).alias(f"{name} {f.name}") for name, measure in measures.items()]
    row = parsed.agg(*aggregates).first().asDict()

    stats = {}
    for f in schema.fields:
        column = stats[f.name] = {name: row[f"{name} {f.name}"] for name in ("count", "min", "max")}
        if isinstance(f.dataType, T.NumericType):
            # Kept as the sum of squared deviations (m2), which merges exactly across batches.
            variance = row[f"variance {f.name}"] or 0.0
            column.update(mean=row[f"mean {f.name}"], m2=variance * max(column["count"] - 1, 0))
    return BatchProfile(row["rows"], row["rejected"], stats, tuple(sorted(row["rejected_paths"])))


def merge_stats(a: Mapping[str, Stats], b: Mapping[str, Stats]) -> dict[str, Stats]:
    """Column statistics of two sets of rows combined (Chan et al.'s update for mean and variance)."""
    merged = {}
    for name in a.keys() | b.keys():
        x, y = a.get(name), b.get(name)
        if not (x and x["count"]):
            merged[name] = dict(y or x)
            continue
        if not (y and y["count"]):
            merged[name] = dict(x)
            continue
        n = x["count"] + y["count"]
        stats = {"count": n, "min": min(x["min"], y["min"]), "max": max(x["max"], y["max"])}
        if "mean" in x:
            delta = y["mean"] - x["mean"]
            stats["mean"] = x["mean"] + delta * y["count"] / n
            stats["m2"] = x["m2"] + y["m2"] + delta * delta * x["count"] * y["count"] / n
        merged[name] = stats
    return merged


def summary_markdown(stats: Mapping[str, Stats], columns: Sequence[str], title: str) -> str:
    """Column statistics as ``df.describe()`` shows them (count, mean, stddev, min, max), in markdown."""

    def stddev(s: Stats):
        return math.sqrt(s["m2"] / (s["count"] - 1)) if "m2" in s and s["count"] > 1 else None

    rows = {
        "count": lambda s: s["count"],
        "mean": lambda s: s.get("mean") if s["count"] else None,
        "stddev": stddev,
        "min": lambda s: s["min"],
        "max": lambda s: s["max"],
    }
    lines = [f"**{title}**", "", "| summary | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, value in rows.items():
        cells = (_cell(value(stats[c]) if c in stats else None) for c in columns)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cursor_after(cursor: Mapping[str, str], objects: Sequence[MountedObject]) -> dict[str, str]:
    """The cursor moved past ``objects``: per partition prefix, the last key read."""
    moved = dict(cursor)
    for obj in objects:
        prefix = partition_of(obj.key)
        moved[prefix] = max(obj.key, moved.get(prefix, ""))
    return moved


def _cell(value) -> str:
    if value is None:
        return ""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if len(text) > _SUMMARY_CELL_WIDTH:
        text = text[: _SUMMARY_CELL_WIDTH - 1] + "…"
    return text.replace("|", "\\|").replace("\n", " ")


def _file_path(file_path: Column) -> Column:
    """Spark's ``_metadata.file_path`` (``file:/a%20b/c+d.json``) back to the path it was given.

    Spark percent-encodes the path as a URI; ``url_decode`` would also turn ``+``, common in
    sink keys, into a space, so ``+`` is protected first.
    """
    decoded = F.url_decode(F.replace(file_path, F.lit("+"), F.lit("%2B")))
    return F.regexp_replace(decoded, r"^file:/+", "/")


def _comparable_path(path: str) -> str:
    # Local paths as Spark reports them: absolute, without the file: scheme; URLs as given.
    return path if "://" in path else os.path.abspath(path)


def build_dataframe_asset(spec: TopicSpec) -> dg.AssetsDefinition:
    """The Spark DataFrame asset of one topic (``spec.dataframe``), fed by its raw JSON asset."""
    schema = SCHEMAS[spec.name]

    @dg.asset(
        name=spec.dataframe,
        group_name="lake",
        deps=[spec.raw_asset],
        kinds={"spark", "parquet"},
        io_manager_key="warehouse_io_manager",
        description=f"The `<user_id>.{spec.name}` topic as a Spark DataFrame (the original's `{spec.dataframe}`), "
        f"read with an explicit schema and appended to as new objects land. {spec.description}",
        metadata={"dagster/column_schema": column_schema(schema)},
    )
    def dataframe(
        context: dg.AssetExecutionContext,
        s3_mount: S3MountResource,
        spark: SparkResource,
        warehouse_io_manager: dg.ResourceParam[WarehouseIOManager],
    ):
        table = warehouse_io_manager.table(spec.dataframe)
        base = table.state()
        objects = s3_mount.mounted_objects(s3_mount.topic_for(spec), after=base.cursor)
        if not objects:
            # Nothing to read: no Spark session is started.
            context.log.info(f"{spec.dataframe}: no new objects; the table keeps its {base.rows} rows")
            yield _output(table, base, schema, objects, _NOTHING_READ, rows=None, quarantine=None)
            return

        parsed = parse_objects(
            spark.spark_session, [(o.key, o.path) for o in objects], schema, spec.index_column
        ).cache()
        try:
            batch = profile(parsed, schema)
            records = sum(o.records for o in objects)
            if batch.rows + batch.rejected != records:
                context.log.warning(
                    f"{spec.dataframe}: Spark read {batch.rows + batch.rejected} lines from {len(objects)} objects "
                    f"where the mount counted {records} records (objects rewritten since they were mounted?)"
                )
            context.log.info(
                f"{spec.dataframe}: {len(objects)} new objects, {batch.rows} rows, {batch.rejected} lines quarantined"
            )
            quarantine = None
            if batch.rejected:
                quarantine = rejected_lines(parsed, _keys_of(objects, batch.rejected_paths))
            yield _output(table, base, schema, objects, batch, rows=good_rows(parsed), quarantine=quarantine)
        finally:
            # Written by now: the IO manager handles an output when it is yielded.
            parsed.unpersist()

    return dataframe


_NOTHING_READ = BatchProfile(rows=0, rejected=0, stats={}, rejected_paths=())


def _keys_of(objects: Sequence[MountedObject], paths: Sequence[str]) -> dict[str, str]:
    """The keys of the objects at ``paths``, as Spark reported the paths."""
    key_of = {_comparable_path(o.path): o.key for o in objects}
    unknown = [path for path in paths if path not in key_of]
    if unknown:
        raise ValueError(f"Spark reports lines from files it was not asked to read: {unknown[:3]}")
    return {path: key_of[path] for path in paths}


def _output(
    table: WarehouseTable,
    base: TableState,
    schema: T.StructType,
    objects: Sequence[MountedObject],
    batch: BatchProfile,
    *,
    rows: DataFrame | None,
    quarantine: DataFrame | None,
) -> dg.Output:
    cursor = cursor_after(base.cursor, objects)
    summary = merge_stats(base.summary, batch.stats)
    total = base.rows + batch.rows
    metadata = {
        "dagster/row_count": total,
        "rows_read": batch.rows,
        "objects_read": len(objects),
        "records_in_objects": sum(o.records for o in objects),
        "quarantined": batch.rejected,
        "quarantined_total": base.quarantined + batch.rejected,
        "objects_total": base.objects + len(objects),
        "dagster/column_schema": column_schema(schema),
        "describe": dg.MetadataValue.md(
            summary_markdown(
                summary,
                schema.fieldNames(),
                f"describe() of the whole table: {total:,} rows, {batch.rows:,} of them read in this refresh",
            )
        ),
        "cursor": dg.MetadataValue.json(dict(sorted(cursor.items()))),
    }
    if metadata["quarantined_total"]:
        metadata["quarantine_path"] = dg.MetadataValue.path(str(table.quarantine_path))
    return dg.Output(
        TableAppend(
            base=base,
            schema=schema,
            rows=rows,
            row_count=batch.rows,
            quarantine=quarantine,
            quarantined=batch.rejected,
            objects=len(objects),
            cursor=cursor,
            summary=summary,
        ),
        metadata=metadata,
    )


dataframe_assets: list[dg.AssetsDefinition] = [build_dataframe_asset(spec) for spec in TOPICS]
