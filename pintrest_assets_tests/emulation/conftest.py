"""The emulation tests' gateway: objects of 100 records, so that a few hundred posts land in several."""

import pytest

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.gateway import Gateway


@pytest.fixture
def gateway(tmp_path):
    """A local gateway on a free port, landing 100 records per object into a directory bucket."""
    with Gateway(LocalBucket(tmp_path / "bucket"), tmp_path / "gateway", port=0, flush_size=100, fsync=False) as gw:
        yield gw
