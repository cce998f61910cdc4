"""``pintrest gateway``: the local REST proxy and S3 sink as a long-running command."""

from __future__ import annotations

import argparse
import errno
import logging
import sys

from pintrest_assets.bucket import open_bucket
from pintrest_assets.gateway.broker import StateDirInUse
from pintrest_assets.gateway.server import Gateway
from pintrest_assets.settings import Settings
from pintrest_assets.topics import is_valid_topic_name


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8082, help="port to listen on (default 8082, 0 for any free one)")
    parser.add_argument(
        "--flush-size", type=_positive_int, default=100, help="records per landed object (flush.size, default 100)"
    )
    parser.add_argument(
        "--rotate-interval-ms",
        type=_positive_int,
        default=5000,
        help="land a partial object once it has been open this long (default 5000)",
    )
    parser.add_argument(
        "--no-auto-create",
        dest="auto_create_topics",
        action="store_false",
        help="refuse records for topics that do not exist (404, error 40401)",
    )
    parser.add_argument(
        "--topic",
        dest="topics",
        action="append",
        type=_topic_name,
        default=[],
        metavar="NAME",
        help="create this topic at start (repeatable; with --no-auto-create, the topics that accept records)",
    )
    parser.add_argument(
        "--no-fsync",
        dest="fsync",
        action="store_false",
        help="do not sync the log to disk before acknowledging (survives a crash, not a power cut)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the Kafka REST Proxy v2 locally and land records in the bucket as the S3 sink does."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bucket = open_bucket(settings.bucket, endpoint_url=settings.s3_endpoint_url)
    try:
        next(iter(bucket.list("topics/")), None)
    except Exception as exc:
        print(f"gateway: PINTREST_BUCKET: cannot reach {bucket.url}: {exc}", file=sys.stderr)
        return 1
    gateway = Gateway(
        bucket,
        settings.gateway_state,
        host=args.host,
        port=args.port,
        flush_size=args.flush_size,
        rotate_interval_ms=args.rotate_interval_ms,
        auto_create_topics=args.auto_create_topics,
        fsync=args.fsync,
        topics=args.topics,
    )

    def announce(gw: Gateway) -> None:
        print(f"gateway listening on {gw.url}, landing in {bucket.url} (state in {settings.gateway_state})", flush=True)

    try:
        left = gateway.serve_forever(on_start=announce)
    except StateDirInUse as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"gateway: port {args.port} on {args.host} is already in use; stop what runs there or pass --port",
                file=sys.stderr,
            )
        elif exc.filename:  # the state directory
            print(f"gateway: {exc.filename}: {exc.strerror}", file=sys.stderr)
        else:
            print(f"gateway: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if left:
        print(
            f"gateway: {left} acknowledged records could not land in {bucket.url}; "
            f"they are kept in {settings.gateway_state} and land on the next start",
            file=sys.stderr,
        )
        return 1
    print("gateway stopped; every acknowledged record has landed", flush=True)
    return 0


def _positive_int(text: str) -> int:
    return _int_in_range(text, 1, None)


def _port(text: str) -> int:
    return _int_in_range(text, 0, 65535)


def _int_in_range(text: str, low: int, high: int | None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(
            f"must be {low}-{high}, got {value}" if high else f"must be at least {low}, got {value}"
        )
    return value


def _topic_name(text: str) -> str:
    if not is_valid_topic_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid Kafka topic name ([a-zA-Z0-9._-], 1-249 characters)")
    return text
