"""Seeding a SQLite database, and the ``pintrest seed`` command.

The same seeding against MariaDB is tested with the database resource (database/test_resource.py).
"""

from __future__ import annotations

import os
from unittest import mock

import pytest
import sqlalchemy as sa

from pintrest_assets.cli import main
from pintrest_assets.database.generate import generate_posts
from pintrest_assets.database.schema import TABLES, index_of, table_of
from pintrest_assets.database.seed import seed
from pintrest_assets.settings import ConfigError
from pintrest_assets.topics import TOPICS


def counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        result = {
            name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for name, t in TABLES.items()
        }
    engine.dispose()
    return result


def seed_command(argv: list[str], environ: dict[str, str]) -> int:
    """``pintrest seed ARGV`` in an environment of ``environ``."""
    with mock.patch.dict(os.environ, environ):
        return main(["seed", *argv])


def test_seed_creates_the_tables_and_fills_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'new' / 'dir' / 'posts.db'}"  # the directory is created too
    assert seed(url, rows=200, seed=3) == {spec.table: 200 for spec in TOPICS}
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        stored = {
            spec.name: [dict(r) for r in conn.execute(sa.select(table_of(spec)).order_by(index_of(spec))).mappings()]
            for spec in TOPICS
        }
    engine.dispose()
    expected = list(generate_posts(200, seed=3))
    for spec in TOPICS:
        assert stored[spec.name] == [post[spec.name] for post in expected]


def test_seeding_again_adds_only_what_is_missing(tmp_path):
    url = f"sqlite:///{tmp_path / 'posts.db'}"
    seed(url, rows=300)
    assert seed(url, rows=300) == {spec.table: 0 for spec in TOPICS}
    assert counts(url) == {spec.table: 300 for spec in TOPICS}

    engine = sa.create_engine(url)
    geo = TABLES["geolocation_data"]
    with engine.begin() as conn:
        conn.execute(geo.delete().where(geo.c.ind.in_([0, 17])))
    engine.dispose()
    assert seed(url, rows=350) == {"pinterest_data": 50, "geolocation_data": 52, "user_data": 50}
    assert counts(url) == {spec.table: 350 for spec in TOPICS}


def test_seed_refuses_a_negative_row_count(tmp_path):
    with pytest.raises(ValueError):
        seed(f"sqlite:///{tmp_path / 'posts.db'}", rows=-1)


def test_seed_command_seeds_once(tmp_path, capsys):
    environ = {"PINTREST_HOME": str(tmp_path / "home")}
    assert seed_command(["--rows", "120", "--seed", "9"], environ) == 0
    out = capsys.readouterr().out
    assert "pinterest_data +120" in out and "user_data +120" in out and str(tmp_path / "home" / "pintrest.db") in out
    assert seed_command(["--rows", "120", "--seed", "9"], environ) == 0
    assert "pinterest_data +0, geolocation_data +0, user_data +0" in capsys.readouterr().out


def test_seed_command_takes_the_url_from_db_url_over_the_environment(tmp_path, capsys):
    environ = {"PINTREST_HOME": str(tmp_path / "home"), "PINTREST_DB_URL": f"sqlite:///{tmp_path / 'env.db'}"}
    assert seed_command(["--rows", "10", "--db-url", f"sqlite:///{tmp_path / 'flag.db'}"], environ) == 0
    assert (tmp_path / "flag.db").exists() and not (tmp_path / "env.db").exists()


@pytest.mark.parametrize(
    "url, problem",
    [
        (
            "mysql+pymysql://pin:s3cret-pw@127.0.0.1:1/pintrest",
            "cannot connect to mysql+pymysql://pin:***@127.0.0.1:1/pintrest",
        ),
        ("not a url s3cret-pw", "not a database URL"),
        ("foo://pin:s3cret-pw@host/db", "unknown database kind"),
    ],
)
@pytest.mark.parametrize("source", ["PINTREST_DB_URL", "--db-url"])
def test_a_bad_database_url_is_one_line_naming_the_setting(tmp_path, capsys, url, problem, source):
    environ = {"PINTREST_HOME": str(tmp_path / "home")}
    if source == "PINTREST_DB_URL":
        environ["PINTREST_DB_URL"] = url
        argv = ["--rows", "5"]
    else:
        argv = ["--rows", "5", "--db-url", url]
    assert seed_command(argv, environ) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"pintrest seed: {source}: ") and problem in captured.err
    assert captured.err.count("\n") == 1
    assert "s3cret-pw" not in captured.err and "Traceback" not in captured.err


def test_a_sqlite_path_that_cannot_be_a_directory_names_the_setting(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigError) as raised:
        seed(f"sqlite:///{tmp_path / 'file' / 'posts.db'}", rows=5)
    assert raised.value.setting == "PINTREST_DB_URL" and "cannot create" in str(raised.value)
