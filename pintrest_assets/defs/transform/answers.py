"""The answers: one asset per question, all built from the table ``ANSWERS``.

Each answer is a pure function of ``pintrest_assets.transform.questions`` whose name is the
asset's name and whose parameters name the assets it reads. The asset computes it, stores the
result in the warehouse and shows it in the UI as a markdown table, with a chart where a
picture says more.

They are one subsettable multi-asset, ``answers``: one step reads the cleaned tables once,
holds them in memory and answers every selected question from them. A step per answer read and
planned the same few thousand rows again in each, and paid a step's start and end as many times,
for aggregations that take a fraction of a second each. An answer's rows are collected to be
shown; the warehouse stores those same rows as a pyarrow table (a Spark write job for a few rows
cost more than the answer's query), and the queries run with ``small_queries``' settings.
"""

import inspect
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import dagster as dg
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType

from pintrest_assets.defs.transform.automation import ON_NEW_DATA, TRANSFORM_GROUP
from pintrest_assets.lake.schemas import column_schema
from pintrest_assets.lake.spark import small_queries
from pintrest_assets.lake.warehouse import WarehouseIOManager
from pintrest_assets.transform import questions
from pintrest_assets.transform.charts import (
    bar_chart,
    markdown_image,
    posts_per_category_chart,
)
from pintrest_assets.transform.metadata_table import metadata_table


@dataclass(frozen=True)
class Answer:
    number: str  # the question's number in the original: "1", "2", "3a", ...
    question: str
    compute: Callable[..., DataFrame]
    chart: Callable[[list[tuple]], bytes] | None = None

    @property
    def name(self) -> str:
        """The asset's name: the name of the function that computes it."""
        return self.compute.__name__

    @property
    def inputs(self) -> tuple[str, ...]:
        """The assets it reads: the function's parameters."""
        return tuple(inspect.signature(self.compute).parameters)


ANSWERS: tuple[Answer, ...] = (
    Answer("1", "What is the most popular category in each country?", questions.most_popular_category_by_country),
    Answer(
        "2",
        "How many posts did each category have each year, 2018 to 2022?",
        questions.posts_per_category_by_year,
        chart=posts_per_category_chart,
    ),
    Answer("3a", "Which user has the most followers in each country?", questions.most_followed_user_by_country),
    Answer("3b", "In which country is the user with the most followers?", questions.most_followed_country),
    Answer("4", "What is the most popular category in each age group?", questions.most_popular_category_by_age_group),
    Answer(
        "5",
        "What is the median follower count in each age group?",
        questions.median_followers_by_age_group,
        chart=partial(bar_chart, title="Median follower count per age group", xlabel="age group", ylabel="followers"),
    ),
    Answer(
        "6",
        "How many users joined each year, 2015 to 2020?",
        questions.users_joined_by_year,
        chart=partial(bar_chart, title="Users joined per year", xlabel="year joined", ylabel="users"),
    ),
    Answer(
        "7",
        "What is the median follower count of users by the year they joined, 2015 to 2020?",
        questions.median_followers_by_join_year,
        chart=partial(
            bar_chart, title="Median follower count by year joined", xlabel="year joined", ylabel="followers"
        ),
    ),
    Answer(
        "8",
        "What is the median follower count of users by age group and the year they joined, 2015 to 2020?",
        questions.median_followers_by_join_year_and_age_group,
    ),
)
ANSWERS_BY_NAME: dict[str, Answer] = {answer.name: answer for answer in ANSWERS}
# Answers another answer reads (3a, read by 3b).
READ_BY_ANSWERS = frozenset(name for answer in ANSWERS for name in answer.inputs if name in ANSWERS_BY_NAME)


ANSWER_THREADS = 3


