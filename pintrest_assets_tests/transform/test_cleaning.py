"""Each cleaning rule on its own, then the three tables' cleaning as a whole."""

import datetime as dt

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from pintrest_assets.domain import (
    IMAGE_SRC_ERROR,
    NO_DESCRIPTION,
    NO_TAGS,
    NO_TITLE,
    PLACEHOLDERS,
    USER_INFO_ERROR,
    save_location,
)
from pintrest_assets.transform import cleaning
from pintrest_assets.transform.cleaning import (
    CONVERSIONS,
    GEO_COLUMNS,
    PIN_COLUMNS,
    USER_COLUMNS,
    as_integer,
    as_timestamp,
    clean_geo,
    clean_pin,
    clean_user,
    coordinates,
    clean_posts,
    follower_count_as_integer,
    null_if_placeholder,
    parse_follower_count,
    rows_and_nulls,
    save_location_path,
    user_name,
)
from pintrest_assets.transform.posts import COPIES, one_row_per_post


def evaluate(spark, cases):
    """Each ``(rule, args, types)`` case applied to its arguments, all in one Spark job.

    A Spark job costs about a second on a busy machine: the rules' cases are evaluated together
    once per module (``rule_results``) and each parametrized test looks its case up.
    """
    fields, values, outputs = [], [], []
    for i, (rule, args, types) in enumerate(cases):
        names = [f"c{i}_{j}" for j in range(len(args))]
        fields += [f"{name} {type_}" for name, type_ in zip(names, types)]
        values += args
        outputs.append(rule(*(F.col(name) for name in names)).alias(f"out{i}"))
    row = spark.createDataFrame([tuple(values)], ", ".join(fields)).select(*outputs).first()
    return [row[f"out{i}"] for i in range(len(cases))]


FOLLOWER_COUNTS = [
    ("437", 437),
    ("0", 0),
    ("26k", 26_000),
    ("892k", 892_000),
    ("1M", 1_000_000),
    ("6M", 6_000_000),
    ("8M", 8_000_000),
    ("1.2k", 1_200),  # exactly: a double would make it 1199.999...
    ("2.3k", 2_300),
    ("1.5M", 1_500_000),
    ("1.2345k", 1_234),  # fractions of a follower are cut off
    ("26K", 26_000),
    (" 26k ", 26_000),
    (None, None),
    ("", None),
    ("   ", None),
    (USER_INFO_ERROR, None),
]
NOT_FOLLOWER_COUNTS = ["abc", "-5", "1.2.3k", "26kk", "k", "1,234", "26 k", "1e3", "User Info"]

PLACEHOLDER_CASES = [(column, p) for column, values in PLACEHOLDERS.items() for p in values]
BLANKS = ["", " ", "\t ", "\n"]
REAL_VALUES = [
    ("image_src", "https://i.pinimg.com/originals/d5/3b/01/d53b014d86a6b6761bf649a0ed813c2b.png"),
    ("description", "Untitled drawing of a cat"),  # a placeholder inside a real text stays
    ("poster_name", "Maria's Kitchen "),  # trailing spaces are part of a name
    ("title", "no title data available"),  # placeholders match exactly, case included
    ("follower_count", "26k"),
]
SAVE_LOCATIONS = [
    (save_location("art"), "/data/art"),
    (save_location("diy-and-crafts"), "/data/diy-and-crafts"),
    ("Local save in /data/mens-fashion", "/data/mens-fashion"),
    ("/data/art", "/data/art"),  # already a path
    (None, None),
]
INTEGERS = [(0, 0), (11_152, 11_152), (None, None)]
TIMESTAMPS = [
    ("2019-03-04T05:06:07", dt.datetime(2019, 3, 4, 5, 6, 7)),
    ("2019-03-04 05:06:07", dt.datetime(2019, 3, 4, 5, 6, 7)),
    ("2017-12-31T23:59:59", dt.datetime(2017, 12, 31, 23, 59, 59)),
    ("not a time", None),
    ("2019-02-30 00:00:00", None),
    (None, None),
]
USER_NAMES = [
    ("Ada", "Lovelace", "Ada Lovelace"),
    ("Ada", None, "Ada"),
    (None, "Lovelace", "Lovelace"),
    (None, None, None),
]


def _placeholders_of(column):
    return lambda v: null_if_placeholder(v, PLACEHOLDERS[column])


