"""``pintrest seed``: create and fill the sample posts database."""

from __future__ import annotations

import time

import click

from pintrest_assets.commands import pintrest_command, seconds


@pintrest_command(
    "seed",
    short_help="Create and fill the sample posts database.",
    help=(
        "Create pinterest_data, geolocation_data and user_data if missing and add the sample posts "
        "they lack (deterministic for a seed; running it again adds nothing)."
    ),
    verbose_help="Show Python's warnings",
)
# The defaults live with the sample's generator, which loads Faker: not for `--help`.
@click.option("--rows", type=click.IntRange(min=0), help="Posts to have (default: the whole sample).")
@click.option("--seed", type=int, help="Random seed (default: the sample's own).")
@click.option("--db-url", metavar="URL", help="SQLAlchemy URL of the database (default: PINTREST_DB_URL).")
def command(settings, verbose: bool, rows: int | None, seed: int | None, db_url: str | None) -> int:
    from pintrest_assets.database.generate import DEFAULT_ROWS, DEFAULT_SEED
    from pintrest_assets.database.seed import seed as seed_database
    from pintrest_assets.settings import redact_url

    rows = DEFAULT_ROWS if rows is None else rows
    seed = DEFAULT_SEED if seed is None else seed
    url, setting = (db_url, "--db-url") if db_url else (settings.db_url, "PINTREST_DB_URL")
    started = time.perf_counter()
    inserted = seed_database(url, rows=rows, seed=seed, setting=setting)  # a ConfigError names `setting`
    counts = ", ".join(f"{table} +{n}" for table, n in inserted.items())
    print(f"seeded {redact_url(url)}: {counts} ({seconds(time.perf_counter() - started)})")
    return 0
