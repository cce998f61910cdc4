"""The nine questions on the hand-made posts of ``hand_made`` (answers worked out there by hand)."""

import pytest
from pyspark.sql import functions as F

from pintrest_assets.defs.transform.answers import ANSWERS, ANSWERS_BY_NAME
from pintrest_assets.transform import questions
from pintrest_assets.transform.questions import age_group
from pintrest_assets_tests.transform.frames import clean_frame
from pintrest_assets_tests.transform.hand_made import EXPECTED, clean_rows


@pytest.fixture(scope="module")
def tables(spark_session_for_transform):
    return {
        f"{topic}_clean": clean_frame(spark_session_for_transform, topic, rows).cache()
        for topic, rows in clean_rows().items()
    }


def compute(name, tables):
    """An answer computed from the tables its function reads (answer 3b from answer 3a)."""
    answer = ANSWERS_BY_NAME[name]
    available = {**tables}
    for upstream in answer.inputs:
        if upstream not in available:
            available[upstream] = compute(upstream, tables)
    return answer.compute(**{name: available[name] for name in answer.inputs})


@pytest.mark.parametrize("name", list(EXPECTED))
def test_answer_on_hand_made_posts(tables, name):
    columns, expected = EXPECTED[name]
    df = compute(name, tables)
    assert df.columns == columns
    assert [tuple(r) for r in df.collect()] == expected


def test_every_question_has_a_hand_worked_answer():
    assert [a.number for a in ANSWERS] == ["1", "2", "3a", "3b", "4", "5", "6", "7", "8"]
    assert set(EXPECTED) == set(ANSWERS_BY_NAME)


def test_3b_of_no_users_is_no_country(spark):
    empty = spark.createDataFrame([], "country string, poster_name string, follower_count bigint")
    assert questions.most_followed_country(empty).collect() == []


AGES = [(17, None), (18, "18-24"), (24, "18-24"), (25, "25-35"), (35, "25-35"), (36, "36-50"), (50, "36-50"),
        (51, "50+"), (99, "50+"), (None, None)]


def test_age_group_boundaries(spark):
    df = spark.createDataFrame([(a,) for a, _ in AGES], "age int")
    assert [r[0] for r in df.select(age_group(F.col("age"))).collect()] == [g for _, g in AGES]
