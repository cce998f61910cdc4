"""pin_clean, geo_clean and user_clean: each topic's DataFrame with the cleaning rules applied.

One factory over the topic spec table. The DataFrame holds every row ever sent (a million after
a long emulation) but only as many posts as the database (11,153 in the sample), and it only
grows, by appends. So a refresh cleans only the rows appended since the DataFrame version the
table was last cleaned from: the posts among them not in the table yet are cleaned and added,
and the counts the table reports (rows in, duplicates removed, nulls, values not converted) move
on by what those rows add. Each commit of the cleaned table carries, in its commit info (the
``CLEANINGS`` writer), the DataFrame version it was cleaned from, the counts, and a digest of
the cleaning rules' code; a refresh costs the new rows, not the history.

The table is cleaned whole again when that cannot be trusted: no cleaning recorded (a new
table, or one written otherwise), rules changed since, the DataFrame's table replaced or rows of
it rewritten (``added_since``: compacted new files, history no longer in the log), or the
cleaned table changed by another writer.

Either way, the rows to clean (all the DataFrame's files, or those added since) become one row
per post (``one_row_per_post``: pyarrow, from the key column alone, then the few files that hold
a first copy); Spark applies the cleaning rules to those few thousand rows in one job
(``clean_posts``), and pyarrow counts and writes them (no Spark job per count or for the write).

Both ways give the same table: a post's copies are the same row, so the post is cleaned from its
first copy either way (an incremental refresh sees a new post's first copy among the new rows),
and each copy counts once in ``rows_in`` and in the conversion failures.
"""

import hashlib
import inspect
from collections.abc import Mapping

import dagster as dg
from deltalake import DeltaTable
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.pandas.types import from_arrow_schema

from pintrest_assets import domain
from pintrest_assets.defs.transform.automation import ON_NEW_DATA, TRANSFORM_GROUP
from pintrest_assets.lake.delta import Writer, added_since
from pintrest_assets.lake.schemas import column_schema
from pintrest_assets.lake.spark import small_queries
from pintrest_assets.lake.warehouse import TableUpdate, WarehouseIOManager
from pintrest_assets.topics import TOPICS, TopicSpec
from pintrest_assets.transform import cleaning
from pintrest_assets.transform.cleaning import CONVERSIONS, clean_posts, rows_and_nulls
from pintrest_assets.transform.posts import one_row_per_post
from pintrest_assets.transform.metadata_table import metadata_table

VALUES_CONVERTED = "values_converted"
KEY = "ind"

# The cleaned tables' commits: app transaction version n for a table's n-th cleaning, and the
# state after it in the commit info.
CLEANINGS = Writer(app_id="pintrest.clean", info_key="pintrest_clean", version_field="cleanings", unit="cleaning")
# The code of the cleaning rules: a table cleaned by other rules is cleaned whole again.
RULES = hashlib.sha256((inspect.getsource(cleaning) + inspect.getsource(domain)).encode()).hexdigest()[:16]


def build_clean_table_asset(spec: TopicSpec) -> dg.AssetsDefinition:
    name = spec.clean_asset
    conversions = CONVERSIONS[spec.name]

    @dg.asset(
        name=name,
        group_name=TRANSFORM_GROUP,
        kinds={"spark", "delta"},
        deps=[spec.dataframe],
        automation_condition=ON_NEW_DATA,
        io_manager_key="warehouse_io_manager",
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
    def clean_table(context: dg.AssetExecutionContext, warehouse_io_manager: dg.ResourceParam[WarehouseIOManager]):
        spark = warehouse_io_manager.spark.spark_session
        source = warehouse_io_manager.table(spec.dataframe).existing()
        target = warehouse_io_manager.table(name).delta()
        previous, new_files = _since_last_cleaning(target, source)
        files = source.file_uris() if previous is None else new_files
        posts = one_row_per_post(files, pa.schema(source.schema().to_arrow()), spec.index_column)
        with small_queries(spark):  # a few thousand rows at most: planning is the queries' cost
            cleaned = clean_posts(spark.createDataFrame(posts, from_arrow_schema(posts.schema)), spec.name)
        table = cleaned.rows
        if previous is not None:  # posts already in the table are there, cleaned from their first copy
            known = target.to_pyarrow_table(columns=[KEY])[KEY].combine_chunks()
            table = table.filter(pc.invert(pc.is_in(table[KEY], value_set=known, skip_nulls=False)))
        rows, nulls = rows_and_nulls(table)
        rows_read, unconverted = cleaned.rows_read, cleaned.unconverted
        if previous is not None:
            rows += previous["rows"]
            nulls = {c: n + previous["nulls"][c] for c, n in nulls.items()}
            unconverted = {c: n + previous["unconverted"][c] for c, n in unconverted.items()}
        rows_in = rows_read + (previous["rows_in"] if previous is not None else 0)
        how = (
            "whole"
            if previous is None
            else f"the {rows_read} rows {spec.dataframe} added since version {previous['source_version']}"
        )
        context.log.info(
            f"{name}: cleaned {how}: {rows} rows from {rows_in} ({rows_in - rows} duplicate posts removed: "
            "posts drawn more than once)"
        )
        cleanings = CLEANINGS.committed(target) or 0
        state = {
            CLEANINGS.version_field: cleanings + 1,
            "rules": RULES,
            "source_table": source.metadata().id,
            "source_version": source.version(),
            "rows": rows,
            "rows_in": rows_in,
            "nulls": nulls,
            "unconverted": unconverted,
        }
        yield dg.Output(
            TableUpdate(
                table, replace=previous is None, writer=CLEANINGS, version=cleanings + 1, info=state, base=target
            ),
            metadata={
                "dagster/row_count": rows,
                "dagster/column_schema": column_schema(cleaned.schema),
                "rows_in": rows_in,
                "duplicates_removed": rows_in - rows,
                "rows_read": rows_read,
                "cleaned_from": f"{spec.dataframe} version {source.version()}",
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


def _since_last_cleaning(target: DeltaTable | None, source: DeltaTable) -> tuple[Mapping | None, list[str] | None]:
    """The state of the cleaned table's latest cleaning and the DataFrame's files added since it,
    if the table can be refreshed from those alone; (None, None) if it has to be cleaned whole."""
    try:
        latest = CLEANINGS.latest_commit(target)
    except RuntimeError:  # the cleaning's commit is no longer in the log (cleaned up after a checkpoint)
        return None, None
    if latest is None:
        return None, None
    version, state = latest
    if state["rules"] != RULES or state["source_table"] != source.metadata().id or added_since(target, version) != []:
        return None, None
    new_files = added_since(source, state["source_version"])
    return (None, None) if new_files is None else (state, new_files)


clean_table_assets: list[dg.AssetsDefinition] = [build_clean_table_asset(spec) for spec in TOPICS]
