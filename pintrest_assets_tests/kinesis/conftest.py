"""Fixtures for the Kinesis tests: new streams on the session's kinesalite (``conftest.py`` above)."""

from __future__ import annotations

import uuid

import pytest

from pintrest_assets.kinesis.streams import create_stream, wait_until_active


@pytest.fixture
def new_stream(kinesis):
    """``new_stream(shards=1) -> name``: a new ACTIVE stream on the session's kinesalite."""

    def make(shards: int = 1) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        create_stream(kinesis, name, shards)
        wait_until_active(kinesis, [name], timeout=30)
        return name

    return make
