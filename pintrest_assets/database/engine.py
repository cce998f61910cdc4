"""Opening the posts database, and saying clearly why it cannot be opened.

Every failure becomes a one-line ``ConfigError`` that names the setting the URL came from and
shows the URL with its password redacted.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pintrest_assets.settings import ConfigError, redact_url

URL_EXAMPLES = "sqlite:///path/to/pintrest.db or mysql+pymysql://user:password@host:3306/database"


def open_engine(url: str, setting: str) -> sa.Engine:
    """An engine for ``url``, or a ``ConfigError`` naming ``setting`` if the URL is unusable."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        # Say nothing of the value: an unparseable URL may still hold a password.
        raise ConfigError(setting, f"not a database URL; expected {URL_EXAMPLES}") from None
    try:
        # pool_pre_ping: a long-lived process survives MySQL closing idle connections.
        return sa.create_engine(parsed, pool_pre_ping=True, pool_recycle=3600)
    except sa.exc.NoSuchModuleError:
        raise ConfigError(
            setting, f"unknown database kind {parsed.drivername!r} in {redact_url(url)}; expected {URL_EXAMPLES}"
        ) from None
    except ImportError as exc:
        raise ConfigError(setting, f"the driver for {redact_url(url)} is not installed ({exc.name})") from None


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory SQLite."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def database_error(setting: str, url: str, exc: BaseException, doing: str = "cannot connect to") -> ConfigError:
    """A one-line ``ConfigError`` for a driver error, without the password or the SQL."""
    # The driver's own message (``orig``), not SQLAlchemy's, which appends the statement.
    reason = str(getattr(exc, "orig", None) or exc)
    try:
        password = make_url(url).password
    except sa.exc.ArgumentError:
        password = None
    if password:
        reason = reason.replace(str(password), "***")
    return ConfigError(setting, f"{doing} {redact_url(url)}: {' '.join(reason.split())}")
