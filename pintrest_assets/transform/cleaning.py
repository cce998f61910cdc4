"""The cleaning rules of the three DataFrames, one small function per rule.

Each rule is a Spark ``Column`` builder (or, for parsing follower counts, also a plain Python
function that states the rule for a single value). ``clean_pin``, ``clean_geo`` and
``clean_user`` compose them in one ``select`` per table: every column is cleaned from the raw
input at once, so no rule can silently undo another (the public versions' loop of
``df2 = df.withColumn(c, ...)`` kept only its last column's cleaning).

The rules undo the quirks of the scraped data:

- placeholder strings and blank strings become null (the placeholders come from
  ``pintrest_assets.domain`` exactly as stored, period of "Image src error." included);
- follower counts as displayed ("437", "1.2k", "26k", "1M") become integers;
- save_location keeps only the path: "Local save in /data/art" -> "/data/art" (the prefix
  ends with a space, which a prefix without it would leave in front of the path);
- index -> ind; geo coordinates become ``array(latitude, longitude)``; first and last name
  become ``user_name``; timestamps become timestamps.

Timestamps become ``timestamp_ntz``: the source datetimes carry no time zone, and a naive
timestamp keeps ``year()`` the same whatever the Spark session's time zone is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pintrest_assets.domain import PLACEHOLDERS, SAVE_LOCATION_PREFIX
from pintrest_assets.transform.posts import COPIES

PIN_COLUMNS: tuple[str, ...] = (
    "ind",
    "unique_id",
    "title",
    "description",
    "follower_count",
    "poster_name",
    "tag_list",
    "is_image_or_video",
    "image_src",
    "save_location",
    "category",
)
GEO_COLUMNS: tuple[str, ...] = ("ind", "country", "coordinates", "timestamp")
USER_COLUMNS: tuple[str, ...] = ("ind", "user_name", "age", "date_joined")

# A follower count as displayed: digits, an optional decimal part, an optional k (thousand) or
# M (million) suffix. Anything else is not a number of followers.
_FOLLOWER_COUNT = r"^([0-9]+(?:\.[0-9]+)?)([kKmM]?)$"
_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000}


def parse_follower_count(text: str | None) -> int | None:
    """A displayed follower count as an integer: "437" -> 437, "1.2k" -> 1200, "26k" -> 26000,
    "1M" -> 1000000. Fractions of a follower are cut off ("1.2345k" -> 1234).

    None, blank strings and the "User Info Error" placeholder mean "unknown" and give None;
    anything else that is not a count raises ``ValueError``. ``follower_count_as_integer`` is the
    same rule for a Spark column (where an unparseable value becomes null, counted by the
    cleaned table's conversion check).
    """
    if text is None or text.strip() == "" or text in PLACEHOLDERS["follower_count"]:
        return None
    match = re.match(_FOLLOWER_COUNT, text.strip())
    if match is None:
        raise ValueError(f"not a follower count: {text!r}")
    number, suffix = match.groups()
    return int(Decimal(number) * _MULTIPLIERS[suffix.lower()])


def null_if_placeholder(value: Column, placeholders: Iterable[str] = ()) -> Column:
    """``value`` with blank strings and any of ``placeholders`` (matched exactly) as null."""
    missing = value.rlike(r"^\s*$")
    placeholders = list(placeholders)
    if placeholders:
        missing = missing | value.isin(placeholders)
    return F.when(missing, F.lit(None)).otherwise(value)


def follower_count_as_integer(count: Column) -> Column:
    """The rule of ``parse_follower_count`` for a string column, as a bigint column.

    The number goes through a decimal so that "1.2k" is exactly 1200 (a double would give
    1199.99...). Values that are not counts (placeholders included) become null.

    The suffix is matched in both cases rather than lower-cased: Spark 4's ``lower`` maps case
    with ICU, whose first use in a JVM loads its case and break-iterator data (1-1.5 s on an idle
    laptop, several on a loaded one), which a stream table's first micro-batch would wait for.
    """
    text = F.regexp_replace(count, r"^\s+|\s+$", "")
    number = F.regexp_extract(text, _FOLLOWER_COUNT, 1).try_cast("decimal(38,18)")
    suffix = F.regexp_extract(text, _FOLLOWER_COUNT, 2)
    multiplier = (
        F.when(suffix.isin("k", "K"), _MULTIPLIERS["k"]).when(suffix.isin("m", "M"), _MULTIPLIERS["m"]).otherwise(1)
    )
    return F.when(text.rlike(_FOLLOWER_COUNT), (number * multiplier).try_cast("bigint"))


def save_location_path(location: Column) -> Column:
    """The path of "Local save in /data/<category>": everything after the prefix and its space.

    A value without the prefix is kept as it is.
    """
    return F.when(
        location.startswith(SAVE_LOCATION_PREFIX),
        location.substr(len(SAVE_LOCATION_PREFIX) + 1, 1 << 20),
    ).otherwise(location)


def as_integer(value: Column) -> Column:
    """An integer column (out-of-range values fail the query under Spark's ANSI mode)."""
    return value.cast("int")


def as_timestamp(text: Column) -> Column:
    """"YYYY-MM-DD HH:MM:SS" or ISO "YYYY-MM-DDTHH:MM:SS" as a timestamp without time zone;
    anything else becomes null (counted by the cleaned table's conversion check)."""
    return text.try_cast("timestamp_ntz")


def coordinates(latitude: Column, longitude: Column) -> Column:
    """``[latitude, longitude]``."""
    return F.array(latitude, longitude)


def user_name(first_name: Column, last_name: Column) -> Column:
    """"<first> <last>"; a missing part is left out, and a user without either has no name."""
    name = F.concat_ws(" ", first_name, last_name)
    return F.when(name != "", name)


def _text(column: str) -> Column:
    """A raw string column with its placeholders and blanks as null."""
    return null_if_placeholder(F.col(column), PLACEHOLDERS.get(column, ()))


def clean_pin(df_pin: DataFrame, keep: Sequence[str | Column] = ()) -> DataFrame:
    """df_pin cleaned, in ``PIN_COLUMNS`` order (after the columns to ``keep`` as they are).
    ``downloaded`` is not among those columns and is left out, as in the original's cleaned
    table. Duplicates are not removed here: the table cleans one row per post (``posts.py``)."""
    return df_pin.select(
        *keep,
        as_integer(F.col("index")).alias("ind"),
        _text("unique_id").alias("unique_id"),
        _text("title").alias("title"),
        _text("description").alias("description"),
        follower_count_as_integer(_text("follower_count")).alias("follower_count"),
        _text("poster_name").alias("poster_name"),
        _text("tag_list").alias("tag_list"),
        _text("is_image_or_video").alias("is_image_or_video"),
        _text("image_src").alias("image_src"),
        save_location_path(_text("save_location")).alias("save_location"),
        _text("category").alias("category"),
    )


def clean_geo(df_geo: DataFrame, keep: Sequence[str | Column] = ()) -> DataFrame:
    """df_geo cleaned, in ``GEO_COLUMNS`` order (after the columns to ``keep`` as they are)."""
    return df_geo.select(
        *keep,
        as_integer(F.col("ind")).alias("ind"),
        _text("country").alias("country"),
        coordinates(F.col("latitude"), F.col("longitude")).alias("coordinates"),
        as_timestamp(_text("timestamp")).alias("timestamp"),
    )


def clean_user(df_user: DataFrame, keep: Sequence[str | Column] = ()) -> DataFrame:
    """df_user cleaned, in ``USER_COLUMNS`` order (after the columns to ``keep`` as they are)."""
    return df_user.select(
        *keep,
        as_integer(F.col("ind")).alias("ind"),
        user_name(_text("first_name"), _text("last_name")).alias("user_name"),
        as_integer(F.col("age")).alias("age"),
        as_timestamp(_text("date_joined")).alias("date_joined"),
    )


Conversion = Callable[[Column], Column]


# Raw string columns that a rule converts to another type: raw column -> conversion. A value
# present in the raw column whose conversion is null was lost by the cleaning.
CONVERSIONS: Mapping[str, Mapping[str, Conversion]] = {
    "pin": {"follower_count": follower_count_as_integer},
    "geo": {"timestamp": as_timestamp},
    "user": {"date_joined": as_timestamp},
}


# Per topic: the cleaning of its DataFrame and the cleaned table's columns, in order.
CLEANERS: Mapping[str, Callable[..., DataFrame]] = {"pin": clean_pin, "geo": clean_geo, "user": clean_user}
CLEANED_COLUMNS: Mapping[str, tuple[str, ...]] = {"pin": PIN_COLUMNS, "geo": GEO_COLUMNS, "user": USER_COLUMNS}


@dataclass(frozen=True)
class CleanedPosts:
    """``clean_posts``' result: the cleaned rows, their Spark schema, and what the raw rows they
    stand for had: how many, and per converted raw column how many present values (not null,
    blank or placeholder) the conversion turned into null."""

    rows: pa.Table
    schema: T.StructType
    rows_read: int
    unconverted: dict[str, int]


def clean_posts(posts: DataFrame, topic: str) -> CleanedPosts:
    """``topic``'s cleaning of ``posts`` (one row per post and its ``COPIES``: ``posts.py``), with
    the counts of the raw rows, in one Spark job: each post's copies are the same row, so each of
    its values that a conversion loses is lost ``COPIES`` times."""
    conversions = CONVERSIONS[topic]
    lost = [f"_lost_{i}" for i in range(len(conversions))]
    flags = [
        (_text(column).isNotNull() & convert(F.col(column)).isNull()).alias(name)
        for name, (column, convert) in zip(lost, conversions.items())
    ]
    cleaned = CLEANERS[topic](posts, keep=[F.col(COPIES), *flags])
    rows = cleaned.toArrow()
    copies = rows[COPIES]
    return CleanedPosts(
        rows=rows.drop_columns([COPIES, *lost]),
        schema=T.StructType([f for f in cleaned.schema.fields if f.name not in (COPIES, *lost)]),
        rows_read=pc.sum(copies).as_py() or 0,
        unconverted={
            column: pc.sum(pc.if_else(rows[name], copies, 0)).as_py() or 0
            for name, column in zip(lost, conversions)
        },
    )


def rows_and_nulls(rows: pa.Table) -> tuple[int, dict[str, int]]:
    """The number of rows, and the nulls per column in column order."""
    return rows.num_rows, {column: rows[column].null_count for column in rows.column_names}
