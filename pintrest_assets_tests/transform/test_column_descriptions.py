"""Every column of every table has a one-line description in the UI: the DataFrames, the cleaned
tables and the stream tables (the cleaning's output), and the nine answers (their output, as
computed from the cleaned tables)."""

import pytest

from pintrest_assets.defs.transform.answers import ANSWERS
from pintrest_assets.lake.columns import COLUMN_DESCRIPTIONS
from pintrest_assets.lake.schemas import SCHEMAS, column_schema
from pintrest_assets.transform.cleaning import CLEANERS
from pintrest_assets.topics import TOPICS


def _described(schema) -> dict[str, str | None]:
    return {column.name: column.description for column in column_schema(schema).columns}


def _one_line(description: str | None) -> bool:
    return bool(description) and "\n" not in description and len(description) <= 120


@pytest.mark.parametrize("topic", [spec.name for spec in TOPICS])
def test_the_dataframes_and_the_cleaned_and_stream_tables_describe_every_column(spark, topic):
    raw = spark.createDataFrame([], SCHEMAS[topic])
    cleaned = CLEANERS[topic](raw)  # the cleaned table's columns, and the stream table's
    for schema in (raw.schema, cleaned.schema):
        described = _described(schema)
        assert list(described) == schema.fieldNames()
        assert {name: d for name, d in described.items() if not _one_line(d)} == {}


def _answer_schema(spark, answer):
    """The answer's output schema, computed from empty cleaned tables (3b from 3a's output)."""
    tables = {
        f"{spec.name}_clean": CLEANERS[spec.name](spark.createDataFrame([], SCHEMAS[spec.name])) for spec in TOPICS
    }
    for upstream in ANSWERS:
        if upstream.name in answer.inputs:
            tables[upstream.name] = upstream.compute(**{name: tables[name] for name in upstream.inputs})
    return answer.compute(**{name: tables[name] for name in answer.inputs}).schema


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda answer: answer.name)
def test_the_answers_describe_every_column(spark, answer):
    described = _described(_answer_schema(spark, answer))
    assert described and {name: d for name, d in described.items() if not _one_line(d)} == {}


def test_every_description_is_of_a_column_some_table_has(spark):
    cleaned = [CLEANERS[t](spark.createDataFrame([], SCHEMAS[t])).schema for t in SCHEMAS]
    answers = [_answer_schema(spark, answer) for answer in ANSWERS]
    columns = {name for schema in [*SCHEMAS.values(), *cleaned, *answers] for name in schema.fieldNames()}
    assert set(COLUMN_DESCRIPTIONS) - columns == set()
