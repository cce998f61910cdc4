"""``pintrest seed``: create and fill the sample posts database."""

from __future__ import annotations

import argparse
import time

from pintrest_assets.sample_data.generate import DEFAULT_ROWS, DEFAULT_SEED
from pintrest_assets.sample_data.seed import seed
from pintrest_assets.settings import Settings, redact_url


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Create pinterest_data, geolocation_data and user_data if missing and add the sample posts "
        "they lack (deterministic for a seed; running it again adds nothing)."
    )
    parser.add_argument(
        "--rows", type=_non_negative, default=DEFAULT_ROWS, help=f"posts to have (default {DEFAULT_ROWS})"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--db-url", help="SQLAlchemy URL of the database (default: PINTREST_DB_URL)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    url, setting = (args.db_url, "--db-url") if args.db_url else (settings.db_url, "PINTREST_DB_URL")
    started = time.perf_counter()
    inserted = seed(url, rows=args.rows, seed=args.seed, setting=setting)  # a ConfigError names `setting`
    seconds = time.perf_counter() - started
    counts = ", ".join(f"{table} +{n}" for table, n in inserted.items())
    print(f"seeded {redact_url(url)}: {counts} ({seconds:.1f} s)")
    return 0


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value
