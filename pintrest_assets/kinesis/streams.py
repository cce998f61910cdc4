"""The pipeline's three Kinesis data streams: ``streaming-<user_id>-<topic>``, one per row of ``TOPICS``.

The original sends each post through an API Gateway Kinesis proxy to streams named
``streaming-<user_id>-pin``, ``-geo`` and ``-user``; ``ensure_streams`` creates whichever of them
are missing and waits until all are ACTIVE, on AWS or on a local server alike.
"""

from __future__ import annotations

import time
from typing import Any

from pintrest_assets.topics import TOPICS, TopicSpec

DEFAULT_REGION = "us-east-1"


def stream_name(user_id: str, spec: TopicSpec) -> str:
    """The Kinesis stream of one topic, e.g. ``streaming-<user_id>-pin`` (``TopicSpec.kinesis_stream``)."""
    return spec.kinesis_stream(user_id)


def stream_names(user_id: str) -> dict[str, str]:
    """The stream of each topic, by topic name: ``{"pin": "streaming-<user_id>-pin", ...}``."""
    return {spec.name: stream_name(user_id, spec) for spec in TOPICS}


def kinesis_client(
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    max_attempts: int = 10,
    read_timeout: float = 60.0,
) -> Any:
    """A boto3 Kinesis client. Without keys, boto3's own chain finds credentials (environment,
    profile, instance role); a local server (``endpoint_url`` given) accepts any, so dummy keys
    stand in when none are found. Throttling (``ProvisionedThroughputExceededException``) is
    retried with back-off, up to ``max_attempts`` attempts in all, each waiting ``read_timeout``
    seconds at most for an answer."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region or None,
    )
    if endpoint_url and access_key is None and session.get_credentials() is None:
        session = boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=region or None
        )
    return session.client(
        "kinesis",
        endpoint_url=endpoint_url or None,
        region_name=session.region_name or DEFAULT_REGION,
        config=Config(retries={"mode": "standard", "total_max_attempts": max_attempts}, read_timeout=read_timeout),
    )


def ensure_streams(
    client: Any,
    user_id: str,
    shard_count: int = 1,
    timeout: float = 300.0,
) -> dict[str, str]:
    """Create the streams of the three topics that do not exist yet (``shard_count`` shards
    each; existing streams keep theirs), then wait until every one is ACTIVE. Returns the stream
    of each topic, by topic name. Safe to call again, and from several processes at once."""
    names = stream_names(user_id)
    for name in names.values():
        create_stream(client, name, shard_count)
    wait_until_active(client, names.values(), timeout)
    return names


def create_stream(client: Any, name: str, shard_count: int = 1) -> bool:
    """Create stream ``name`` with ``shard_count`` shards if it does not exist; True if created."""
    try:
        client.describe_stream_summary(StreamName=name)
        return False
    except client.exceptions.ResourceNotFoundException:
        pass
    try:
        client.create_stream(StreamName=name, ShardCount=shard_count)
    except client.exceptions.ResourceInUseException:  # created meanwhile by another process
        return False
    return True


def wait_until_active(client: Any, names, timeout: float = 300.0) -> None:
    """Wait until every stream in ``names`` is ACTIVE (a new stream is CREATING for a while on
    AWS, a resharded one UPDATING; both accept no reshard meanwhile)."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    delay = 0.05
    while pending:
        status = {name: stream_status(client, name) for name in pending}
        pending = [name for name, state in status.items() if state != "ACTIVE"]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                "Kinesis streams not ACTIVE after {:.0f} s: {}".format(
                    timeout, ", ".join(f"{n} ({status[n]})" for n in pending)
                )
            )
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def stream_status(client: Any, name: str) -> str:
    """``CREATING``, ``ACTIVE``, ``UPDATING`` or ``DELETING``; ``MISSING`` if there is no such stream."""
    try:
        return client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
    except client.exceptions.ResourceNotFoundException:
        return "MISSING"
