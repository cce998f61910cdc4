"""The nine answers: one asset per question, all built from the table ``ANSWERS``.

Each answer is a pure function of ``pintrest_assets.transform.questions`` whose name is the
asset's name and whose parameters name the assets it reads. The asset computes it, stores the
result in the warehouse and shows it in the UI as a markdown table, with a chart where a
picture says more.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import dagster as dg
from pyspark.sql import DataFrame

from pintrest_assets.defs.transform.automation import ON_NEW_DATA, TRANSFORM_GROUP
from pintrest_assets.lake.schemas import column_schema
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


def build_answer_asset(answer: Answer) -> dg.AssetsDefinition:
    @dg.asset(
        name=answer.name,
        group_name=TRANSFORM_GROUP,
        kinds={"spark", "delta"},
        io_manager_key="warehouse_io_manager",
        ins={name: dg.AssetIn(name) for name in answer.inputs},
        automation_condition=ON_NEW_DATA,
        description=f"{answer.question}\n\n{inspect.getdoc(answer.compute)}\n\n"
        f"Ties, age groups, medians and what is left out: see `{questions.__name__}`.",
        metadata={"question": answer.number},
    )
    def answer_asset(context: dg.AssetExecutionContext, **inputs: DataFrame) -> dg.Output:
        result = answer.compute(**inputs)
        rows = [tuple(row) for row in result.collect()]
        # The rows shown are the rows stored: write what was collected rather than compute twice.
        table = result.sparkSession.createDataFrame(rows, result.schema)
        metadata = {
            "dagster/row_count": len(rows),
            "dagster/column_schema": column_schema(result.schema),
            "result": metadata_table(result.columns, rows),
        }
        if answer.chart is not None and rows:
            metadata["chart"] = dg.MetadataValue.md(markdown_image(answer.chart(rows), answer.question))
        context.log.info(f"question {answer.number}: {len(rows)} rows")
        return dg.Output(table, metadata=metadata)

    return answer_asset


answer_assets: list[dg.AssetsDefinition] = [build_answer_asset(answer) for answer in ANSWERS]
