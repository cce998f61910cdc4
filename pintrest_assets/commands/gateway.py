"""``pintrest gateway``: the local gateway as a long-running command: the Kafka REST proxy and S3 sink,
and the Kinesis proxy."""

from __future__ import annotations

import errno
import logging
import os
import sys

import click

from pintrest_assets.commands import pintrest_command


class TopicName(click.ParamType):
    name = "NAME"

    def convert(self, value, param, ctx) -> str:
        from pintrest_assets.topics import is_valid_topic_name

        if not is_valid_topic_name(value):
            self.fail(f"{value!r} is not a valid Kafka topic name ([a-zA-Z0-9._-], 1-249 characters)", param, ctx)
        return value


@pintrest_command(
    "gateway",
    short_help="Serve the local Kafka REST proxy and S3 sink, and the Kinesis proxy.",
    help="Serve the Kafka REST Proxy v2 locally and land records in the bucket as the S3 sink does; serve the "
    "API Gateway Kinesis-proxy routes in front of the embedded kinesalite or PINTREST_KINESIS_ENDPOINT_URL "
    "(unless --no-kinesis).",
    verbose_help="Log every request, and Python's warnings",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; any but loopback needs PINTREST_REST_PROXY_API_KEY, then required as x-api-key.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8082, show_default=True, help="Port to listen on (0: any free one)."
)
@click.option(
    "--flush-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Records per landed object (flush.size).",
)
@click.option(
    "--rotate-interval-ms",
    type=click.IntRange(min=1),
    # A second: a record sent alone lands within it, so the sensors see it soon after; a steady
    # 10 posts a second still makes objects of 10 records, far fewer than the original's one each.
    default=1000,
    show_default=True,
    help="Land a partial object once it has been open this long.",
)
@click.option(
    "--no-auto-create",
    "auto_create_topics",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Refuse records for topics that do not exist (404, error 40401).",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    type=TopicName(),
    help="Create this topic at start (repeatable; with --no-auto-create, the topics that accept records).",
)
@click.option(
    "--kinesis/--no-kinesis",
    default=True,
    show_default=True,
    help="Serve the Kinesis-proxy routes (/streams/...) in front of the embedded kinesalite (needs Node.js) "
    "or PINTREST_KINESIS_ENDPOINT_URL.",
)
@click.option(
    "--no-fsync",
    "fsync",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Do not sync the log to disk before acknowledging (survives a crash, not a power cut).",
)
def command(
    settings,
    verbose: bool,
    host: str,
    port: int,
    flush_size: int,
    rotate_interval_ms: int,
    auto_create_topics: bool,
    topics: tuple[str, ...],
    kinesis: bool,
    fsync: bool,
) -> int:
    from pintrest_assets.bucket import open_bucket
    from pintrest_assets.kafka.broker import StateDirInUse
    from pintrest_assets.gateway.kinesis import KinesisStack
    from pintrest_assets.gateway.server import ApiKeyRequired, Gateway

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # --verbose: a line per request; without: what went wrong and what is retried.
    logging.getLogger("pintrest_assets.gateway").setLevel(logging.DEBUG if verbose else logging.NOTSET)
    bucket = open_bucket(settings.bucket, endpoint_url=settings.s3_endpoint_url)
    try:
        # A missing key fails before any network call.
        gateway = Gateway(
            bucket,
            settings.gateway_state,
            host=host,
            port=port,
            flush_size=flush_size,
            rotate_interval_ms=rotate_interval_ms,
            auto_create_topics=auto_create_topics,
            fsync=fsync,
            topics=list(topics),
            api_key=os.environ.get("PINTREST_REST_PROXY_API_KEY") or None,
        )
    except ApiKeyRequired as exc:
        return _fail(str(exc))
    try:
        next(iter(bucket.list("topics/")), None)
    except Exception as exc:
        return _fail(f"PINTREST_BUCKET: cannot reach {bucket.url}: {exc}")
    # Kinesis starts in the background once the gateway listens; until then its routes answer 503.
    stack = KinesisStack.from_settings(settings) if kinesis else None

    def announce(gw: Gateway) -> None:
        if stack is not None:
            stack.attach(gw)  # before the banner: a client that reads it finds Kinesis starting
        key = ", x-api-key required" if gw.requires_api_key else ""
        print(
            f"gateway listening on {gw.url}, landing in {bucket.url} (state in {settings.gateway_state}){key}",
            flush=True,
        )
        if stack is not None:
            print(f"Kinesis proxy routes forward to {stack.describe()}", flush=True)

    try:
        left = gateway.serve_forever(on_start=announce)
    except StateDirInUse as exc:
        return _fail(str(exc))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return _fail(f"port {port} on {host} is already in use; stop what runs there or pass --port")
        if exc.filename:  # the state directory
            return _fail(f"{exc.filename}: {exc.strerror}")
        return _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    finally:
        if stack is not None:
            stack.close()  # after the gateway: requests in flight are answered first
    if left:
        return _fail(
            f"{left} acknowledged records could not land in {bucket.url}; "
            f"they are kept in {settings.gateway_state} and land on the next start"
        )
    print("gateway stopped; every acknowledged record has landed", flush=True)
    return 0


def _fail(problem: str) -> int:
    print(f"pintrest gateway: {problem}", file=sys.stderr)
    return 1
