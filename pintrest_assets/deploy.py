"""The deployment files under ``deploy/``, with their ``${NAME}`` placeholders filled in.

    python -m pintrest_assets.deploy deploy/iam/s3-reader-policy.json
    python -m pintrest_assets.deploy deploy/iam/kinesis-proxy-policy.json ACCOUNT_ID=123456789012

The rendered file goes to standard output. Values come from the project's settings (the
environment, or ``.env``) and from ``NAME=VALUE`` arguments, which win:

- ``USER_ID``: ``PINTREST_USER_ID``;
- ``BUCKET``: the bucket of ``PINTREST_BUCKET`` (``s3://bucket[/prefix]``);
- ``TOPICS_DIR``: the S3 sink's ``topics.dir``, ``topics`` under ``PINTREST_BUCKET``'s prefix;
- ``REGION``: ``AWS_REGION`` or ``AWS_DEFAULT_REGION``;
- the rest (``GIVEN``) only from arguments: the account, the MSK cluster, the REST proxy's host.

A placeholder without a value is an error that names it and where its value comes from.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from pintrest_assets.kafka import sink_layout
from pintrest_assets.settings import ConfigError, Settings

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# The first segment of every key the S3 sink writes: its topics.dir.
TOPICS_DIR = sink_layout.object_key("t", 0, 0).split("/", 1)[0]

FROM_SETTINGS = {
    "USER_ID": "set PINTREST_USER_ID",
    "BUCKET": "set PINTREST_BUCKET=s3://bucket[/prefix]",
    "TOPICS_DIR": "set PINTREST_BUCKET=s3://bucket[/prefix]",
    "REGION": "set AWS_DEFAULT_REGION (or AWS_REGION)",
}
GIVEN = {
    "ACCOUNT_ID": "the AWS account id, 12 digits",
    "MSK_BOOTSTRAP_SERVERS": "the MSK cluster's IAM bootstrap brokers, host:9098,host:9098",
    "MSK_CLUSTER_NAME": "the MSK cluster's name",
    "MSK_CLUSTER_UUID": "the last part of the MSK cluster's ARN",
    "REST_PROXY_HOST": "the DNS name of the network load balancer in front of the REST proxy",
    "VPC_LINK_ID": "the id of the API Gateway VPC link to that load balancer",
}
# A value goes into JSON strings, YAML and properties files as it is: nothing that would need quoting.
_SAFE_VALUE = re.compile(r"^[^\s\"'\\${}]+$")


class MissingValues(Exception):
    """A deployment file names placeholders that have no value."""

    def __init__(self, source: str, missing: Sequence[str]):
        self.missing = list(missing)
        hints = "; ".join(_hint(name) for name in self.missing)
        super().__init__(f"{source} needs {', '.join(self.missing)}: {hints}")


def placeholders(text: str) -> set[str]:
    """The names of the ``${NAME}`` placeholders in ``text``."""
    return set(PLACEHOLDER.findall(text))


def settings_values(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The placeholder values that the settings (and the AWS region variables) determine."""
    env = os.environ if environ is None else environ
    values = {"USER_ID": settings.user_id}
    if settings.bucket_is_s3:
        url = urlparse(settings.bucket)
        prefix = url.path.strip("/")
        values["BUCKET"] = url.netloc
        values["TOPICS_DIR"] = f"{prefix}/{TOPICS_DIR}" if prefix else TOPICS_DIR
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        values["REGION"] = region
    return values


def render_text(text: str, values: Mapping[str, str], source: str = "the text") -> str:
    """``text`` with every placeholder replaced by its value; ``MissingValues`` if any has none."""
    missing = sorted(placeholders(text) - set(values))
    if missing:
        raise MissingValues(source, missing)
    for name in placeholders(text):
        if not _SAFE_VALUE.match(values[name]):
            raise ConfigError(name, f"{values[name]!r} has spaces, quotes, backslashes, $ or braces")
    return PLACEHOLDER.sub(lambda m: values[m[1]], text)


def render(
    path: str | os.PathLike,
    settings: Settings,
    given: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The file at ``path`` filled in from ``settings`` and ``given`` (which wins)."""
    values = settings_values(settings, environ) | dict(given or {})
    return render_text(Path(path).read_text(), values, str(path))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    files = [a for a in args if "=" not in a]
    if len(files) != 1 or "-h" in args or "--help" in args:
        print("usage: python -m pintrest_assets.deploy FILE [NAME=VALUE ...]", file=sys.stderr)
        print(__doc__, file=sys.stderr)
        return 0 if "-h" in args or "--help" in args else 2
    given = dict(a.split("=", 1) for a in args if "=" in a)
    from dotenv import load_dotenv

    load_dotenv(".env")  # as `pintrest` does: the environment wins
    try:
        text = render(files[0], Settings.from_env(), given)
    except OSError as exc:
        print(f"deploy: {files[0]}: {exc.strerror}", file=sys.stderr)
        return 2
    except (ConfigError, MissingValues) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _hint(name: str) -> str:
    if name in FROM_SETTINGS:
        return FROM_SETTINGS[name]
    return f"pass {name}=<{GIVEN.get(name, 'value')}>"


if __name__ == "__main__":
    sys.exit(main())
