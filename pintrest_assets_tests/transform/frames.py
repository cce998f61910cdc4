"""DataFrames of hand-written rows, with the schemas the pipeline's tables have."""

from pintrest_assets.lake.schemas import SCHEMAS
from pintrest_assets.transform.cleaning import CLEANERS


def raw_frame(spark, topic: str, rows: list[dict]):
    """``rows`` (dicts, missing keys null) with the read schema of ``topic``, as in df_pin/df_geo/df_user."""
    return _frame(spark, SCHEMAS[topic], rows)


def clean_frame(spark, topic: str, rows: list[dict]):
    """``rows`` with the schema of the topic's cleaned table, as in pin_clean/geo_clean/user_clean."""
    schema = CLEANERS[topic](spark.createDataFrame([], SCHEMAS[topic])).schema
    return _frame(spark, schema, rows)


def _frame(spark, schema, rows):
    return spark.createDataFrame([tuple(row.get(f.name) for f in schema.fields) for row in rows], schema)
