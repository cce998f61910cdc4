"""Filling the posts database with sample posts (``pintrest seed``, and ``pintrest run`` on an empty one)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import sqlalchemy as sa

from pintrest_assets.database.engine import database_error, open_engine, sqlite_path
from pintrest_assets.database.generate import DEFAULT_ROWS, DEFAULT_SEED, generate_posts
from pintrest_assets.database.schema import index_of, metadata, table_of
from pintrest_assets.settings import ConfigError, redact_url
from pintrest_assets.topics import TOPICS

# Rows per INSERT executemany and per transaction: large enough to be fast, small enough that an
# interrupted seed keeps most of its work.
CHUNK_ROWS = 2_000


def seed(
    db_url: str, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, *, setting: str = "PINTREST_DB_URL"
) -> dict[str, int]:
    """Create the three tables if missing and add the sample posts ``0 .. rows - 1`` they lack.

    Idempotent: an index already in a table is left as it is, so running it again adds nothing.
    Returns how many rows were inserted, per table. Raises ``ConfigError`` naming ``setting``
    if the database cannot be reached or written.
    """
    if rows < 0:
        raise ValueError(f"rows must be at least 0, got {rows}")
    path = sqlite_path(db_url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                setting, f"cannot create {path.parent} for {redact_url(db_url)}: {exc.strerror}"
            ) from None

    engine = open_engine(db_url, setting)
    doing = "cannot connect to"
    try:
        with engine.begin() as conn:
            doing = "cannot seed"
            metadata.create_all(conn)
            present = {spec.table: set(conn.execute(sa.select(index_of(spec))).scalars()) for spec in TOPICS}
        inserted = {spec.table: 0 for spec in TOPICS}
        if all(present[spec.table].issuperset(range(rows)) for spec in TOPICS):
            return inserted  # nothing to generate

        for chunk in _chunks(generate_posts(rows, seed), CHUNK_ROWS):
            with engine.begin() as conn:
                for spec in TOPICS:
                    new = [
                        post[spec.name]
                        for post in chunk
                        if post[spec.name][spec.index_column] not in present[spec.table]
                    ]
                    if new:
                        conn.execute(table_of(spec).insert(), new)
                        inserted[spec.table] += len(new)
        return inserted
    except sa.exc.DBAPIError as exc:
        raise database_error(setting, db_url, exc, doing) from None
    finally:
        engine.dispose()


def seed_if_empty(db_url: str, *, setting: str = "PINTREST_DB_URL", **options) -> dict[str, int] | None:
    """``seed`` a database that lacks the three tables or their posts; None if it has them, untouched.

    ``options`` are ``seed``'s (``rows``, ``seed``).
    """
    path = sqlite_path(db_url)
    if path is None or path.is_file():  # checking a SQLite file that is not there would create it
        engine = open_engine(db_url, setting)
        try:
            with engine.connect() as conn:
                inspector = sa.inspect(conn)
                if all(inspector.has_table(spec.table) for spec in TOPICS) and all(
                    conn.execute(sa.select(index_of(spec)).limit(1)).first() is not None for spec in TOPICS
                ):
                    return None
        except sa.exc.DBAPIError as exc:
            raise database_error(setting, db_url, exc) from None
        finally:
            engine.dispose()
    return seed(db_url, setting=setting, **options)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
