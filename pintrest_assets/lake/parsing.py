"""Landed objects parsed by Spark: one row per line, each line a good record of the schema or a rejected line with its reason.

Reading lines as text first keeps one line one record, where the JSON reader would split a
top-level array into several rows.
"""

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

CORRUPT_RECORD = "_corrupt_record"



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



def _file_path(file_path: Column) -> Column:
    """Spark's ``_metadata.file_path`` (``file:/a%20b/c+d.json``) back to the path it was given.

    Spark percent-encodes the path as a URI; ``url_decode`` would also turn ``+``, common in
    sink keys, into a space, so ``+`` is protected first.
    """
    decoded = F.url_decode(F.replace(file_path, F.lit("+"), F.lit("%2B")))
    return F.regexp_replace(decoded, r"^file:/+", "/")
