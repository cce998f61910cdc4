"""The posts database, seeded and drawn from, on SQLite and on a real MariaDB server."""

from __future__ import annotations

import json
import random
import re
import time
from contextlib import contextmanager

import dagster as dg
import pytest
import sqlalchemy as sa

from pintrest_assets.database.resource import PostsDatabase, json_ready
from pintrest_assets.database.generate import DEFAULT_ROWS, generate_posts
from pintrest_assets.database.schema import TABLES, index_of, metadata, table_of
from pintrest_assets.database.seed import seed
from pintrest_assets.settings import ConfigError
from pintrest_assets.topics import TOPICS

ROWS = 300
ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")


@pytest.fixture
def seeded(db_url) -> str:
    seed(db_url, rows=ROWS, seed=11)
    return db_url


@contextmanager
def statements(engine: sa.Engine):
    """The SQL statements ``engine`` sends inside the block."""
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def delete(url: str, table_name: str, indexes: list[int]) -> None:
    spec = next(spec for spec in TOPICS if spec.table == table_name)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(table_of(spec).delete().where(index_of(spec).in_(indexes)))
    engine.dispose()


# -- seeding -----------------------------------------------------------------------------------


def test_seeded_rows_read_back_exactly(seeded):
    """Emoji, other scripts, trailing spaces, coordinates, datetimes and index 0 all survive."""
    engine = sa.create_engine(seeded)
    with engine.connect() as conn:
        for spec in TOPICS:
            stored = [dict(r) for r in conn.execute(sa.select(table_of(spec)).order_by(index_of(spec))).mappings()]
            assert stored == [post[spec.name] for post in generate_posts(ROWS, seed=11)]
    engine.dispose()
    names = [post["pin"]["poster_name"] for post in generate_posts(ROWS, seed=11)]
    assert any(ord(ch) > 0xFFFF for name in names for ch in name)  # the check above covered emoji
    assert stored[0]["ind"] == 0


def test_seeding_twice_does_not_duplicate(seeded):
    assert seed(seeded, rows=ROWS, seed=11) == {spec.table: 0 for spec in TOPICS}
    assert PostsDatabase(url=seeded).post_count() == ROWS


def test_seeding_the_full_sample_takes_seconds(db_url, request):
    started = time.perf_counter()
    inserted = seed(db_url)
    seconds = time.perf_counter() - started
    assert inserted == {spec.table: DEFAULT_ROWS for spec in TOPICS}
    print(f"\nseeding {DEFAULT_ROWS:,} posts on {request.node.callspec.id}: {seconds:.2f} s")


# -- drawing -----------------------------------------------------------------------------------


def test_a_drawn_post_is_three_rows_with_one_index(seeded):
    draw = PostsDatabase(url=seeded).draw_posts(500, random.Random(1))
    assert len(draw.posts) == 500 and draw.missing == 0
    for post in draw.posts:
        assert list(post) == [spec.name for spec in TOPICS]
        for spec in TOPICS:
            assert list(post[spec.name]) == list(table_of(spec).c.keys())
        assert post["pin"]["index"] == post["geo"]["ind"] == post["user"]["ind"]


def test_drawn_posts_are_the_stored_rows_and_json_ready(seeded):
    draw = PostsDatabase(url=seeded).draw_posts(1000, random.Random(2))
    expected = {post["pin"]["index"]: post for post in generate_posts(ROWS, seed=11)}
    for post in draw.posts:
        assert post == {name: json_ready(row) for name, row in expected[post["pin"]["index"]].items()}
        assert ISO_SECONDS.match(post["geo"]["timestamp"]) and ISO_SECONDS.match(post["user"]["date_joined"])
    assert json.loads(json.dumps(draw.posts)) == draw.posts
    # With replacement, over the whole index range, 0 included.
    drawn = [post["pin"]["index"] for post in draw.posts]
    assert min(drawn) == 0 and max(drawn) == ROWS - 1 and len(set(drawn)) < len(drawn)


def test_the_same_random_state_draws_the_same_posts(seeded):
    database = PostsDatabase(url=seeded)
    assert database.draw_posts(50, random.Random(7)) == database.draw_posts(50, random.Random(7))
    assert database.draw_posts(50, random.Random(7)) != database.draw_posts(50, random.Random(8))


def test_indexes_missing_from_a_table_are_counted_and_skipped(seeded):
    before = PostsDatabase(url=seeded).draw_posts(3000, random.Random(3))
    gone = {0, 7, 150}
    delete(seeded, "geolocation_data", [0, 7])
    delete(seeded, "pinterest_data", [150])  # inside the pin index range: a hole, not the edge

    after = PostsDatabase(url=seeded).draw_posts(3000, random.Random(3))
    assert after.posts == [post for post in before.posts if post["pin"]["index"] not in gone]
    assert after.missing == len(before.posts) - len(after.posts) > 0