SPARK_CASES = {
    **{("follower_count", t): (follower_count_as_integer, (t,), ("string",)) for t, _ in FOLLOWER_COUNTS},
    **{("follower_count", t): (follower_count_as_integer, (t,), ("string",)) for t in NOT_FOLLOWER_COUNTS},
    **{("placeholder", c, p): (_placeholders_of(c), (p,), ("string",)) for c, p in PLACEHOLDER_CASES + REAL_VALUES},
    **{("blank", b): (null_if_placeholder, (b,), ("string",)) for b in BLANKS},
    **{("save_location", s): (save_location_path, (s,), ("string",)) for s, _ in SAVE_LOCATIONS},
    **{("integer", i): (as_integer, (i,), ("bigint",)) for i, _ in INTEGERS},
    **{("timestamp", t): (as_timestamp, (t,), ("string",)) for t, _ in TIMESTAMPS},
    **{("user_name", f, l): (user_name, (f, l), ("string", "string")) for f, l, _ in USER_NAMES},
    ("coordinates",): (coordinates, (-12.5, 130.25), ("double", "double")),
    ("follower_count_type",): (lambda v: F.typeof(follower_count_as_integer(v)), ("8M",), ("string",)),
}


@pytest.fixture(scope="module")
def rule_results(spark_session_for_transform):
    return dict(zip(SPARK_CASES, evaluate(spark_session_for_transform, list(SPARK_CASES.values()))))


@pytest.mark.parametrize("text, expected", FOLLOWER_COUNTS)
def test_parse_follower_count(text, expected):
    assert parse_follower_count(text) == expected


@pytest.mark.parametrize("text", NOT_FOLLOWER_COUNTS)
def test_parse_follower_count_rejects_what_is_not_a_count(text):
    with pytest.raises(ValueError, match="not a follower count"):
        parse_follower_count(text)


@pytest.mark.parametrize("text, expected", FOLLOWER_COUNTS)
def test_spark_follower_count_follows_the_same_rule(rule_results, text, expected):
    # In clean_pin the placeholder turns null by the placeholder rule first; the parser alone
    # must not take it for a number either.
    assert rule_results["follower_count", text] == expected


@pytest.mark.parametrize("text", NOT_FOLLOWER_COUNTS)
def test_spark_follower_count_nulls_what_is_not_a_count(rule_results, text):
    assert rule_results["follower_count", text] is None


def test_spark_follower_count_is_a_bigint(rule_results):
    assert rule_results["follower_count_type",] == "bigint"


@pytest.mark.parametrize("column, placeholder", PLACEHOLDER_CASES)
def test_every_placeholder_becomes_null(rule_results, column, placeholder):
    assert rule_results["placeholder", column, placeholder] is None


def test_image_src_placeholder_is_matched_with_its_period(rule_results):
    # Public versions matched "Image src error" and left every "Image src error." in place.
    assert IMAGE_SRC_ERROR == "Image src error."
    assert rule_results["placeholder", "image_src", "Image src error."] is None


@pytest.mark.parametrize("blank", BLANKS)
def test_blank_strings_become_null(rule_results, blank):
    assert rule_results["blank", blank] is None


@pytest.mark.parametrize("column, value", REAL_VALUES)
def test_real_values_are_kept(rule_results, column, value):
    assert rule_results["placeholder", column, value] == value


@pytest.mark.parametrize("location, expected", SAVE_LOCATIONS)
def test_save_location_keeps_only_the_path(rule_results, location, expected):
    # Stripping "Local save in" without its trailing space leaves " /data/art".
    assert rule_results["save_location", location] == expected


@pytest.mark.parametrize("value, expected", INTEGERS)
def test_as_integer(rule_results, value, expected):
    assert rule_results["integer", value] == expected


def test_as_integer_fails_loudly_out_of_range(spark):
    df = spark.createDataFrame([(2**40,)], "v bigint")
    with pytest.raises(Exception, match="CAST_OVERFLOW"):
        df.select(as_integer(F.col("v"))).collect()


@pytest.mark.parametrize("text, expected", TIMESTAMPS)
def test_as_timestamp(rule_results, text, expected):
    assert rule_results["timestamp", text] == expected


def test_coordinates_are_latitude_then_longitude(rule_results):
    assert rule_results["coordinates",] == [-12.5, 130.25]


@pytest.mark.parametrize("first, last, expected", USER_NAMES)
def test_user_name(rule_results, first, last, expected):
    assert rule_results["user_name", first, last] == expected


def _pin(index, **overrides):
    row = {
        "index": index,
        "unique_id": f"00000000-0000-0000-0000-{index:012d}",
        "title": "Cozy reading nook",
        "description": "A corner to read in",
        "poster_name": "Home Ideas",
        "follower_count": "26k",
        "tag_list": "Reading,Nook",
        "is_image_or_video": "image",
        "image_src": "https://i.pinimg.com/originals/aa/bb/cc.jpg",
        "downloaded": 1,
        "save_location": "Local save in /data/home-decor",
        "category": "home-decor",
    }
    return {**row, **overrides}


