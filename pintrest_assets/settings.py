"""Every setting of the project, read from the environment in one place.

The embedded default (a SQLite sample database, the local gateway, a local-directory bucket,
local Spark) needs no setting at all; each variable below points one part at real
infrastructure instead. A wrong value fails with a ``ConfigError`` that names the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

from pintrest_assets.topics import is_valid_topic_name


class ConfigError(Exception):
    """A setting is missing, malformed or points at something unreachable."""

    def __init__(self, setting: str, problem: str):
        self.setting = setting
        super().__init__(f"{setting}: {problem}")


DEFAULT_REST_PROXY_URL = "http://127.0.0.1:8082"
DEFAULT_USER_ID = "pintrest"
# The Kinesis proxy's routes are served by the same local gateway as the REST proxy's.
DEFAULT_KINESIS_PROXY_URL = DEFAULT_REST_PROXY_URL
# PINTREST_KINESIS_ENDPOINT_URL=aws: AWS's own endpoint for the region boto3 finds.
KINESIS_ON_AWS = "aws"
DEFAULT_KINESIS_LOCAL_PORT = 4567


@dataclass(frozen=True)
class Settings:
    home: Path
    db_url: str
    db_url_is_secret: bool  # True when the URL came from the environment (it may hold a password)
    rest_proxy_url: str
    user_id: str
    bucket: str
    s3_endpoint_url: str | None
    spark_master: str
    spark_remote: str | None
    warehouse_dir: Path | None = None  # None: under ``home``
    # The streaming half. Clients send posts to the Kinesis proxy (API Gateway, or the local
    # gateway); the local gateway forwards them to the Kinesis endpoint: None is the embedded
    # kinesalite it starts itself, "aws" AWS's endpoint for boto3's region, else any URL.
    kinesis_proxy_url: str = DEFAULT_KINESIS_PROXY_URL
    kinesis_endpoint_url: str | None = None
    kinesis_local_port: int = DEFAULT_KINESIS_LOCAL_PORT
    # The Dagster instance's storage: None keeps it in files under the instance directory; a
    # PostgreSQL URL (PINTREST_DAGSTER_PG_URL, a secret) puts runs, events and schedules there.
    dagster_pg_url: str | None = None

    @property
    def warehouse(self) -> Path:
        """Where the Delta tables are: ``PINTREST_WAREHOUSE``, or ``<home>/warehouse``."""
        return self.warehouse_dir or self.home / "warehouse"

    @property
    def bucket_is_s3(self) -> bool:
        return self.bucket.startswith("s3://")

    @property
    def gateway_state(self) -> Path:
        return self.home / "gateway"

    @property
    def kinesis_dir(self) -> Path:
        """The embedded Kinesis server's directory: its LevelDB data, log and pid file."""
        return self.home / "kinesis"

    @property
    def kinesis_client_endpoint(self) -> str | None:
        """The ``endpoint_url`` for a boto3 Kinesis client: the embedded server's, the configured
        URL, or None (AWS's own endpoint, from the region)."""
        if self.kinesis_endpoint_url is None:
            return f"http://127.0.0.1:{self.kinesis_local_port}"
        if self.kinesis_endpoint_url == KINESIS_ON_AWS:
            return None
        return self.kinesis_endpoint_url

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("PINTREST_HOME") or ".pintrest").expanduser().resolve()

        db_url, db_url_is_secret = _db_url(env, home)
        rest_proxy_url = (env.get("PINTREST_REST_PROXY_URL") or DEFAULT_REST_PROXY_URL).rstrip("/")
        if urlparse(rest_proxy_url).scheme not in {"http", "https"} or not urlparse(rest_proxy_url).netloc:
            raise ConfigError(
                "PINTREST_REST_PROXY_URL", f"expected http(s)://host[:port][/stage], got {rest_proxy_url!r}"
            )

        user_id = env.get("PINTREST_USER_ID") or DEFAULT_USER_ID
        if not is_valid_topic_name(f"{user_id}.user"):
            raise ConfigError(
                "PINTREST_USER_ID", f"{user_id!r} does not make valid Kafka topic names ([a-zA-Z0-9._-])"
            )

        bucket = env.get("PINTREST_BUCKET") or str(home / "bucket")
        if bucket.startswith("s3://"):
            if len(urlparse(bucket).netloc) < 3:
                raise ConfigError("PINTREST_BUCKET", f"expected s3://bucket[/prefix], got {bucket!r}")
        elif "://" in bucket:
            raise ConfigError(
                "PINTREST_BUCKET", f"expected a directory or s3://bucket[/prefix], got {bucket!r}"
            )
        else:
            bucket = str(Path(bucket).expanduser().resolve())

        warehouse = env.get("PINTREST_WAREHOUSE") or None
        if warehouse and "://" in warehouse:
            # Spark would write the tables' files there, and stock Spark has no s3a:// (no jars).
            raise ConfigError(
                "PINTREST_WAREHOUSE",
                f"expected a directory (local, or a mount that Spark and Dagster both reach), got {warehouse!r}",
            )

        # Unset: the REST proxy's URL, since the local gateway serves both proxies on one port.
        kinesis_proxy_url = (env.get("PINTREST_KINESIS_PROXY_URL") or rest_proxy_url).rstrip("/")
        if urlparse(kinesis_proxy_url).scheme not in {"http", "https"} or not urlparse(kinesis_proxy_url).netloc:
            raise ConfigError(
                "PINTREST_KINESIS_PROXY_URL",
                f"expected http(s)://host[:port][/stage] (the local gateway, or an API Gateway stage), "
                f"got {kinesis_proxy_url!r}",
            )
        kinesis_endpoint_url = (env.get("PINTREST_KINESIS_ENDPOINT_URL") or "").strip().rstrip("/") or None
        if kinesis_endpoint_url is not None and kinesis_endpoint_url.lower() == KINESIS_ON_AWS:
            kinesis_endpoint_url = KINESIS_ON_AWS
        elif kinesis_endpoint_url is not None and (
            urlparse(kinesis_endpoint_url).scheme not in {"http", "https"} or not urlparse(kinesis_endpoint_url).netloc
        ):
            raise ConfigError(
                "PINTREST_KINESIS_ENDPOINT_URL",
                f"expected unset (the embedded kinesalite), 'aws', or http(s)://host[:port], got {kinesis_endpoint_url!r}",
            )
        kinesis_local_port = _port(env, "PINTREST_KINESIS_LOCAL_PORT", DEFAULT_KINESIS_LOCAL_PORT)
        dagster_pg_url = _postgres_url(env.get("PINTREST_DAGSTER_PG_URL") or None)

        return cls(
            home=home,
            db_url=db_url,
            db_url_is_secret=db_url_is_secret,
            rest_proxy_url=rest_proxy_url,
            user_id=user_id,
            bucket=bucket,
            s3_endpoint_url=env.get("PINTREST_S3_ENDPOINT_URL") or None,
            spark_master=env.get("PINTREST_SPARK_MASTER") or "local[*]",
            spark_remote=env.get("PINTREST_SPARK_REMOTE") or None,
            warehouse_dir=Path(warehouse).expanduser().resolve() if warehouse else None,
            kinesis_proxy_url=kinesis_proxy_url,
            kinesis_endpoint_url=kinesis_endpoint_url,
            kinesis_local_port=kinesis_local_port,
            dagster_pg_url=dagster_pg_url,
        )


