"""The three source tables of the original MySQL database, as SQLAlchemy Core tables.

Column names and order are the original's: the order is the key order of the JSON records sent
to the topics. The types work on SQLite and on MySQL/MariaDB alike.
"""

from __future__ import annotations

import sqlalchemy as sa

from pintrest_assets.topics import TopicSpec

metadata = sa.MetaData()

# utf8mb4: poster names carry emoji, which MySQL's 3-byte "utf8" cannot store.
_MYSQL_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def _key(name: str) -> sa.Column:
    # autoincrement=False: otherwise MySQL makes the key AUTO_INCREMENT and a post with index 0
    # is stored as 1.
    return sa.Column(name, sa.Integer, primary_key=True, autoincrement=False)


pinterest_data = sa.Table(
    "pinterest_data",
    metadata,
    _key("index"),
    sa.Column("unique_id", sa.String(36), nullable=False),
    sa.Column("title", sa.String(255)),
    sa.Column("description", sa.Text),
    sa.Column("poster_name", sa.String(255)),
    sa.Column("follower_count", sa.String(16)),  # as displayed: "437", "26k", "1M"
    sa.Column("tag_list", sa.Text),
    sa.Column("is_image_or_video", sa.String(64)),
    sa.Column("image_src", sa.String(255)),
    sa.Column("downloaded", sa.Integer),
    sa.Column("save_location", sa.String(255)),
    sa.Column("category", sa.String(32)),
    **_MYSQL_OPTIONS,
)

geolocation_data = sa.Table(
    "geolocation_data",
    metadata,
    _key("ind"),
    sa.Column("timestamp", sa.DateTime),
    # Double, not Float: MySQL's FLOAT is single precision and would round the coordinates.
    sa.Column("latitude", sa.Double),
    sa.Column("longitude", sa.Double),
    sa.Column("country", sa.String(128)),
    **_MYSQL_OPTIONS,
)

user_data = sa.Table(
    "user_data",
    metadata,
    _key("ind"),
    sa.Column("first_name", sa.String(64)),
    sa.Column("last_name", sa.String(64)),
    sa.Column("age", sa.Integer),
    sa.Column("date_joined", sa.DateTime),
    **_MYSQL_OPTIONS,
)

TABLES: dict[str, sa.Table] = {t.name: t for t in (pinterest_data, geolocation_data, user_data)}


def table_of(spec: TopicSpec) -> sa.Table:
    """The table a topic's records come from."""
    return TABLES[spec.table]


def index_of(spec: TopicSpec) -> sa.Column:
    """The column of ``spec``'s table that ties one post's three rows together."""
    return table_of(spec).c[spec.index_column]