def test_clean_pin_cleans_every_column_of_a_row_of_placeholders(raw):
    # The public versions' loop reassigned from the raw DataFrame each time: only the last
    # column was clean. Every placeholder column must be null here.
    row = _pin(
        7,
        title=NO_TITLE,
        description=NO_DESCRIPTION,
        poster_name=USER_INFO_ERROR,
        follower_count=USER_INFO_ERROR,
        tag_list=NO_TAGS,
        image_src=IMAGE_SRC_ERROR,
    )
    [cleaned] = clean_pin(raw("pin", [row])).collect()
    assert cleaned.asDict() == {
        "ind": 7,
        "unique_id": "00000000-0000-0000-0000-000000000007",
        "title": None,
        "description": None,
        "follower_count": None,
        "poster_name": None,
        "tag_list": None,
        "is_image_or_video": "image",
        "image_src": None,
        "save_location": "/data/home-decor",
        "category": "home-decor",
    }


def test_clean_pin_columns_types_and_values(raw):
    df = clean_pin(raw("pin", [_pin(3, follower_count="1.2k", title="", category="art")]))
    assert tuple(df.columns) == PIN_COLUMNS
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert (types["ind"], types["follower_count"]) == ("int", "bigint")
    [row] = df.collect()
    assert (row.ind, row.follower_count, row.title, row.category) == (3, 1200, None, "art")


def test_clean_geo(raw):
    df = clean_geo(
        raw(
            "geo",
            [
                {
                    "ind": 5,
                    "timestamp": "2020-01-02T03:04:05",
                    "latitude": -12.5,
                    "longitude": 130.25,
                    "country": "Aruba",
                },
                {"ind": 6, "timestamp": "", "latitude": None, "longitude": 1.0, "country": " "},
            ],
        )
    )
    assert tuple(df.columns) == GEO_COLUMNS
    assert df.schema["timestamp"].dataType.simpleString() == "timestamp_ntz"
    assert [r.asDict() for r in df.orderBy("ind").collect()] == [
        {"ind": 5, "country": "Aruba", "coordinates": [-12.5, 130.25], "timestamp": dt.datetime(2020, 1, 2, 3, 4, 5)},
        {"ind": 6, "country": None, "coordinates": [None, 1.0], "timestamp": None},
    ]


def test_clean_user(raw):
    df = clean_user(
        raw(
            "user",
            [{"ind": 9, "first_name": "Ada", "last_name": "Lovelace", "age": 36, "date_joined": "2016-01-02 03:04:05"}],
        )
    )
    assert tuple(df.columns) == USER_COLUMNS
    assert {f.name: f.dataType.simpleString() for f in df.schema.fields} == {
        "ind": "int",
        "user_name": "string",
        "age": "int",
        "date_joined": "timestamp_ntz",
    }
    assert df.first().asDict() == {
        "ind": 9,
        "user_name": "Ada Lovelace",
        "age": 36,
        "date_joined": dt.datetime(2016, 1, 2, 3, 4, 5),
    }


def _files(raw, tmp_path, topic, *batches):
    """Each batch of raw rows written as a parquet file, as the DataFrame tables hold them; the
    files in order and their schema."""
    schema = raw(topic, []).toArrow().schema
    files = []
    for i, rows in enumerate(batches):
        files.append(str(tmp_path / f"{topic}-{i}.parquet"))
        pq.write_table(raw(topic, rows).toArrow().cast(schema), files[-1])
    return files, schema


def _cleaned(spark, posts, topic):
    return clean_posts(spark.createDataFrame(posts, from_arrow_schema(posts.schema)), topic)


def test_one_row_per_post_cleans_to_what_dropping_duplicates_after_cleaning_gives(raw, spark, tmp_path):
    rows = [
        _pin(1, follower_count="1.2k"),
        _pin(2, title=NO_TITLE),
        _pin(1, follower_count="1.2k"),
        _pin(3, follower_count="lots"),
        _pin(1, follower_count="1.2k"),
        _pin(3, follower_count="lots"),
    ]
    posts = one_row_per_post(*_files(raw, tmp_path, "pin", rows[:4], rows[4:]), "index")
    assert sorted(zip(posts["index"].to_pylist(), posts[COPIES].to_pylist())) == [(1, 3), (2, 1), (3, 2)]
    cleaned = _cleaned(spark, posts, "pin")
    by_post = sorted(tuple(r.values()) for r in cleaned.rows.to_pylist())
    expected = clean_pin(raw("pin", rows)).dropDuplicates(["ind"])
    assert by_post == sorted(tuple(r) for r in expected.collect())
    assert cleaned.schema == expected.schema
    assert [r[2] for r in by_post] == ["Cozy reading nook", None, "Cozy reading nook"]  # title
    # The raw rows and their lost values, counted from the posts: post 3's "lots" twice.
    assert (cleaned.rows_read, cleaned.unconverted) == (6, {"follower_count": 2})


