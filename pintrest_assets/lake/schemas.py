"""The explicit Spark schemas of the three topics' records, keyed by topic name.

They follow the source tables' columns. Inference would get most of it right, but an explicit
schema never drifts with the sample it happens to see, and it keeps ``follower_count`` a string:
"26k" and "1M" are parsed by the cleaning stage, not nulled on read.
"""

from __future__ import annotations

import dagster as dg
from pyspark.sql import types as T


def _schema(**columns: T.DataType) -> T.StructType:
    return T.StructType([T.StructField(name, data_type, nullable=True) for name, data_type in columns.items()])


_string = T.StringType()
_long = T.LongType()
_double = T.DoubleType()

SCHEMAS: dict[str, T.StructType] = {
    "pin": _schema(
        index=_long,
        unique_id=_string,
        title=_string,
        description=_string,
        poster_name=_string,
        follower_count=_string,
        tag_list=_string,
        is_image_or_video=_string,
        image_src=_string,
        downloaded=_long,
        save_location=_string,
        category=_string,
    ),
    "geo": _schema(
        ind=_long,
        timestamp=_string,
        latitude=_double,
        longitude=_double,
        country=_string,
    ),
    "user": _schema(
        ind=_long,
        first_name=_string,
        last_name=_string,
        age=_long,
        date_joined=_string,
    ),
}


def column_schema(schema: T.StructType) -> dg.TableSchema:
    """A Spark schema as Dagster's ``dagster/column_schema`` metadata."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type=field.dataType.simpleString(),
                constraints=dg.TableColumnConstraints(nullable=field.nullable),
            )
            for field in schema.fields
        ]
    )
