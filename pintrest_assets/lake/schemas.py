"""The explicit Spark schemas of the three topics' records, keyed by topic name.

A record is a row of its source table as JSON, so each schema is derived from the table's
columns: integers are longs, doubles stay doubles, and datetimes and text are strings (the
emulator sends datetimes as ISO-8601 strings). Inference would get most of it right, but an
explicit schema never drifts with the sample it happens to see, and it keeps ``follower_count``
a string: "26k" and "1M" are parsed by the cleaning stage, not nulled on read.
"""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import sqlalchemy as sa
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from pintrest_assets.lake.columns import COLUMN_DESCRIPTIONS
from pintrest_assets.database.schema import table_of
from pintrest_assets.topics import TOPICS

# Most specific first: Text is a String, Double a Float.
_SPARK_TYPES: tuple[tuple[type, T.DataType], ...] = (
    (sa.Integer, T.LongType()),
    (sa.Float, T.DoubleType()),
    (sa.DateTime, T.StringType()),
    (sa.String, T.StringType()),
)


def _spark_type(column: sa.Column) -> T.DataType:
    for sql_type, spark_type in _SPARK_TYPES:
        if isinstance(column.type, sql_type):
            return spark_type
    raise TypeError(f"no Spark type for {column.table.name}.{column.name} ({column.type})")


SCHEMAS: dict[str, T.StructType] = {
    spec.name: T.StructType([T.StructField(c.name, _spark_type(c), nullable=True) for c in table_of(spec).columns])
    for spec in TOPICS
}


def arrow_schema(topic: str) -> pa.Schema:
    """A topic's schema as Arrow types, for the records the mount parses."""
    return to_arrow_schema(SCHEMAS[topic])


def column_schema(schema: T.StructType) -> dg.TableSchema:
    """A Spark schema as Dagster's ``dagster/column_schema`` metadata, each column described."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type=field.dataType.simpleString(),
                description=COLUMN_DESCRIPTIONS.get(field.name),
                constraints=dg.TableColumnConstraints(nullable=field.nullable),
            )
            for field in schema.fields
        ]
    )
