"""Keeps every test away from the user's ./.pintrest: settings default to a temporary home."""

import os
import tempfile

import pytest

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
