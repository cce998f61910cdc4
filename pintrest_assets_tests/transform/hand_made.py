"""Eleven hand-made posts, and the nine answers about them worked out by hand.

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

``raw_rows`` gives the same posts as df_pin/df_geo/df_user hold them before cleaning: follower
counts as displayed ("1k"), placeholders in the text fields, and post 3 re-sent twice.
"""

import datetime as dt

from pintrest_assets.domain import IMAGE_SRC_ERROR, NO_DESCRIPTION, NO_TAGS, NO_TITLE, USER_INFO_ERROR, save_location

POSTS = [
    # ind, poster, followers, category, (country, timestamp) or None, (user, age, joined) or None
    (1, "Ann", 100, "art", ("Aruba", "2018-05-01 00:00:00"), ("U1", 18, "2015-01-01 00:00:00")),
    (2, "Bob", 500, "art", ("Aruba", "2019-01-01 00:00:00"), ("U2", 24, "2015-06-01 00:00:00")),
    (3, "Cat", 500, "travel", ("Aruba", "2019-06-01 00:00:00"), ("U3", 25, "2016-01-01 00:00:00")),
    (4, "Dan", 50, "travel", ("Belize", "2022-12-31 23:59:59"), ("U4", 35, "2016-02-02 00:00:00")),
    (5, "Eve", 1000, "beauty", ("Belize", "2023-01-01 00:00:00"), ("U5", 36, "2014-12-31 00:00:00")),
    (6, "Fay", None, "beauty", ("Chad", "2017-12-31 00:00:00"), ("U6", 50, "2017-01-01 00:00:00")),
    (7, "Gus", 20, "art", ("Chad", "2018-01-01 00:00:00"), ("U7", 51, "2020-12-31 00:00:00")),
    (8, "Hal", 1000, "finance", ("Denmark", "2020-02-02 00:00:00"), ("U8", 59, "2021-01-01 00:00:00")),
    (9, "Ann", 100, "quotes", ("Aruba", "2020-03-03 00:00:00"), ("U1", 18, "2015-01-01 00:00:00")),
    (10, "Ivy", 70, "art", None, ("U10", 17, "2017-05-05 00:00:00")),
    (11, "Jo", 30, "vehicles", ("Chad", "2021-01-01 00:00:00"), None),
]
RESENT = 3  # the post sent three times in raw_rows

