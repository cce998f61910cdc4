"""The posts database: where the emulation draws its random posts from.

A post is the three rows, one per topic, that share one index (``index`` in ``pinterest_data``,
``ind`` in the other two). The original drew one post at a time with a random
``LIMIT offset, 1`` query per table; ``draw_posts`` draws many at once with one bound ``IN``
query per table and chunk, and keeps that original method as ``draw_post_one_by_one`` to compare.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from pintrest_assets.database.engine import database_error, open_engine, sqlite_path
from pintrest_assets.database.schema import index_of, table_of
from pintrest_assets.settings import ConfigError, db_url_from_creds_file, redact_url
from pintrest_assets.topics import TOPICS, TOPICS_BY_NAME

SETTING = "PINTREST_DB_URL"
# Indexes per IN (...) query: below every driver's limit on bound parameters (SQLite's is 999
# in old builds).
INDEXES_PER_QUERY = 900

# One statement per topic, built once: SQLAlchemy caches their compiled form.
_FETCH_BY_INDEX = {
    spec.name: sa.select(table_of(spec)).where(index_of(spec).in_(sa.bindparam("indexes", expanding=True)))
    for spec in TOPICS
}
_PIN = TOPICS_BY_NAME["pin"]  # the table whose indexes define the posts


@dataclass(frozen=True)
class Draw:
    """Posts drawn at random, and how many drawn indexes were missing from a table."""

    posts: list[dict[str, dict]]  # topic name -> that table's row, JSON-ready, in column order
    missing: int  # drawn indexes absent from at least one table: skipped


class PostsDatabase(dg.ConfigurableResource):
    """The source database of posts (``pinterest_data``, ``geolocation_data``, ``user_data``)."""

    url: str = Field(default="", description="SQLAlchemy URL of the posts database (PINTREST_DB_URL).")
    creds_file: str | None = Field(
        default=None,
        description="A db_creds.yaml in the original's format (PINTREST_DB_CREDS), read at run time "
        "so the password never enters the run config; used instead of url when set.",
    )

    # Read once per resource instance: the pin table's index range (for draw_posts) and row
    # count (for draw_post_one_by_one).
    _index_range: tuple[int, int] | None = PrivateAttr(default=None)
    _count: int | None = PrivateAttr(default=None)

    @property
    def database_url(self) -> str:
        if self.creds_file:
            return db_url_from_creds_file(self.creds_file)
        if not self.url:
            raise ConfigError(SETTING, "no database URL is configured")
        return self.url

    @property
    def engine(self) -> sa.Engine:
        return _engine(self.database_url, os.getpid())

    def draw_posts(self, count: int, rng: random.Random) -> Draw:
        """``count`` random posts, drawn with replacement from the pin table's index range.

        Indexes missing from any table are counted in ``missing`` and skipped, so ``posts`` may
        hold fewer than ``count``.
        """
        if count < 0:
            raise ValueError(f"count must be at least 0, got {count}")
        with self._connection() as conn:
            low, high = self._indexes(conn)
            drawn = [rng.randint(low, high) for _ in range(count)]
            wanted = sorted(set(drawn))
            rows: dict[str, dict[int, dict]] = {spec.name: {} for spec in TOPICS}
            for start in range(0, len(wanted), INDEXES_PER_QUERY):
                chunk = wanted[start : start + INDEXES_PER_QUERY]
                for spec in TOPICS:
                    for row in conn.execute(_FETCH_BY_INDEX[spec.name], {"indexes": chunk}).mappings():
                        rows[spec.name][row[spec.index_column]] = json_ready(row)

        posts, missing = [], 0
        for index in drawn:
            post = {spec.name: rows[spec.name].get(index) for spec in TOPICS}
            if any(row is None for row in post.values()):
                missing += 1
            else:
                # Copies: an index drawn twice must not give two posts sharing their dicts.
                posts.append({name: dict(row) for name, row in post.items()})
        return Draw(posts=posts, missing=missing)

    def draw_post_one_by_one(self, rng: random.Random) -> dict[str, dict] | None:
        """One random post the original's way: a random offset, then ``LIMIT offset, 1`` per table.

        None if a table has no row at that offset.
        """
        with self._connection() as conn:
            if self._count is None:
                self._count = _count_rows(conn)
            if not self._count:
                raise self._unseeded()
            offset = rng.randrange(self._count)
            post = {}
            for spec in TOPICS:
                row = conn.execute(sa.select(table_of(spec)).limit(1).offset(offset)).mappings().first()
                if row is None:
                    return None
                post[spec.name] = json_ready(row)
        return post

    def post_count(self) -> int:
        """How many posts the pin table holds."""
        with self._connection() as conn:
            return _count_rows(conn)

    def check(self) -> None:
        """Raise ``ConfigError`` naming PINTREST_DB_URL unless the database answers and has the tables."""
        redacted = redact_url(self.database_url)
        path = sqlite_path(self.database_url)
        if path is not None and not path.is_file():
            raise ConfigError(
                SETTING, f"cannot connect to {redacted}: {path} does not exist; run `pintrest seed` first"
            )
        try:
            with self.engine.connect() as conn:
                inspector = sa.inspect(conn)
                absent = [spec.table for spec in TOPICS if not inspector.has_table(spec.table)]
        except sa.exc.DBAPIError as exc:
            raise database_error(SETTING, self.database_url, exc) from None
        if absent:
            raise ConfigError(
                SETTING, f"cannot connect to {redacted}: no table {', '.join(absent)}; run `pintrest seed` first"
            )

    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        path = sqlite_path(self.database_url)
        if path is not None and not path.is_file():
            self.check()  # connecting would create an empty database file
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.DBAPIError:
            self.check()  # a clear message if the server is unreachable or the tables are missing
            raise

    def _indexes(self, conn: sa.Connection) -> tuple[int, int]:
        if self._index_range is None:
            index = index_of(_PIN)
            low, high = conn.execute(sa.select(sa.func.min(index), sa.func.max(index))).one()
            if low is None:
                raise self._unseeded()
            self._index_range = (low, high)
        return self._index_range

    def _unseeded(self) -> ConfigError:
        return ConfigError(SETTING, f"{redact_url(self.database_url)} has no posts; run `pintrest seed` first")


@cache
def _engine(url: str, pid: int) -> sa.Engine:
    # One engine (and pool) per URL and process: a forked process must not share the parent's
    # connections, hence the pid in the key.
    return open_engine(url, SETTING)


def _count_rows(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(table_of(_PIN))).scalar_one()


def json_ready(row) -> dict:
    """A row as a dict that ``json.dumps`` accepts: datetimes as ISO-8601 strings."""
    return {key: _json_value(value) for key, value in row.items()}


def _json_value(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()  # "2020-08-28T05:31:31"
    if isinstance(value, Decimal):
        return float(value)
    return value