def _answer_spec(answer: Answer) -> dg.AssetSpec:
    return dg.AssetSpec(
        answer.name,
        group_name=TRANSFORM_GROUP,
        kinds={"spark", "delta"},
        deps=answer.inputs,
        automation_condition=ON_NEW_DATA,
        description=f"{answer.question}\n\n{inspect.getdoc(answer.compute)}\n\n"
        f"Ties, age groups, medians and what is left out: see `{questions.__name__}`.",
        metadata={"question": answer.number},
    ).with_io_manager_key("warehouse_io_manager")


@dg.multi_asset(
    name="answers",
    specs=[_answer_spec(answer) for answer in ANSWERS],
    can_subset=True,
    description="The answers, computed in one step from the cleaned tables, read once and held in memory.",
)
def answers_asset(context: dg.AssetExecutionContext, warehouse_io_manager: dg.ResourceParam[WarehouseIOManager]):
    """The selected answers. Each is a small table (a row per country, year or age group) over the
    cleaned tables (a row per post): the step reads the cleaned tables it needs once and keeps
    them in memory, so an answer costs its own aggregation, one collect and one write. An answer
    read by another (3b reads 3a) is computed here from the same tables whether or not it is
    selected, so a selection of 3b alone answers it from the cleaned tables of now."""
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    needed = _needed(selected)
    spark = warehouse_io_manager.spark.spark_session
    tables = {
        name: warehouse_io_manager.table(name).read_in_memory(spark)
        for name in dict.fromkeys(n for a in ANSWERS if a.name in needed for n in a.inputs)
        if name not in ANSWERS_BY_NAME
    }
    # Each answer is a small Spark query whose time is mostly the driver's planning and
    # scheduling: computed a few at a time, while the IO manager stores those done, in order.
    with small_queries(spark), ThreadPoolExecutor(max_workers=ANSWER_THREADS, thread_name_prefix="answer") as pool:
        done: dict[str, Future] = {}
        for answer in ANSWERS:  # in order: an answer another reads comes first
            if answer.name in needed:
                done[answer.name] = pool.submit(_computed, answer, tables, done)
        for answer in ANSWERS:
            if answer.name in selected:
                yield _answer_output(context, answer, done[answer.name].result())


class _Computed(NamedTuple):
    rows: list[tuple]  # shown and stored: computed once
    schema: StructType
    chart: bytes | None
    table: DataFrame | None  # for an answer another reads: what that one reads, this one as stored


def _computed(answer: Answer, tables: dict[str, DataFrame], done: dict[str, Future]) -> _Computed:
    inputs = {name: tables[name] if name in tables else done[name].result().table for name in answer.inputs}
    result = answer.compute(**inputs)
    rows = [tuple(row) for row in result.collect()]
    table = (
        result.sparkSession.createDataFrame(rows, result.schema).coalesce(1)
        if answer.name in READ_BY_ANSWERS
        else None
    )
    chart = answer.chart(rows) if answer.chart is not None and rows else None
    return _Computed(rows, result.schema, chart, table)


def _needed(selected: set[str]) -> set[str]:
    """The selected answers and the answers they read, however indirectly."""
    needed = set(selected)
    while True:
        more = {name for a in ANSWERS if a.name in needed for name in a.inputs if name in ANSWERS_BY_NAME} - needed
        if not more:
            return needed
        needed |= more


def _answer_output(context: dg.AssetExecutionContext, answer: Answer, computed: _Computed) -> dg.Output:
    rows, chart = computed.rows, computed.chart
    schema = to_arrow_schema(computed.schema)
    stored = pa.Table.from_arrays(
        [pa.array([row[i] for row in rows], type=field.type) for i, field in enumerate(schema)], schema=schema
    )
    metadata = {
        "dagster/row_count": len(rows),
        "dagster/column_schema": column_schema(computed.schema),
        "result": metadata_table(computed.schema.names, rows),
    }
    if chart is not None:
        metadata["chart"] = dg.MetadataValue.md(markdown_image(chart, answer.question))
    context.log.info(f"question {answer.number}: {len(rows)} rows")
    return dg.Output(stored, output_name=answer.name, metadata=metadata)


answer_assets: list[dg.AssetsDefinition] = [answers_asset]