EXPECTED = {
    "most_popular_category_by_country": (
        ["country", "category", "category_count"],
        [
            ("Aruba", "art", 2),  # art 1, 2; travel 3; quotes 9
            ("Belize", "beauty", 1),  # a tie: beauty 5, travel 4
            ("Belize", "travel", 1),
            ("Chad", "art", 1),  # a three-way tie: beauty 6, art 7, vehicles 11
            ("Chad", "beauty", 1),
            ("Chad", "vehicles", 1),
            ("Denmark", "finance", 1),
        ],  # post 10 has no geo row: it is in no country
    ),
    "posts_per_category_by_year": (
        ["post_year", "category", "category_count"],
        [
            (2018, "art", 2),  # posts 1 and 7
            (2019, "art", 1),
            (2019, "travel", 1),
            (2020, "finance", 1),
            (2020, "quotes", 1),
            (2021, "vehicles", 1),
            (2022, "travel", 1),  # the last second of 2022 is in; 2023 (post 5) and 2017 (post 6) are out
        ],
    ),
    "most_followed_user_by_country": (
        ["country", "poster_name", "follower_count"],
        [
            ("Aruba", "Bob", 500),  # a tie; Ann's two posts make one candidate at 100
            ("Aruba", "Cat", 500),
            ("Belize", "Eve", 1000),
            ("Chad", "Jo", 30),  # Fay's unknown count does not rank above Gus's 20 or Jo's 30
            ("Denmark", "Hal", 1000),
        ],
    ),
    "most_followed_country": (
        ["country", "follower_count"],
        [("Belize", 1000), ("Denmark", 1000)],  # a tie at the top
    ),
    "most_popular_category_by_age_group": (
        ["age_group", "category", "category_count"],
        [
            ("18-24", "art", 2),  # posts 1, 2 (quotes 9 once)
            ("25-35", "travel", 2),  # posts 3, 4
            ("36-50", "beauty", 2),  # posts 5, 6: 50 is in 36-50
            ("50+", "art", 1),  # a tie: art 7, finance 8
            ("50+", "finance", 1),
        ],  # post 10 (age 17) is in no group
    ),
    "median_followers_by_age_group": (
        ["age_group", "median_follower_count"],
        [
            ("18-24", 100.0),  # 100, 100, 500
            ("25-35", 275.0),  # 50, 500: the mean of the two middle values (percentile_approx: 50)
            ("36-50", 1000.0),  # 1000; Fay's unknown count is left out
            ("50+", 510.0),  # 20, 1000
        ],
    ),
    "users_joined_by_year": (
        ["post_year", "number_users_joined"],
        # 2015: U1 (posts 1 and 9) and U2; 2016: U3, U4; 2017: U6, U10; 2020: U7. 2014 (U5) and
        # 2021 (U8) are outside 2015-2020; 2018 and 2019 have no users, so no row.
        [(2015, 2), (2016, 2), (2017, 2), (2020, 1)],
    ),
    "median_followers_by_join_year": (
        ["post_year", "median_follower_count"],
        [
            (2015, 100.0),  # 100, 500, 100
            (2016, 275.0),  # 500, 50
            (2017, 70.0),  # Fay unknown; Ivy 70 (age does not matter here)
            (2020, 20.0),
        ],
    ),
    "median_followers_by_join_year_and_age_group": (
        ["age_group", "post_year", "median_follower_count"],
        [
            ("18-24", 2015, 100.0),
            ("25-35", 2016, 275.0),
            ("50+", 2020, 20.0),
        ],  # 36-50 has Eve (joined 2014) and Fay (unknown count) only: no row
    ),
}


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def clean_rows() -> dict[str, list[dict]]:
    """The posts as the cleaned tables hold them."""
    return {
        "pin": [{"ind": i, "poster_name": p, "follower_count": f, "category": c} for i, p, f, c, _, _ in POSTS],
        "geo": [
            {"ind": i, "country": g[0], "coordinates": [0.0, 0.0], "timestamp": _time(g[1])}
            for i, *_, g, _ in POSTS
            if g
        ],
        "user": [
            {"ind": i, "user_name": u[0], "age": u[1], "date_joined": _time(u[2])} for i, *_, u in POSTS if u
        ],
    }


def _displayed(followers: int | None) -> str:
    if followers is None:
        return USER_INFO_ERROR
    return f"{followers // 1000}k" if followers >= 1000 else str(followers)


def raw_rows() -> dict[str, list[dict]]:
    """The posts as df_pin/df_geo/df_user hold them: displayed counts, placeholders, post 3 re-sent."""
    pins, geos, users = [], [], []
    for i, poster, followers, category, geo, user in POSTS:
        pins.append(
            {
                "index": i,
                "unique_id": f"00000000-0000-4000-8000-{i:012d}",
                "title": NO_TITLE if i % 4 == 0 else f"Post {i}",
                "description": NO_DESCRIPTION if i % 3 == 0 else f"About post {i}",
                "poster_name": poster,
                "follower_count": _displayed(followers),
                "tag_list": NO_TAGS if i % 5 == 0 else "a,b",
                "is_image_or_video": "image",
                "image_src": IMAGE_SRC_ERROR if i % 2 == 0 else f"https://i.pinimg.com/originals/{i}.jpg",
                "downloaded": 1,
                "save_location": save_location(category),
                "category": category,
            }
        )
        if geo:
            country, timestamp = geo
            geos.append(
                {
                    "ind": i,
                    "timestamp": timestamp.replace(" ", "T"),
                    "latitude": 1.5,
                    "longitude": -2.5,
                    "country": country,
                }
            )
        if user:
            name, age, joined = user
            users.append({"ind": i, "first_name": "User", "last_name": name, "age": age, "date_joined": joined})
    resent = {
        "pin": [r for r in pins if r["index"] == RESENT],
        "geo": [r for r in geos if r["ind"] == RESENT],
        "user": [r for r in users if r["ind"] == RESENT],
    }
    return {
        "pin": pins + resent["pin"] * 2,
        "geo": geos + resent["geo"] * 2,
        "user": users + resent["user"] * 2,
    }
