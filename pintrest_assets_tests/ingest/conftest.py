import pytest

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.gateway import Gateway
from pintrest_assets.resources.database import PostsDatabase
from pintrest_assets.resources.rest_proxy import RestProxyResource
from pintrest_assets.sample_data.seed import seed


@pytest.fixture(scope="module")
def seeded_db_url(tmp_path_factory):
    """A SQLite sample database of 2,000 posts, shared by a module's tests (they only read it)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'posts.db'}"
    seed(url, rows=2000)
    return url


@pytest.fixture
def gateway(tmp_path):
    """A local gateway on a free port, landing 100 records per object into a directory bucket."""
    with Gateway(LocalBucket(tmp_path / "bucket"), tmp_path / "gateway", port=0, flush_size=100, fsync=False) as gw:
        yield gw


@pytest.fixture
def database(seeded_db_url):
    return PostsDatabase(url=seeded_db_url)


@pytest.fixture
def rest_proxy(gateway):
    return RestProxyResource(url=gateway.url, user_id="tester", backoff_seconds=0.01)