def test_the_bulk_draw_sends_one_query_per_table_and_chunk(seeded):
    database = PostsDatabase(url=seeded)
    with statements(database.engine) as sent:
        database.draw_posts(500, random.Random(4))
    # The index range once, then one IN query per table: not one query per post.
    assert len(sent) <= 1 + len(TOPICS), sent
    assert sum("IN (" in s for s in sent) == len(TOPICS) and not any("LIMIT" in s for s in sent)
    with statements(database.engine) as sent:
        database.draw_posts(500, random.Random(5))
    assert len(sent) == len(TOPICS)  # the range is remembered


def test_draws_beyond_one_query_are_chunked(tmp_path):
    url = f"sqlite:///{tmp_path / 'posts.db'}"
    seed(url, rows=2500)
    database = PostsDatabase(url=url)
    with statements(database.engine) as sent:
        draw = database.draw_posts(6000, random.Random(6))
    assert len(draw.posts) == 6000
    assert len(sent) == 1 + 3 * len(TOPICS)  # ~2,250 distinct indexes, 900 per query


def test_the_original_method_draws_one_post_with_a_query_per_table(seeded):
    database = PostsDatabase(url=seeded)
    database.draw_post_one_by_one(random.Random(0))  # remembers the row count
    with statements(database.engine) as sent:
        post = database.draw_post_one_by_one(random.Random(9))
    assert len(sent) == len(TOPICS) and all("LIMIT" in s for s in sent)
    assert post["pin"]["index"] == post["geo"]["ind"] == post["user"]["ind"]
    assert 0 <= post["pin"]["index"] < ROWS
    json.dumps(post)


def test_the_resource_works_inside_a_run(seeded, monkeypatch):
    monkeypatch.setenv("PINTREST_DB_URL", seeded)

    @dg.asset
    def drawn(database: PostsDatabase) -> dg.MaterializeResult:
        draw = database.draw_posts(20, random.Random(0))
        return dg.MaterializeResult(metadata={"posts": len(draw.posts), "missing": draw.missing})

    result = dg.materialize([drawn], resources={"database": PostsDatabase(url=dg.EnvVar("PINTREST_DB_URL"))})
    assert result.success
    metadata_ = result.asset_materializations_for_node("drawn")[0].metadata
    assert metadata_["posts"].value == 20 and metadata_["missing"].value == 0


# -- errors ------------------------------------------------------------------------------------


def test_check_passes_on_a_seeded_database(seeded):
    PostsDatabase(url=seeded).check()


def test_missing_tables_say_to_seed_first(db_url):
    database = PostsDatabase(url=db_url)
    if db_url.startswith("sqlite"):
        with pytest.raises(ConfigError, match="does not exist; run `pintrest seed` first"):
            database.check()
        engine = sa.create_engine(db_url)
        TABLES["user_data"].create(engine)
        engine.dispose()
    with pytest.raises(ConfigError) as raised:
        database.draw_posts(3, random.Random(0))
    assert raised.value.setting == "PINTREST_DB_URL"
    assert "run `pintrest seed` first" in str(raised.value) and "pinterest_data" in str(raised.value)
    if db_url.startswith("mysql"):
        assert ":***@" in str(raised.value) and sa.engine.make_url(db_url).password not in str(raised.value)


def test_empty_tables_say_to_seed_first(db_url):
    engine = sa.create_engine(db_url)
    metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(ConfigError, match="has no posts; run `pintrest seed` first"):
        PostsDatabase(url=db_url).draw_posts(3, random.Random(0))


def test_an_unreachable_server_names_the_setting_without_the_password():
    database = PostsDatabase(url="mysql+pymysql://pin:s3cret-pw@127.0.0.1:1/pintrest")
    for attempt in (database.check, lambda: database.draw_posts(1, random.Random(0)), database.post_count):
        with pytest.raises(ConfigError) as raised:
            attempt()
        message = str(raised.value)
        assert message.startswith("PINTREST_DB_URL: cannot connect to mysql+pymysql://pin:***@127.0.0.1:1/pintrest: ")
        assert "s3cret-pw" not in message and "\n" not in message


def test_a_missing_sqlite_file_is_not_created(tmp_path):
    path = tmp_path / "nowhere.db"
    with pytest.raises(ConfigError, match="does not exist"):
        PostsDatabase(url=f"sqlite:///{path}").draw_posts(1, random.Random(0))
    assert not path.exists()


def test_a_malformed_url_names_the_setting():
    with pytest.raises(ConfigError) as raised:
        PostsDatabase(url="postgres ql://nonsense").check()
    assert raised.value.setting == "PINTREST_DB_URL" and "not a database URL" in str(raised.value)
