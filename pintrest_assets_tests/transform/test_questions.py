"""The nine questions on eleven hand-made posts, each answer worked out by hand below.

    ind poster follower category | country  geo timestamp        | user age joined
    1   Ann    100      art      | Aruba    2018-05-01           | U1   18  2015-01-01
    2   Bob    500      art      | Aruba    2019-01-01           | U2   24  2015-06-01
    3   Cat    500      travel   | Aruba    2019-06-01           | U3   25  2016-01-01
    4   Dan    50       travel   | Belize   2022-12-31 23:59:59  | U4   35  2016-02-02
    5   Eve    1000     beauty   | Belize   2023-01-01           | U5   36  2014-12-31
    6   Fay    (none)   beauty   | Chad     2017-12-31           | U6   50  2017-01-01
    7   Gus    20       art      | Chad     2018-01-01           | U7   51  2020-12-31
    8   Hal    1000     finance  | Denmark  2020-02-02           | U8   59  2021-01-01
    9   Ann    100      quotes   | Aruba    2020-03-03           | U1   18  2015-01-01  (U1 again)
    10  Ivy    70       art      | (no geo row)                  | U10  17  2017-05-05
    11  Jo     30       vehicles | Chad     2021-01-01           | (no user row)
"""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from pintrest_assets.transform import questions
from pintrest_assets.transform.questions import age_group

POSTS = [
    # ind, poster, followers, category, (country, timestamp) or None, (user, age, joined) or None
    (1, "Ann", 100, "art", ("Aruba", "2018-05-01"), ("U1", 18, "2015-01-01")),
    (2, "Bob", 500, "art", ("Aruba", "2019-01-01"), ("U2", 24, "2015-06-01")),
    (3, "Cat", 500, "travel", ("Aruba", "2019-06-01"), ("U3", 25, "2016-01-01")),
    (4, "Dan", 50, "travel", ("Belize", "2022-12-31 23:59:59"), ("U4", 35, "2016-02-02")),
    (5, "Eve", 1000, "beauty", ("Belize", "2023-01-01"), ("U5", 36, "2014-12-31")),
    (6, "Fay", None, "beauty", ("Chad", "2017-12-31"), ("U6", 50, "2017-01-01")),
    (7, "Gus", 20, "art", ("Chad", "2018-01-01"), ("U7", 51, "2020-12-31")),
    (8, "Hal", 1000, "finance", ("Denmark", "2020-02-02"), ("U8", 59, "2021-01-01")),
    (9, "Ann", 100, "quotes", ("Aruba", "2020-03-03"), ("U1", 18, "2015-01-01")),
    (10, "Ivy", 70, "art", None, ("U10", 17, "2017-05-05")),
    (11, "Jo", 30, "vehicles", ("Chad", "2021-01-01"), None),
]


def _time(text):
    return dt.datetime.fromisoformat(text)


@pytest.fixture
def tables(cleaned):
    pins = [{"ind": i, "poster_name": p, "follower_count": f, "category": c} for i, p, f, c, _, _ in POSTS]
    geos = [{"ind": i, "country": g[0], "coordinates": [0.0, 0.0], "timestamp": _time(g[1])} for i, *_, g, _ in POSTS if g]
    users = [{"ind": i, "user_name": u[0], "age": u[1], "date_joined": _time(u[2])} for i, *_, u in POSTS if u]
    return {"pin_clean": cleaned("pin", pins), "geo_clean": cleaned("geo", geos), "user_clean": cleaned("user", users)}


def rows(df):
    return [tuple(r) for r in df.collect()]


def test_1_most_popular_category_by_country(tables):
    df = questions.most_popular_category_by_country(tables["pin_clean"], tables["geo_clean"])
    assert df.columns == ["country", "category", "category_count"]
    assert rows(df) == [
        ("Aruba", "art", 2),  # art 1,2; travel 3; quotes 9
        ("Belize", "beauty", 1),  # a tie: beauty 5, travel 4
        ("Belize", "travel", 1),
        ("Chad", "art", 1),  # a three-way tie: beauty 6, art 7, vehicles 11
        ("Chad", "beauty", 1),
        ("Chad", "vehicles", 1),
        ("Denmark", "finance", 1),
    ]  # post 10 has no geo row: it is in no country


