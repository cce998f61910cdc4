"""Fixtures for every test folder.

Keeps every test away from the user's ./.pintrest (settings default to a temporary home), and
gives an S3 HTTP API (moto's server), a kinesalite server (Kinesis) and scratch databases: a
SQLite file, a MariaDB database and a PostgreSQL database, on private servers the tests start
(pintrest_assets_tests/servers.py).
``PINTREST_TEST_MYSQL_URL`` points the MySQL tests at an existing server's database instead.

A test whose server is not installed is skipped, with the command that installs it; with
``PINTREST_TEST_NO_SKIP=1`` (as in CI) every skip is a failure instead.
"""

import atexit
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from moto.server import ThreadedMotoServer
from sqlalchemy.engine import make_url

from pintrest_assets.bucket import LocalBucket, S3Bucket
from pintrest_assets.database.resource import PostsDatabase
from pintrest_assets.database.seed import seed
from pintrest_assets.gateway import Gateway
from pintrest_assets.kafka.client import RestProxyResource
from pintrest_assets.kinesis.local_server import LocalKinesis
from pintrest_assets.kinesis.streams import kinesis_client
from pintrest_assets_tests import servers
from pintrest_assets_tests.gateway.helpers import GatewayProcess
from pintrest_assets_tests.net import free_port

_HOME = tempfile.mkdtemp(prefix="pintrest-tests-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
for _name in [n for n in os.environ if n.startswith("PINTREST_") and not n.startswith("PINTREST_TEST_")]:
    del os.environ[_name]
os.environ["PINTREST_HOME"] = _HOME
os.environ.pop("DAGSTER_HOME", None)

pytest_plugins = ["pytester"]  # test_servers.py runs pytest on small test files


@pytest.fixture(autouse=True)
def quiet_by_default(monkeypatch):
    """Each test starts quiet: a command run in-process with --verbose sets PINTREST_VERBOSE for
    the processes it starts, which would otherwise leak into later tests' subprocesses."""
    monkeypatch.setenv("PINTREST_VERBOSE", "0")


@pytest.fixture(autouse=True)
def no_http_proxy(monkeypatch):
    """An HTTP(S)_PROXY in the environment must not swallow requests to the tests' local servers."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def pintrest_home(tmp_path, monkeypatch):
    """A fresh PINTREST_HOME for one test."""
    monkeypatch.setenv("PINTREST_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


NO_SKIP = "PINTREST_TEST_NO_SKIP"


def _no_skip() -> bool:
    return os.environ.get(NO_SKIP, "") not in ("", "0")


def _skip_as_failure(report):
    """With PINTREST_TEST_NO_SKIP=1, a skipped report (not an expected failure) becomes a failure."""
    if report.skipped and not hasattr(report, "wasxfail") and _no_skip():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{NO_SKIP}=1 forbids skipping. {reason}"
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Tests marked ``kinesis`` run kinesalite, which needs Node.js and npm."""
    if item.get_closest_marker("kinesis") and not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("Node.js and npm are not installed (kinesalite needs them): run `sudo make test-system`")


# Every way to skip ends in one of these reports: a marker, a fixture or pytest.skip() in a test's
# set-up or call (runtest), and pytest.skip(allow_module_level=True) or importorskip (collection).
# tryfirst: the outermost wrapper, which sees the report after xfail has been told from skip.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    return _skip_as_failure((yield))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(collector):
    return _skip_as_failure((yield))


def _start(server: servers.Server):
    """Starts ``server``, or skips the test when its binaries are not installed."""
    try:
        server.start()
    except servers.NotInstalled as exc:
        pytest.skip(str(exc))
    return server


@pytest.fixture(scope="session")
def mysql_server_url():
    """A database on a private MariaDB server for the session (or PINTREST_TEST_MYSQL_URL's).

    Its user may create and drop the databases whose names start with the database's.
    """
    url = os.environ.get("PINTREST_TEST_MYSQL_URL")
    if url:
        yield url
        return
    server = _start(servers.MariaDB())
    try:
        yield server.url
    finally:
        server.stop()


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
            f"cannot create a scratch database {name} on the test server"
            f" (its user needs CREATE on {server.database}*): {exc.orig}"
        )
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted}"))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_server_url():
    """A database on a private PostgreSQL server for the session; its user may create databases."""
    server = _start(servers.PostgreSQL())
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server_url: str):
    """A new empty PostgreSQL database for one test (``<test database>_<random>``), dropped afterwards."""
    server = make_url(postgres_server_url)
    name = f"{server.database}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")  # CREATE DATABASE: no transaction
    quoted = admin.dialect.identifier_preparer.quote(name)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
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


