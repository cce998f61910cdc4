"""`pintrest run` seeds the sample database only when it has no posts."""

import sqlalchemy as sa

from pintrest_assets.database.schema import TABLES
from pintrest_assets.database.seed import seed, seed_if_empty


def test_seeds_a_missing_or_empty_database_and_leaves_a_seeded_one_alone(tmp_path):
    url = f"sqlite:///{tmp_path / 'posts.db'}"
    assert seed_if_empty(url, rows=30) == {name: 30 for name in TABLES}
    assert seed_if_empty(url, rows=50) is None  # it has posts: nothing added

    other = f"sqlite:///{tmp_path / 'empty.db'}"
    seed(other, rows=0)  # the tables, without a post
    assert seed_if_empty(other, rows=10) == {name: 10 for name in TABLES}

    engine = sa.create_engine(other)
    with engine.begin() as conn:
        conn.execute(TABLES["user_data"].delete())
    engine.dispose()
    assert seed_if_empty(other, rows=10) == {"pinterest_data": 0, "geolocation_data": 0, "user_data": 10}