def test_2_posts_per_category_by_year_2018_to_2022(tables):
    df = questions.posts_per_category_by_year(tables["pin_clean"], tables["geo_clean"])
    assert df.columns == ["post_year", "category", "category_count"]
    assert rows(df) == [
        (2018, "art", 2),  # posts 1 and 7
        (2019, "art", 1),
        (2019, "travel", 1),
        (2020, "finance", 1),
        (2020, "quotes", 1),
        (2021, "vehicles", 1),
        (2022, "travel", 1),  # the last second of 2022 is in; 2023 (post 5) and 2017 (post 6) are out
    ]


def test_3a_most_followed_user_by_country(tables):
    df = questions.most_followed_user_by_country(tables["pin_clean"], tables["geo_clean"])
    assert df.columns == ["country", "poster_name", "follower_count"]
    assert rows(df) == [
        ("Aruba", "Bob", 500),  # a tie; Ann's two posts make one candidate at 100
        ("Aruba", "Cat", 500),
        ("Belize", "Eve", 1000),
        ("Chad", "Jo", 30),  # Fay's unknown count does not rank above Gus's 20 or Jo's 30
        ("Denmark", "Hal", 1000),
    ]


def test_3b_most_followed_country_keeps_a_tie(tables):
    top = questions.most_followed_user_by_country(tables["pin_clean"], tables["geo_clean"])
    df = questions.most_followed_country(top)
    assert df.columns == ["country", "follower_count"]
    assert rows(df) == [("Belize", 1000), ("Denmark", 1000)]


def test_3b_of_nothing_is_nothing(cleaned, spark):
    empty = spark.createDataFrame([], "country string, poster_name string, follower_count bigint")
    assert rows(questions.most_followed_country(empty)) == []


def test_4_most_popular_category_by_age_group(tables):
    df = questions.most_popular_category_by_age_group(tables["pin_clean"], tables["user_clean"])
    assert df.columns == ["age_group", "category", "category_count"]
    assert rows(df) == [
        ("18-24", "art", 2),  # posts 1, 2 (quotes 9 once)
        ("25-35", "travel", 2),  # posts 3, 4
        ("36-50", "beauty", 2),  # posts 5, 6 (50 is in 36-50)
        ("50+", "art", 1),  # a tie: art 7, finance 8
        ("50+", "finance", 1),
    ]  # post 10 (age 17) is in no group


def test_5_median_followers_by_age_group_is_exact(tables):
    df = questions.median_followers_by_age_group(tables["pin_clean"], tables["user_clean"])
    assert df.columns == ["age_group", "median_follower_count"]
    assert rows(df) == [
        ("18-24", 100.0),  # 100, 100, 500
        ("25-35", 275.0),  # 50, 500: the mean of the two middle values (percentile_approx: 50)
        ("36-50", 1000.0),  # 1000; Fay's unknown count is left out
        ("50+", 510.0),  # 20, 1000
    ]


def test_6_users_joined_by_year_counts_each_user_once(tables):
    df = questions.users_joined_by_year(tables["user_clean"])
    assert df.columns == ["post_year", "number_users_joined"]
    # 2015: U1 (posts 1 and 9) and U2; 2016: U3, U4; 2017: U6, U10; 2020: U7.
    # 2014 (U5) and 2021 (U8) are outside 2015-2020; 2018 and 2019 have no users, so no row.
    assert rows(df) == [(2015, 2), (2016, 2), (2017, 2), (2020, 1)]


def test_7_median_followers_by_join_year(tables):
    df = questions.median_followers_by_join_year(tables["pin_clean"], tables["user_clean"])
    assert df.columns == ["post_year", "median_follower_count"]
    assert rows(df) == [
        (2015, 100.0),  # 100, 500, 100
        (2016, 275.0),  # 500, 50
        (2017, 70.0),  # Fay unknown, Ivy 70 (age does not matter here)
        (2020, 20.0),
    ]


def test_8_median_followers_by_join_year_and_age_group(tables):
    df = questions.median_followers_by_join_year_and_age_group(tables["pin_clean"], tables["user_clean"])
    assert df.columns == ["age_group", "post_year", "median_follower_count"]
    assert rows(df) == [
        ("18-24", 2015, 100.0),
        ("25-35", 2016, 275.0),
        ("50+", 2020, 20.0),
    ]  # 36-50 has Eve (joined 2014) and Fay (unknown count) only: no row


AGES = [(17, None), (18, "18-24"), (24, "18-24"), (25, "25-35"), (35, "25-35"), (36, "36-50"), (50, "36-50"),
        (51, "50+"), (99, "50+"), (None, None)]


def test_age_group_boundaries(spark):
    df = spark.createDataFrame([(a,) for a, _ in AGES], "age int")
    assert [r[0] for r in df.select(age_group(F.col("age"))).collect()] == [g for _, g in AGES]
