"""Fixtures for every test folder.

Keeps every test away from the user's ./.pintrest (settings default to a temporary home), and
gives an S3 HTTP API (moto's server) and scratch databases: a SQLite file, and a MySQL/MariaDB database when one is configured. The
MySQL tests need ``PINTREST_TEST_MYSQL_URL`` (``eval "$(bash .ci/mariadb.sh)"`` sets it); without
it they are skipped, unless ``PINTREST_REQUIRE_MYSQL=1`` (as in CI), which makes them fail instead.
"""

import logging
import os
import tempfile
import uuid

import boto3
import pytest
import sqlalchemy as sa
from moto.server import ThreadedMotoServer
from sqlalchemy.engine import make_url

_HOME = tempfile.mkdtemp(prefix="pintrest-tests-")
for _name in [n for n in os.environ if n.startswith("PINTREST_") and not n.startswith("PINTREST_TEST_")]:
    if _name != "PINTREST_REQUIRE_MYSQL":
        del os.environ[_name]
os.environ["PINTREST_HOME"] = _HOME
os.environ.pop("DAGSTER_HOME", None)


@pytest.fixture
def pintrest_home(tmp_path, monkeypatch):
    """A fresh PINTREST_HOME for one test."""
    monkeypatch.setenv("PINTREST_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def mysql_server_url() -> str:
    """The URL of the test server's database, from PINTREST_TEST_MYSQL_URL."""
    url = os.environ.get("PINTREST_TEST_MYSQL_URL")
    if not url:
        how = 'run `eval "$(bash .ci/mariadb.sh)"` to set it'
        if os.environ.get("PINTREST_REQUIRE_MYSQL") == "1":
            pytest.fail(f"PINTREST_REQUIRE_MYSQL=1 but PINTREST_TEST_MYSQL_URL is not set: {how}")
        pytest.skip(f"PINTREST_TEST_MYSQL_URL is not set: {how}")
    return url


@pytest.fixture
def mysql_url(mysql_server_url: str):
    """A new empty database for one test (``<test database>_<random>``), dropped afterwards.

    Its own database, so that parallel test runs on one server never see each other's tables.
    Its default character set is latin1, as on many MySQL servers: tables must ask for utf8mb4.
    """
    server = make_url(mysql_server_url)
    name = f"{server.database}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server)
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {quoted} CHARACTER SET latin1"))
    except sa.exc.DBAPIError as exc:
        admin.dispose()
        pytest.fail(
            f"cannot create a scratch database {name} on the test server (.ci/mariadb.sh grants it): {exc.orig}"
        )
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request, tmp_path) -> str:
    """An empty database: a SQLite file, then a scratch MySQL/MariaDB database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'posts.db'}"
    return request.getfixturevalue("mysql_url")


@pytest.fixture(scope="session")
def moto_endpoint_url():
    """A moto S3 server on a free loopback port, for the whole session (each test makes its own bucket)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    """Dummy credentials for moto, also inherited by subprocesses."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_bucket_name(moto_endpoint_url, aws_env) -> str:
    """A fresh, empty S3 bucket on the moto server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint_url).create_bucket(Bucket=name)
    return name
