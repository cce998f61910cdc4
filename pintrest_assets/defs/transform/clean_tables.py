"""pin_clean, geo_clean and user_clean: each topic's DataFrame with the cleaning rules applied.

One factory over the topic spec table. A cleaned table is rebuilt whole from its DataFrame on
each refresh (the DataFrames grow by appends, and a post drawn again may arrive in any batch, so
duplicates are only visible across the whole table). The DataFrame holds every row ever sent
(a million after a long emulation) but only as many posts as the database (11,153 in the
sample): ``one_row_per_post`` finds each post's first copy from the keys and row places alone
and reads whole only the files that hold one, then the cleaning rules, the row and null counts
and the table's write work on those few rows, held in memory for the step.
"""

import dagster as dg
from pyspark.sql import DataFrame

from pintrest_assets.defs.transform.automation import ON_NEW_DATA, TRANSFORM_GROUP
from pintrest_assets.lake.schemas import column_schema
from pintrest_assets.topics import TOPICS, TopicSpec
from pintrest_assets.transform.cleaning import (
    CLEANERS,
    CONVERSIONS,
    one_row_per_post,
    rows_and_failures_of_posts,
    rows_and_nulls,
)
from pintrest_assets.transform.metadata_table import metadata_table

VALUES_CONVERTED = "values_converted"


def build_clean_table_asset(spec: TopicSpec) -> dg.AssetsDefinition:
    name = spec.clean_asset
    clean = CLEANERS[spec.name]
    conversions = CONVERSIONS[spec.name]

    @dg.asset(
        name=name,
        group_name=TRANSFORM_GROUP,
        kinds={"spark", "delta"},
        io_manager_key="warehouse_io_manager",
        ins={"raw": dg.AssetIn(spec.dataframe)},
        automation_condition=ON_NEW_DATA,
        check_specs=[
            dg.AssetCheckSpec(
                VALUES_CONVERTED,
                asset=name,
                description=f"Every value of {', '.join(conversions)} in {spec.dataframe} that was not "
                "missing converted to its type (a value that cannot be is null in the cleaned table).",
            )
        ],
        description=f"{spec.dataframe} cleaned (placeholders and blanks to null, types, column names and "
        f"order as the original's cleaning), one row per `ind`: posts drawn more than once (the emulator draws with replacement, as the original did) kept once. {spec.description}",
    )
    def clean_table(context: dg.AssetExecutionContext, raw: DataFrame):
        posts = one_row_per_post(raw, spec.index_column).cache()
        try:
            yield from _clean_table_events(context, posts)
        finally:
            posts.unpersist()  # the table is written: the IO manager handles an output as it is yielded

    def _clean_table_events(context: dg.AssetExecutionContext, posts: DataFrame):
        rows_in, unconverted = rows_and_failures_of_posts(posts, conversions)
        table = clean(posts)
        rows, nulls = rows_and_nulls(table)
        context.log.info(
            f"{name}: {rows} rows from {rows_in} ({rows_in - rows} duplicate posts removed: posts drawn more than once)"
        )
        yield dg.Output(
            table,
            metadata={
                "dagster/row_count": rows,
                "dagster/column_schema": column_schema(table.schema),
                "rows_in": rows_in,
                "duplicates_removed": rows_in - rows,
                "nulls": metadata_table(
                    ["column", "nulls", "share"],
                    [(c, n, round(n / rows, 4) if rows else None) for c, n in nulls.items()],
                ),
            },
        )
        yield dg.AssetCheckResult(
            check_name=VALUES_CONVERTED,
            passed=not any(unconverted.values()),
            severity=dg.AssetCheckSeverity.WARN,
            description="Values present but not convertible, now null: "
            + ", ".join(f"{column} {n}" for column, n in unconverted.items() if n)
            if any(unconverted.values())
            else None,
            metadata={f"unconverted_{column}": n for column, n in unconverted.items()},
        )

    return clean_table


clean_table_assets: list[dg.AssetsDefinition] = [build_clean_table_asset(spec) for spec in TOPICS]
