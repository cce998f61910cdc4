"""Data-quality checks of the cleaned tables, run on the tables as stored.

Per cleaned table, one check step that loads the table once and evaluates, in one Spark pass:

- ``no_placeholders``: no placeholder string and no blank string left in a string column;
- ``follower_count_valid`` (pin_clean): follower_count is an integer column, never negative;
- ``ind_unique`` (blocking): every row has an ``ind`` and no two share one;
- ``expected_columns`` (blocking): the columns, in order, that the cleaning promises.

A failed blocking check stops the answers downstream in the same run: an answer joined on a
broken key or read from a missing column would be wrong, not just untidy.

And on pin_clean, ``join_coverage``: the pins without a geo row or without a user row, which the
answers' inner joins leave out. More than ``MAX_UNMATCHED_SHARE`` of the pins is a warning. The
three topics land and refresh separately, so a few unmatched pins right after a batch are
normal; they match once the other topics' rows arrive.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pintrest_assets.domain import PLACEHOLDERS
from pintrest_assets.lake.spark import small_queries
from pintrest_assets.topics import TOPICS, TopicSpec
from pintrest_assets.transform.cleaning import CLEANED_COLUMNS, null_if_placeholder
from pintrest_assets.transform.metadata_table import metadata_table

KEY = "ind"
MAX_UNMATCHED_SHARE = 0.01


@dataclass(frozen=True)
class TableFindings:
    """What one pass over a cleaned table found."""

    columns: tuple[str, ...]
    types: dict[str, str]
    rows: int
    placeholders: dict[str, int]  # string column -> placeholder or blank values
    negative_follower_counts: int | None  # None: no integer follower_count column to look at
    null_keys: int
    duplicate_keys: int  # rows beyond the first for each key


def inspect_table(df: DataFrame, placeholders: Mapping[str, Sequence[str]] = PLACEHOLDERS) -> TableFindings:
    """One Spark pass over a cleaned table, finding what every check of ``check_results`` needs."""
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    strings = [f.name for f in df.schema.fields if isinstance(f.dataType, T.StringType)]
    follower_count_is_integer = "follower_count" in types and isinstance(
        df.schema["follower_count"].dataType, T.IntegralType
    )
    aggregates = [F.count(F.lit(1)).alias("rows")]
    for i, column in enumerate(strings):
        value = F.col(column)
        # A value the cleaning rule would have nulled: a placeholder or a blank string.
        left = value.isNotNull() & null_if_placeholder(value, placeholders.get(column, ())).isNull()
        aggregates.append(F.count_if(left).alias(f"placeholders_{i}"))
    if follower_count_is_integer:
        aggregates.append(F.count_if(F.col("follower_count") < 0).alias("negative"))
    if KEY in types:
        aggregates += [F.count_if(F.col(KEY).isNull()).alias("null_keys"), F.count_distinct(KEY).alias("keys")]
    with small_queries(df.sparkSession):
        row = df.agg(*aggregates).first()
    rows = row["rows"]
    null_keys = row["null_keys"] if KEY in types else 0
    return TableFindings(
        columns=tuple(df.columns),
        types=types,
        rows=rows,
        placeholders={column: row[f"placeholders_{i}"] for i, column in enumerate(strings)},
        negative_follower_counts=row["negative"] if follower_count_is_integer else None,
        null_keys=null_keys,
        duplicate_keys=(rows - null_keys - row["keys"]) if KEY in types else 0,
    )


def check_results(findings: TableFindings, expected_columns: Sequence[str]) -> list[dg.AssetCheckResult]:
    """The results of the checks of one cleaned table, from what ``inspect_table`` found."""
    results = [_no_placeholders(findings)]
    if "follower_count" in expected_columns:
        results.append(_follower_count_valid(findings))
    return [*results, _ind_unique(findings), _expected_columns(findings, tuple(expected_columns))]


def _no_placeholders(findings: TableFindings) -> dg.AssetCheckResult:
    left = {column: n for column, n in findings.placeholders.items() if n}
    return dg.AssetCheckResult(
        check_name="no_placeholders",
        passed=not left,
        description="Placeholder or blank strings left: " + ", ".join(f"{c} {n}" for c, n in left.items())
        if left
        else None,
        metadata={"values_left": sum(left.values()), "columns_checked": len(findings.placeholders)},
    )


def _follower_count_valid(findings: TableFindings) -> dg.AssetCheckResult:
    kind = findings.types.get("follower_count", "missing")
    if findings.negative_follower_counts is None:
        problem = f"follower_count is {kind}, not an integer column"
    elif findings.negative_follower_counts:
        problem = f"{findings.negative_follower_counts} negative follower counts"
    else:
        problem = None
    return dg.AssetCheckResult(
        check_name="follower_count_valid",
        passed=problem is None,
        description=problem,
        metadata={"type": kind, "negative": findings.negative_follower_counts or 0},
    )


def _ind_unique(findings: TableFindings) -> dg.AssetCheckResult:
    problems = []
    if KEY not in findings.types:
        problems.append(f"no {KEY} column")
    if findings.null_keys:
        problems.append(f"{findings.null_keys} rows without an {KEY}")
    if findings.duplicate_keys:
        problems.append(f"{findings.duplicate_keys} rows repeat an {KEY} of another row")
    return dg.AssetCheckResult(
        check_name="ind_unique",
        passed=not problems,
        description="; ".join(problems) or None,
        metadata={"rows": findings.rows, "null_keys": findings.null_keys, "duplicate_keys": findings.duplicate_keys},
    )


def _expected_columns(findings: TableFindings, expected: tuple[str, ...]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="expected_columns",
        passed=findings.columns == expected,
        description=None
        if findings.columns == expected
        else f"columns are {', '.join(findings.columns)}; expected {', '.join(expected)}",
        metadata={"columns": metadata_table(["column", "type"], [(c, findings.types[c]) for c in findings.columns])},
    )


def _check_specs(spec: TopicSpec) -> list[dg.AssetCheckSpec]:
    table = spec.clean_asset
    columns = CLEANED_COLUMNS[spec.name]
    specs = [
        dg.AssetCheckSpec(
            "no_placeholders",
            asset=table,
            description="No placeholder string (as the scraper wrote them) and no blank string is left in a "
            "string column.",
        )
    ]
    if "follower_count" in columns:
        specs.append(
            dg.AssetCheckSpec(
                "follower_count_valid",
                asset=table,
                description="follower_count is an integer column and no count is negative (null: unknown).",
            )
        )
    specs += [
        dg.AssetCheckSpec(
            "ind_unique", asset=table, blocking=True, description="Every row has an `ind`, and no two rows share one."
        ),
        dg.AssetCheckSpec(
            "expected_columns", asset=table, blocking=True, description=f"The columns, in order: {', '.join(columns)}."
        ),
    ]
    return specs


def build_clean_table_checks(spec: TopicSpec) -> dg.AssetChecksDefinition:
    table = spec.clean_asset

    @dg.multi_asset_check(
        name=f"{table}_checks",
        specs=_check_specs(spec),
        ins={"table": dg.AssetIn(table)},
        description=f"The data-quality checks of {table}, evaluated together in one pass over the stored table.",
    )
    def clean_table_checks(table: DataFrame):
        yield from check_results(inspect_table(table), CLEANED_COLUMNS[spec.name])

    return clean_table_checks


@dataclass(frozen=True)
class JoinCoverage:
    pins: int
    without_geo: int
    without_user: int

    def share(self, unmatched: int) -> float:
        return unmatched / self.pins if self.pins else 0.0


def join_coverage(pins: DataFrame, geos: DataFrame, users: DataFrame) -> JoinCoverage:
    """How many pins have no geo row and how many have no user row, in one pass."""
    found = F.lit(True)
    with small_queries(pins.sparkSession):
        row = (
            pins.select(KEY)
            .join(geos.select(KEY, found.alias("_geo")).dropDuplicates([KEY]), KEY, "left")
            .join(users.select(KEY, found.alias("_user")).dropDuplicates([KEY]), KEY, "left")
            .agg(
                F.count(F.lit(1)).alias("pins"),
                F.count_if(F.col("_geo").isNull()).alias("without_geo"),
                F.count_if(F.col("_user").isNull()).alias("without_user"),
            )
            .first()
        )
    return JoinCoverage(pins=row["pins"], without_geo=row["without_geo"], without_user=row["without_user"])


def coverage_result(coverage: JoinCoverage, max_share: float = MAX_UNMATCHED_SHARE) -> dg.AssetCheckResult:
    """Passes while at most ``max_share`` of the pins lack a geo row and at most as many lack a user row."""
    over = {
        label: unmatched
        for label, unmatched in (("geo", coverage.without_geo), ("user", coverage.without_user))
        if coverage.share(unmatched) > max_share
    }
    return dg.AssetCheckResult(
        passed=not over,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if not over
        else "; ".join(
            f"{n} of {coverage.pins} pins ({coverage.share(n):.1%}) have no {label} row" for label, n in over.items()
        )
        + f" (more than {max_share:.0%}); they are left out of the answers that join on {KEY}",
        metadata={
            "pins": coverage.pins,
            "pins_without_geo": coverage.without_geo,
            "pins_without_user": coverage.without_user,
            "share_without_geo": round(coverage.share(coverage.without_geo), 4),
            "share_without_user": round(coverage.share(coverage.without_user), 4),
            "max_share": max_share,
        },
    )


@dg.asset_check(
    asset="pin_clean",
    name="join_coverage",
    additional_ins={"geo_clean": dg.AssetIn("geo_clean"), "user_clean": dg.AssetIn("user_clean")},
    description=f"Pins without a geo row or without a user row (left out of the answers); a warning above "
    f"{MAX_UNMATCHED_SHARE:.0%} of the pins. A few right after a batch are normal: the three topics refresh "
    "separately.",
)
def join_coverage_check(pin_clean: DataFrame, geo_clean: DataFrame, user_clean: DataFrame) -> dg.AssetCheckResult:
    return coverage_result(join_coverage(pin_clean, geo_clean, user_clean))


clean_table_checks: list[dg.AssetChecksDefinition] = [
    *(build_clean_table_checks(spec) for spec in TOPICS),
    join_coverage_check,
]
