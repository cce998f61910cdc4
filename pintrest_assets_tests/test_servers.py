"""The private database servers (servers.py) and the setting that forbids skipping (conftest.py)."""

import os

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pintrest_assets_tests import servers


def _scalar(url: str, query: str):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar_one()
    finally:
        engine.dispose()


def test_postgres_url_is_an_empty_database_of_its_own(postgres_url):
    assert _scalar(postgres_url, "select 1") == 1
    assert _scalar(postgres_url, "select current_database()") == make_url(postgres_url).database
    assert _scalar(postgres_url, "select count(*) from pg_tables where schemaname = 'public'") == 0


@pytest.mark.mysql
def test_mysql_url_is_an_empty_database_of_its_own(mysql_url):
    assert _scalar(mysql_url, "select 1") == 1
    assert _scalar(mysql_url, "select database()") == make_url(mysql_url).database
    assert _scalar(mysql_url, "select count(*) from information_schema.tables where table_schema = database()") == 0


@pytest.mark.parametrize("server_class", [servers.MariaDB, servers.PostgreSQL])
def test_a_server_runs_unprivileged_and_leaves_nothing_behind(server_class):
    server = server_class()
    try:
        server.start()
    except servers.NotInstalled as exc:
        pytest.skip(str(exc))
    process, directory = server._process, server.directory
    try:
        assert os.stat(f"/proc/{process.pid}").st_uid != 0  # as root: the system user, or nobody
        assert _scalar(server.url, "select 1") == 1
    finally:
        server.stop()
    assert process.poll() is not None
    assert not directory.exists()


@pytest.mark.parametrize("server_class", [servers.MariaDB, servers.PostgreSQL])
def test_without_the_binaries_the_error_names_the_command_that_installs_them(server_class, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(servers, "SBIN_DIRS", [])
    monkeypatch.setattr(servers, "POSTGRES_DIRS", str(tmp_path / "postgresql/*/bin"))
    with pytest.raises(servers.NotInstalled, match=r"is not installed.*: run `sudo make test-system`"):
        server_class().start()


_TESTS = """
import pytest

@pytest.fixture
def server():
    pytest.skip("mariadbd is not installed: run `sudo make test-system`")

def test_fixture(server):
    pass

@pytest.mark.skip(reason="marker")
def test_marker():
    pass

@pytest.mark.skipif(True, reason="condition")
def test_skipif():
    pass

def test_call():
    pytest.skip("call")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

def test_passes():
    pass
"""


@pytest.fixture
def skipping_tests(pytester, monkeypatch):
    """A pytest run of tests that skip in every way, with this project's hooks."""
    monkeypatch.delenv("PINTREST_TEST_NO_SKIP", raising=False)
    pytester.makeconftest(
        "from pintrest_assets_tests.conftest import pytest_make_collect_report, pytest_runtest_makereport"
    )
    pytester.makepyfile(test_skips=_TESTS)
    pytester.makepyfile(test_module_skip='import pytest\npytest.skip("module", allow_module_level=True)\n')
    return pytester


def test_tests_skip_by_default(skipping_tests):
    result = skipping_tests.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=5, xfailed=1)
    result.stdout.fnmatch_lines(["*mariadbd is not installed: run `sudo make test-system`*"])


def test_no_skip_setting_turns_every_skip_into_a_failure(skipping_tests, monkeypatch):
    monkeypatch.setenv("PINTREST_TEST_NO_SKIP", "1")
    result = skipping_tests.runpytest("-p", "no:cacheprovider", "test_skips.py")
    # Skips in a test's set-up (fixture, markers) count as errors, in its call as a failure.
    result.assert_outcomes(passed=1, failed=1, errors=3, xfailed=1)
    result.stdout.fnmatch_lines(["*PINTREST_TEST_NO_SKIP=1 forbids skipping*mariadbd is not installed*"])

    result = skipping_tests.runpytest("-p", "no:cacheprovider", "test_module_skip.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*PINTREST_TEST_NO_SKIP=1 forbids skipping*module*"])