def test_one_row_per_post_keeps_one_whole_row_of_a_post(raw, tmp_path):
    """Copies that differ (a post edited between two draws) give the first of them, never a mix."""
    rows = [_pin(1, title="Old", follower_count="1"), _pin(1, title="New", follower_count="2")] * 50
    posts = one_row_per_post(*_files(raw, tmp_path, "pin", rows[:33], rows[33:]), "index")
    assert posts.select(["title", "follower_count", COPIES]).to_pylist() == [
        {"title": "Old", "follower_count": "1", COPIES: 100}
    ]


def test_posts_are_their_first_copies_across_files(raw, spark, tmp_path):
    """Posts found in a later file only are taken from it; a post's copies in every file count."""
    first = [_pin(i, follower_count="lots" if i == 3 else "1k") for i in range(1, 6)]
    later = [_pin(i, follower_count="lots" if i == 3 else "1k", title=f"later {i}") for i in (1, 3, 3, 6)]
    posts = one_row_per_post(*_files(raw, tmp_path, "pin", first, later, []), "index")
    assert sorted(zip(posts["index"].to_pylist(), posts["title"].to_pylist(), posts[COPIES].to_pylist())) == [
        (1, "Cozy reading nook", 2),
        (2, "Cozy reading nook", 1),
        (3, "Cozy reading nook", 3),
        (4, "Cozy reading nook", 1),
        (5, "Cozy reading nook", 1),
        (6, "later 6", 1),
    ]
    cleaned = _cleaned(spark, posts, "pin")
    assert (cleaned.rows_read, cleaned.unconverted) == (9, {"follower_count": 3})


def test_a_null_key_is_one_post(raw, tmp_path):
    rows = [{"ind": None, "country": "Chad"}, {"ind": 1}, {"ind": None, "country": "Peru"}]
    posts = one_row_per_post(*_files(raw, tmp_path, "geo", rows, rows[:1]), "ind")
    assert sorted(zip(posts["ind"].to_pylist(), posts["country"].to_pylist(), posts[COPIES].to_pylist()),
                  key=str) == [(1, None, 1), (None, "Chad", 3)]


def test_no_posts_no_rows(raw, spark, tmp_path):
    for files, schema in (([], raw("geo", []).toArrow().schema), _files(raw, tmp_path, "geo", [])):
        posts = one_row_per_post(files, schema, "ind")
        assert posts.num_rows == 0 and COPIES in posts.column_names
        cleaned = _cleaned(spark, posts, "geo")
        assert (cleaned.rows.num_rows, cleaned.rows_read, cleaned.unconverted) == (0, 0, {"timestamp": 0})
        assert cleaned.rows.column_names == list(GEO_COLUMNS)


def test_conversion_failures_count_values_lost_not_values_missing(raw, spark, tmp_path):
    pins = [
        _pin(1, follower_count="26k"),
        _pin(2, follower_count=USER_INFO_ERROR),  # missing, not lost
        _pin(3, follower_count=None),
        _pin(4, follower_count="lots"),
        _pin(5, follower_count="1,5k"),
    ]
    cleaned = _cleaned(spark, one_row_per_post(*_files(raw, tmp_path, "pin", pins), "index"), "pin")
    assert (cleaned.rows_read, cleaned.unconverted) == (5, {"follower_count": 2})
    geos = [{"ind": 1, "timestamp": "yesterday"}, {"ind": 2, "timestamp": "2020-01-01 00:00:00"}, {"ind": 3}]
    cleaned = _cleaned(spark, one_row_per_post(*_files(raw, tmp_path, "geo", geos), "ind"), "geo")
    assert (cleaned.rows_read, cleaned.unconverted) == (3, {"timestamp": 1})


def test_rows_and_nulls(raw, spark, tmp_path):
    users = [{"ind": 1, "first_name": "Ada", "age": 30}, {"ind": 2}]
    cleaned = _cleaned(spark, one_row_per_post(*_files(raw, tmp_path, "user", users), "ind"), "user")
    assert rows_and_nulls(cleaned.rows) == (2, {"ind": 0, "user_name": 1, "age": 1, "date_joined": 2})



def test_cleaning_rules_cover_every_placeholder_column():
    assert set(PLACEHOLDERS) <= set(PIN_COLUMNS)
    assert set(CONVERSIONS) == set(cleaning.CLEANERS) == {"pin", "geo", "user"}
