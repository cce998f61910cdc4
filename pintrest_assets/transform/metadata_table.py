"""Rows as a metadata table: the UI renders it sortable, with its column types."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence

import dagster as dg

# More rows than this make a metadata table hard to read; the asset itself holds them all.
MAX_ROWS = 100


def metadata_table(columns: Sequence[str], rows: Sequence[Sequence], max_rows: int = MAX_ROWS) -> dg.MetadataValue:
    """The first ``max_rows`` of ``rows`` under ``columns``, typed by their values."""
    shown = rows[:max_rows]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, _column_type([row[i] for row in shown])) for i, name in enumerate(columns)]
    )
    records = [dg.TableRecord({name: _cell(value) for name, value in zip(columns, row)}) for row in shown]
    return dg.MetadataValue.table(records=records, schema=schema)


def _cell(value) -> str | int | float | bool | None:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _column_type(values: Sequence) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "boolean"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "integer"
    if present and all(isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool) for v in present):
        return "float"
    if present and all(isinstance(v, dt.datetime) for v in present):
        return "timestamp"
    return "string"
