"""Mounted batch files parsed by Spark: one row per record line, each a good record of the schema
or a rejected line with its reason, with the key of the object it came from.

Reading lines as text first keeps one line one record, where the JSON reader would split a
top-level array into several rows.
"""

from collections.abc import Sequence
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pintrest_assets.mount.batch_files import KEY_SEPARATOR, BatchSlice

CORRUPT_RECORD = "_corrupt_record"


def read_batches(spark, slices: Sequence[BatchSlice]) -> DataFrame:
    """The lines of the batch files as ``key`` (the object's key) and ``line`` (the record's text).

    Files read whole go to Spark as one list of paths; a file of which only some objects are
    wanted (rare: a cursor that stops inside a sync) is read apart and filtered by key.
    """
    whole = [s.path for s in slices if s.keys is None]
    parts = [_split(spark.read.text(whole))] if whole else []
    parts += [
        _split(spark.read.text(s.path)).where(F.col("key").isin(list(s.keys))) for s in slices if s.keys is not None
    ]
    if not parts:
        raise ValueError("no batch files to read")
    return reduce(DataFrame.unionAll, parts)


def parse_records(lines: DataFrame, schema: T.StructType, key_column: str) -> DataFrame:
    """``lines`` (``key``, ``line``) parsed with ``schema``, one row per non-blank line.

    Columns: ``record`` (a struct in ``schema``), ``line`` (the text as read), ``key`` (the
    object's key) and ``problem``: null for a good record, else why the line is rejected (not
    valid JSON, does not match the schema, or has no ``key_column``).
    """
    with_corrupt = T.StructType([*schema.fields, T.StructField(CORRUPT_RECORD, T.StringType())])
    record = F.from_json("line", with_corrupt, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_RECORD})
    problem = F.when(
        F.col(f"record.{CORRUPT_RECORD}").isNotNull(),
        F.when(F.try_parse_json("line").isNull(), F.lit("not valid JSON")).otherwise(
            F.lit("does not match the schema")
        ),
    ).when(F.col(f"record.{key_column}").isNull(), F.lit(f"no {key_column}"))
    return (
        lines.where(F.col("line").rlike(r"\S"))
        .select(record.alias("record"), "line", "key")
        .select(
            F.struct(*(F.col(f"record.{f.name}").alias(f.name) for f in schema.fields)).alias("record"),
            "line",
            "key",
            problem.alias("problem"),
        )
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
