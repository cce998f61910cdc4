"""The questions about the posts, as pure functions of the cleaned tables.

A post is one pin joined to its geo and/or user row on ``ind`` (inner joins: a pin without the
other row has no country, year or age to count it under; the join coverage check counts them).
Each function's parameters are named after the assets it reads, and its result has exactly the
question's output columns, sorted by its leading columns.

Choices, stated once:

- "Most popular" and "most followers" keep every row that ranks first, as ``RANK() = 1`` does:
  a tie gives several rows.
- Age groups are 18-24, 25-35, 36-50 and 50+, as the original's ``age <= 50`` makes them: 50
  is in 36-50, 50+ starts at 51. An age under 18 is in no group, and its posts are left out.
- Medians are exact: the middle value, or the mean of the two middle values (Spark's
  ``median``, a double). The original's ``percentile_approx(x, 0.5)`` returns the lower middle
  value instead; on the sizes here the exact median costs nothing more.
- Medians and counts are over posts, as in the original: a poster with three posts weighs three
  times. Posts without the value asked about (no follower count, no country, ...) are left out;
  a group with none left has no row, and nor has an empty year.
- "Users joined per year" counts distinct users, a user being a name and a join date: the user
  table holds one row per post, so a user who posted twice would be counted twice otherwise.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

# (label, lowest age, highest age); None: no upper bound.
AGE_GROUPS: tuple[tuple[str, int, int | None], ...] = (
    ("18-24", 18, 24),
    ("25-35", 25, 35),
    ("36-50", 36, 50),
    ("50+", 51, None),
)
POST_YEARS = (2018, 2022)  # question 2: posts per category per year, years of the geo timestamp
JOIN_YEARS = (2015, 2020)  # questions 6-8: years of date_joined


def age_group(age: Column) -> Column:
    """The age group label of ``age``, null under 18."""
    group = None
    for label, low, high in AGE_GROUPS:
        in_group = age >= low if high is None else age.between(low, high)
        group = F.when(in_group, label) if group is None else group.when(in_group, label)
    return group


def top_ranked(df: DataFrame, within: list[str], by: str) -> DataFrame:
    """The rows with the highest ``by`` within each ``within`` group, every one of them on a tie."""
    rank = F.rank().over(Window.partitionBy(*within).orderBy(F.col(by).desc()))
    return df.withColumn("_rank", rank).where(F.col("_rank") == 1).drop("_rank")


def _year_between(timestamp: Column, years: tuple[int, int]) -> Column:
    return F.year(timestamp).between(*years)


def _known(*columns: str) -> Column:
    condition = F.lit(True)
    for column in columns:
        condition = condition & F.col(column).isNotNull()
    return condition


def most_popular_category_by_country(pin_clean: DataFrame, geo_clean: DataFrame) -> DataFrame:
    """1. The most popular category in each country: country, category, category_count."""
    counts = (
        pin_clean.join(geo_clean, "ind")
        .where(_known("country", "category"))
        .groupBy("country", "category")
        .agg(F.count(F.lit(1)).alias("category_count"))
    )
    return top_ranked(counts, ["country"], "category_count").orderBy("country", "category")


def posts_per_category_by_year(pin_clean: DataFrame, geo_clean: DataFrame) -> DataFrame:
    """2. Posts per category per year, 2018 to 2022: post_year, category, category_count."""
    return (
        pin_clean.join(geo_clean, "ind")
        .where(_known("category") & _year_between(F.col("timestamp"), POST_YEARS))
        .groupBy(F.year("timestamp").alias("post_year"), "category")
        .agg(F.count(F.lit(1)).alias("category_count"))
        .orderBy("post_year", "category")
    )


def most_followed_user_by_country(pin_clean: DataFrame, geo_clean: DataFrame) -> DataFrame:
    """3a. The user with the most followers in each country: country, poster_name, follower_count.

    A poster with several posts in a country is one candidate (their count as on any post; if
    their posts disagree, each distinct count is a candidate and the highest can win).
    """
    posters = (
        pin_clean.join(geo_clean, "ind")
        .where(_known("country", "poster_name", "follower_count"))
        .select("country", "poster_name", "follower_count")
        .distinct()
    )
    return top_ranked(posters, ["country"], "follower_count").orderBy("country", "poster_name")


def most_followed_country(most_followed_user_by_country: DataFrame) -> DataFrame:
    """3b. The country of the user with the most followers: country, follower_count."""
    top = most_followed_user_by_country
    highest = top.agg(F.max("follower_count").alias("_highest"))
    return (
        top.join(highest, F.col("follower_count") == F.col("_highest"))
        .select("country", "follower_count")
        .distinct()
        .orderBy("country")
    )


def _posts_with_users(pin_clean: DataFrame, user_clean: DataFrame) -> DataFrame:
    return pin_clean.join(user_clean, "ind").withColumn("age_group", age_group(F.col("age")))


def most_popular_category_by_age_group(pin_clean: DataFrame, user_clean: DataFrame) -> DataFrame:
    """4. The most popular category in each age group: age_group, category, category_count."""
    counts = (
        _posts_with_users(pin_clean, user_clean)
        .where(_known("age_group", "category"))
        .groupBy("age_group", "category")
        .agg(F.count(F.lit(1)).alias("category_count"))
    )
    return top_ranked(counts, ["age_group"], "category_count").orderBy("age_group", "category")


def median_followers_by_age_group(pin_clean: DataFrame, user_clean: DataFrame) -> DataFrame:
    """5. The median follower count in each age group: age_group, median_follower_count."""
    return (
        _posts_with_users(pin_clean, user_clean)
        .where(_known("age_group", "follower_count"))
        .groupBy("age_group")
        .agg(F.median("follower_count").alias("median_follower_count"))
        .orderBy("age_group")
    )


def users_joined_by_year(user_clean: DataFrame) -> DataFrame:
    """6. Users who joined each year, 2015 to 2020: post_year, number_users_joined."""
    return (
        user_clean.where(_year_between(F.col("date_joined"), JOIN_YEARS))
        .select("user_name", "date_joined")
        .distinct()
        .groupBy(F.year("date_joined").alias("post_year"))
        .agg(F.count(F.lit(1)).alias("number_users_joined"))
        .orderBy("post_year")
    )


def median_followers_by_join_year(pin_clean: DataFrame, user_clean: DataFrame) -> DataFrame:
    """7. The median follower count by year joined, 2015 to 2020: post_year, median_follower_count."""
    return (
        pin_clean.join(user_clean, "ind")
        .where(_known("follower_count") & _year_between(F.col("date_joined"), JOIN_YEARS))
        .groupBy(F.year("date_joined").alias("post_year"))
        .agg(F.median("follower_count").alias("median_follower_count"))
        .orderBy("post_year")
    )


def median_followers_by_join_year_and_age_group(pin_clean: DataFrame, user_clean: DataFrame) -> DataFrame:
    """8. The median follower count by age group and year joined, 2015 to 2020:
    age_group, post_year, median_follower_count."""
    return (
        _posts_with_users(pin_clean, user_clean)
        .where(_known("age_group", "follower_count") & _year_between(F.col("date_joined"), JOIN_YEARS))
        .groupBy("age_group", F.year("date_joined").alias("post_year"))
        .agg(F.median("follower_count").alias("median_follower_count"))
        .orderBy("age_group", "post_year")
    )