def _postgres_url(url: str | None) -> str | None:
    """The URL with the psycopg2 driver that dagster-postgres installs: a bare ``postgresql://``
    would have SQLAlchemy look for psycopg 3."""
    if url is None:
        return None
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgresql", "postgres", "postgresql+psycopg2"}:
        raise ConfigError(
            "PINTREST_DAGSTER_PG_URL",
            f"expected postgresql://user:password@host:5432/database, got a {scheme or 'schemeless'} URL",
        )
    return f"postgresql+psycopg2://{rest}"


def _port(env, name: str, default: int) -> int:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(name, f"expected a TCP port (1-65535), got {text!r}")
    return int(text)


def _db_url(env, home: Path) -> tuple[str, bool]:
    if env.get("PINTREST_DB_URL"):
        return env["PINTREST_DB_URL"], True
    if env.get("PINTREST_DB_CREDS"):
        return db_url_from_creds_file(env["PINTREST_DB_CREDS"]), True
    return f"sqlite:///{home / 'pintrest.db'}", False


def db_url_from_creds_file(path: str | os.PathLike) -> str:
    """A MySQL URL from the original's ``db_creds.yaml`` (HOST, USER, PASSWORD, DATABASE, PORT)."""
    from sqlalchemy.engine import URL

    try:
        creds = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError("PINTREST_DB_CREDS", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("PINTREST_DB_CREDS", f"{path} is not valid YAML: {exc}") from None
    missing = [k for k in ("HOST", "USER", "PASSWORD", "DATABASE") if not isinstance(creds, dict) or k not in creds]
    if missing:
        raise ConfigError("PINTREST_DB_CREDS", f"{path} lacks {', '.join(missing)}")
    return URL.create(
        "mysql+pymysql",
        username=str(creds["USER"]),
        password=str(creds["PASSWORD"]),
        host=str(creds["HOST"]),
        port=int(creds.get("PORT") or 3306),
        database=str(creds["DATABASE"]),
        query={"charset": "utf8mb4"},
    ).render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    """A database URL fit for logs and metadata: the password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show nothing of it
        return "<unparseable url>"
