"""Mounted batch files read by Spark: the records the mount parsed (``read_parsed``), and the lines
it left to Spark (``read_batches``), parsed here into one row per line, each a good record of the
schema or a rejected line with its reason, with the key of the object it came from.

Reading lines as text first keeps one line one record, where the JSON reader would split a
top-level array into several rows.
"""

from collections.abc import Sequence
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pintrest_assets.lake.mount.batch_files import KEY_COLUMN, KEY_SEPARATOR, PARSED_SUFFIX, SUFFIX, BatchSlice

CORRUPT_RECORD = "_corrupt_record"


def read_batches(spark, slices: Sequence[BatchSlice]) -> DataFrame | None:
    """The lines the mount left to Spark, as ``key`` (the object's key) and ``line`` (the record's
    text); None when there are none.

    Files read whole go to Spark as one list of paths; a file of which only some objects are
    wanted (rare: a cursor that stops inside a sync) is read apart and filtered by key.
    """
    slices = [s for s in slices if s.residue]
    whole = [s.path + SUFFIX for s in slices if s.keys is None]
    parts = [_split(spark.read.text(whole))] if whole else []
    parts += [
        _split(spark.read.text(s.path + SUFFIX)).where(F.col("key").isin(list(s.keys)))
        for s in slices
        if s.keys is not None
    ]
    return reduce(DataFrame.unionAll, parts) if parts else None


def read_parsed(spark, slices: Sequence[BatchSlice], schema: T.StructType) -> DataFrame | None:
    """The records the mount parsed, as rows of ``schema``; None when there are none."""
    slices = [s for s in slices if s.parsed]
    with_key = T.StructType([*schema.fields, T.StructField(KEY_COLUMN, T.StringType())])
    whole = [s.path + PARSED_SUFFIX for s in slices if s.keys is None]
    parts = [spark.read.schema(with_key).parquet(*whole)] if whole else []
    parts += [
        spark.read.schema(with_key).parquet(s.path + PARSED_SUFFIX).where(F.col(KEY_COLUMN).isin(list(s.keys)))
        for s in slices
        if s.keys is not None
    ]
    if not parts:
        return None
    return reduce(DataFrame.unionAll, parts).select(*schema.fieldNames())


def parse_records(lines: DataFrame, schema: T.StructType, key_column: str, blank: str | None = None) -> DataFrame:
    """``lines`` (``key``, ``line``, and any other columns, kept) parsed with ``schema``, one row
    per non-blank line, or per line if ``blank`` says why a blank line is rejected.

    Columns: ``record`` (a struct in ``schema``), ``line`` (the text as read), ``key`` (the
    object's key), the other columns of ``lines``, and ``problem``: null for a good record, else
    why the line is rejected (``blank``, not valid JSON, does not match the schema, or has no
    ``key_column``).
    """
    with_corrupt = T.StructType([*schema.fields, T.StructField(CORRUPT_RECORD, T.StringType())])
    record = F.from_json("line", with_corrupt, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_RECORD})
    has_text = F.coalesce(F.col("line"), F.lit("")).rlike(r"\S")
    problem = F.when(
        F.col(f"record.{CORRUPT_RECORD}").isNotNull(),
        F.when(F.try_parse_json("line").isNull(), F.lit("not valid JSON")).otherwise(
            F.lit("does not match the schema")
        ),
    ).when(F.col(f"record.{key_column}").isNull(), F.lit(f"no {key_column}"))
    if blank is None:
        lines = lines.where(has_text)
    else:
        problem = F.when(~has_text, F.lit(blank)).otherwise(problem)
    return lines.select(record.alias("record"), *lines.columns).select(
        F.struct(*(F.col(f"record.{f.name}").alias(f.name) for f in schema.fields)).alias("record"),
        *lines.columns,
        problem.alias("problem"),
    )


def good_rows(parsed: DataFrame) -> DataFrame:
    """The records that passed, as rows of the topic's schema."""
    return parsed.where(F.col("problem").isNull()).select("record.*")


def rejected_lines(parsed: DataFrame) -> DataFrame:
    """The rejected lines with the key of their object: ``source_key``, ``line``, ``reason``."""
    return parsed.where(F.col("problem").isNotNull()).select(
        F.col("key").alias("source_key"), "line", F.col("problem").alias("reason")
    )


def _split(text: DataFrame) -> DataFrame:
    """A batch file's ``key TAB line`` as two columns: the key ends at the first tab."""
    at = F.instr("value", KEY_SEPARATOR)
    return text.select(
        F.substring_index("value", KEY_SEPARATOR, 1).alias("key"),
        F.substr("value", at + 1).alias("line"),
    )
