"""Running per-column statistics: the original's ``display(df.describe())``, kept for a whole table at the price of its new rows.

Each batch is profiled in one pass; batches merge exactly (Chan et al.'s update for mean and
variance), so a refresh never re-reads the table to describe it.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

# Long strings (descriptions, URLs) would drown the summary table.
_SUMMARY_CELL_WIDTH = 32


Stats = dict  # one column's statistics: count, min, max, and mean and m2 for numeric columns


@dataclass(frozen=True)
class BatchProfile:
    rows: int  # good records
    rejected: int  # lines rejected
    stats: dict[str, Stats]  # per column, of the good records


def profile(parsed: DataFrame, schema: T.StructType) -> BatchProfile:
    """Counts and per-column statistics of a parsed batch, in one pass over it."""
    ok = F.col("problem").isNull()
    aggregates = [
        F.count_if(ok).alias("rows"),
        F.count_if(~ok).alias("rejected"),
        *column_aggregates(schema, lambda name: F.when(ok, F.col(f"record.{name}"))),
    ]
    row = parsed.agg(*aggregates).first().asDict()
    return BatchProfile(row["rows"], row["rejected"], column_stats(row, schema))


def column_aggregates(schema: T.StructType, value=F.col) -> list:
    """The aggregates of ``column_stats``, of ``value(column name)`` for each column: for
    ``DataFrame.agg``, or for ``DataFrame.observe`` while the rows are written."""
    aggregates = []
    for f in schema.fields:
        measures = {"count": F.count, "min": F.min, "max": F.max}
        if isinstance(f.dataType, T.NumericType):
            measures |= {"mean": F.avg, "variance": F.var_samp}
        aggregates += [measure(value(f.name)).alias(f"{name} {f.name}") for name, measure in measures.items()]
    return aggregates


def column_stats(row: Mapping, schema: T.StructType) -> dict[str, Stats]:
    """Per-column statistics from the values of ``column_aggregates``."""
    stats = {}
    for f in schema.fields:
        column = stats[f.name] = {name: row[f"{name} {f.name}"] for name in ("count", "min", "max")}
        if isinstance(f.dataType, T.NumericType):
            # Kept as the sum of squared deviations (m2), which merges exactly across batches.
            variance = row[f"variance {f.name}"] or 0.0
            column.update(mean=row[f"mean {f.name}"], m2=variance * max(column["count"] - 1, 0))
    return stats


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
        stats = {"count": n, "min": _least(x["min"], y["min"]), "max": _greatest(x["max"], y["max"])}
        if "mean" in x:
            delta = y["mean"] - x["mean"]
            stats["mean"] = x["mean"] + delta * y["count"] / n
            stats["m2"] = x["m2"] + y["m2"] + delta * delta * x["count"] * y["count"] / n
        merged[name] = stats
    return merged


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _least(a, b):
    """min as Spark orders values: NaN above every number."""
    if _is_nan(a):
        return b
    if _is_nan(b):
        return a
    return min(a, b)


def _greatest(a, b):
    """max as Spark orders values: NaN above every number."""
    if _is_nan(a) or _is_nan(b):
        return math.nan
    return max(a, b)


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


def _cell(value) -> str:
    if value is None:
        return ""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if len(text) > _SUMMARY_CELL_WIDTH:
        text = text[: _SUMMARY_CELL_WIDTH - 1] + "…"
    return text.replace("|", "\\|").replace("\n", " ")