@pytest.fixture(scope="session")
def kinesalite(tmp_path_factory) -> LocalKinesis:
    """A kinesalite server on a free loopback port for the session, its LevelDB in a temporary
    directory (tests that use it are marked ``kinesis``: it needs Node.js and npm)."""
    server = LocalKinesis(tmp_path_factory.mktemp("kinesalite") / "data", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kinesis(kinesalite):
    """A boto3 Kinesis client of the session's kinesalite."""
    return kinesis_client(kinesalite.endpoint_url, "us-east-1")


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


# Gateways, buckets and the posts database, for the gateway, Kafka, emulation and command tests.

@pytest.fixture
def bucket(tmp_path) -> LocalBucket:
    return LocalBucket(tmp_path / "bucket")


@pytest.fixture
def start_gateway(tmp_path, bucket):
    """Start gateways on free ports (same state dir unless told otherwise); all shut down at the end."""
    started = []

    def start(**kwargs) -> Gateway:
        kwargs.setdefault("bucket", bucket)
        kwargs.setdefault("state_dir", tmp_path / "state")
        kwargs.setdefault("port", 0)
        kwargs.setdefault("fsync", False)  # the crash tests run with fsync on; here it only costs time
        gateway = Gateway(**kwargs).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.shutdown()


@pytest.fixture
def gateway(start_gateway) -> Gateway:
    return start_gateway()


@pytest.fixture
def s3_bucket(moto_endpoint_url, s3_bucket_name) -> S3Bucket:
    return S3Bucket(boto3.client("s3", endpoint_url=moto_endpoint_url), s3_bucket_name, "landing")


@pytest.fixture
def gateway_process(tmp_path):
    """Start gateway subprocesses; any still running at the end is killed."""
    processes = []

    def start(*args: str, home: Path | None = None, env: dict[str, str] | None = None) -> GatewayProcess:
        process = GatewayProcess(home or tmp_path / "home", *args, env=env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.proc.poll() is None:
            process.kill()


@pytest.fixture(scope="module")
def seeded_db_url(tmp_path_factory):
    """A SQLite sample database of 2,000 posts, shared by a module's tests (they only read it)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'posts.db'}"
    seed(url, rows=2000)
    return url


@pytest.fixture
def database(seeded_db_url):
    return PostsDatabase(url=seeded_db_url)


@pytest.fixture
def rest_proxy(gateway):
    return RestProxyResource(url=gateway.url, user_id="tester", backoff_seconds=0.01)


@pytest.fixture(scope="module")
def spark():
    """A local Spark session for one test module (started here unless one is running already).

    The source's Python workers must run this interpreter (the project's Spark settings do not
    say which one); ``register`` also sees to it for a session started without it. They run it
    through the launcher the project's sessions use (``worker_python``), which spares each of
    them compiling Spark's pyspark zip.
    """
    from pyspark.sql import SparkSession

    from pintrest_assets.lake import jvm_archive
    from pintrest_assets.lake.worker_python import worker_python

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", worker_python())
    running = SparkSession.getActiveSession() or SparkSession._instantiatedSession
    session = running or (
        SparkSession.builder.master("local[2]")
        .appName("pintrest-kinesis-tests")
        .config(
            "spark.driver.extraJavaOptions",
            f"-XX:TieredStopAtLevel=1 -XX:+UseSerialGC {jvm_archive.java_options()}".strip(),
        )
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "ERROR")
        .getOrCreate()
    )
    yield session
    if running is None:
        session.stop()
