"""``pintrest run``: the whole pipeline end to end, on the embedded default or on real infrastructure.

This module is the command and its batch half. Seeds the sample database if it is empty, starts
the local gateway when the REST proxy URL is local and nothing listens there, materialises the
topic streams through Dagster (so the run is in the instance the UI shows), waits until every
acknowledged record has landed in the bucket, then materialises the lake (raw JSON, DataFrames)
and the transform (cleaned tables, the answers), and writes a summary to
``$PINTREST_HOME/run_summary.json``. Exits non-zero if anything sent did not land, if the records
read differ from the rows plus the quarantined lines, or if an error-severity check fails.

Each stage prints one line as it finishes; Dagster's events go to the instance, and to the
terminal with ``--verbose``.

``pintrest run --stream`` runs the streaming half instead, ``commands/run_stream.py``. What the
two share (the database made ready, one Dagster run per stage, the emulation stage) is in
``commands/stages.py``.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import click

from pintrest_assets.commands import pintrest_command, seconds
from pintrest_assets.commands.stages import (
    StageFailed,
    Stages,
    metadata,
    prepare_database,
    report_problems,
    write_summary,
)

if TYPE_CHECKING:
    from pintrest_assets.settings import Settings


@pintrest_command(
    "run",
    short_help="Run the batch pipeline end to end, or with --stream the streaming half.",
    help=(
        "Seed the sample database if empty, start the local gateway if needed, emulate posts, wait until "
        "they land, read them into the DataFrames, clean them, answer the questions, run every check, "
        "and print and write a summary ($PINTREST_HOME/run_summary.json). Exits 1 if anything sent did not "
        "land or become a row, or an error-severity check failed. With --stream, the streaming half instead "
        "(summary in $PINTREST_HOME/stream_run_summary.json)."
    ),
)
@click.option("--posts", type=click.IntRange(min=1), default=1000, show_default=True, help="Posts to emulate.")
@click.option("--seed", type=int, help="Fix which posts are drawn.")
@click.option(
    "--stream",
    is_flag=True,
    help="Run the streaming half: posts through the Kinesis proxy into the Kinesis streams, read by Spark "
    "Structured Streaming into the stream tables, and their checks.",
)
@click.option(
    "--land-timeout",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the records to land.",
)
def command(settings: Settings, verbose: bool, posts: int, seed: int | None, stream: bool, land_timeout: float) -> int:
    if stream:
        from pintrest_assets.commands.run_stream import run_stream

        return run_stream(settings, verbose, posts, seed)
    return run_batch(settings, verbose, posts, seed, land_timeout)


def run_batch(settings: Settings, verbose: bool, posts: int, seed: int | None, land_timeout: float) -> int:
    """``pintrest run``: see the module's documentation."""
    from pintrest_assets import run_summary
    from pintrest_assets.gateway.process import local_gateway

    prepare_database(settings)
    pipeline = Pipeline(settings, verbose)
    try:
        with local_gateway(settings.rest_proxy_url, kinesis=False, quiet=not verbose) as started:
            url = settings.rest_proxy_url
            print(f"gateway started on {url}" if started else f"REST proxy: {url}")
            topics = pipeline.emulate(posts, seed)
            wait_until_landed(settings, topics, land_timeout)
        pipeline.lake(topics)
        pipeline.transform()
    except StageFailed as failed:
        print(f"pintrest run: {failed}", file=sys.stderr)
        return 1
    print(run_summary.render_checks(pipeline.checks), flush=True)
    summary = {"topics": topics, "checks": pipeline.checks, "answers": read_answers(settings)}
    path = write_summary(settings, "run_summary.json", summary)
    print(run_summary.render_table(summary["topics"].values()))
    print(run_summary.render_answers(summary["answers"]))
    print(f"\nsummary written to {path}")
    return report_problems(run_summary.problems(summary))


class Pipeline(Stages):
    """The batch half's stages: the topic streams, the lake, the transform."""

    def emulate(self, posts: int, seed: int | None) -> dict[str, dict]:
        """Materialises the topic streams: one emulation batch through the REST proxy."""
        from pintrest_assets import run_summary

        sent = self._emulation("topic_streams", lambda spec: spec.topic_asset, posts, seed, via="")
        return {name: run_summary.stream_summary(stream) for name, stream in sent.items()}

    def lake(self, topics: dict[str, dict]) -> None:
        """Mounts the landed objects and reads the new ones into the DataFrames; adds to ``topics``."""
        from pintrest_assets import run_summary
        from pintrest_assets.topics import TOPICS

        started = time.perf_counter()
        result = self._materialize("lake", [name for spec in TOPICS for name in (spec.raw_asset, spec.dataframe)])
        raw = {spec.name: metadata(result, spec.raw_asset) for spec in TOPICS}
        for spec in TOPICS:
            topics[spec.name].update(run_summary.lake_summary(raw[spec.name], metadata(result, spec.dataframe)))
        mounted = sum(r["new_objects"] for r in raw.values())
        rows = sum(topics[spec.name]["rows_read"] for spec in TOPICS)
        quarantined = sum(topics[spec.name]["quarantined"] for spec in TOPICS)
        print(
            f"mounted {mounted:,} new objects, read {rows:,} rows into "
            f"{', '.join(spec.dataframe for spec in TOPICS)}, {quarantined:,} quarantined "
            f"({seconds(time.perf_counter() - started)})",
            flush=True,
        )

    def transform(self) -> None:
        """Cleans the DataFrames and answers the questions."""
        from pintrest_assets.defs.transform.answers import ANSWERS
        from pintrest_assets.topics import TOPICS

        started = time.perf_counter()
        self._materialize("transform", [spec.clean_asset for spec in TOPICS] + [answer.name for answer in ANSWERS])
        print(
            f"cleaned {', '.join(spec.dataframe for spec in TOPICS)} and answered {len(ANSWERS)} questions "
            f"({seconds(time.perf_counter() - started)})",
            flush=True,
        )


def wait_until_landed(settings: Settings, topics: dict[str, dict], timeout: float) -> None:
    """Waits, with a progress bar, until the records acknowledged have landed in the bucket; adds ``landed``."""
    from tqdm import tqdm

    from pintrest_assets.bucket import open_bucket
    from pintrest_assets.emulation import landing

    bucket = open_bucket(settings.bucket, endpoint_url=settings.s3_endpoint_url)
    started = time.perf_counter()
    sent = sum(t["sent"] for t in topics.values())
    with tqdm(total=sent, unit="record", desc="landing", file=sys.stderr, leave=False, disable=None) as bar:

        def progress(landed: int, expected: int) -> None:
            bar.total, bar.n = expected, landed
            bar.refresh()

        landed = landing.wait_until_landed(
            bucket,
            {t["topic"]: t["offset_ranges"] for t in topics.values()},
            timeout=timeout,
            on_progress=progress,
        )
    for topic in topics.values():
        topic["landed"] = landed[topic["topic"]]
    total = sum(landed.values())
    late = f" of {sent:,}; the rest did not land within {timeout:g} s" if total < sent else ""
    print(f"landed {total:,} records in the bucket{late} ({seconds(time.perf_counter() - started)})", flush=True)


def read_answers(settings: Settings, preview_rows: int = 5) -> dict:
    """Each answer's question, row count and first rows, read back from the warehouse."""
    from pintrest_assets.defs.transform.answers import ANSWERS
    from pintrest_assets.resources import resources_for

    warehouse = resources_for(settings, resolve_secrets=True)["warehouse_io_manager"]
    answers = {}
    for answer in ANSWERS:
        table = warehouse.table(answer.name).read(warehouse.spark.spark_session)
        answers[answer.name] = {
            "number": answer.number,
            "question": answer.question,
            "rows": table.count(),
            "preview": [
                {k: v if isinstance(v, (int, float, str, type(None))) else str(v) for k, v in row.asDict().items()}
                for row in table.orderBy(*table.columns).limit(preview_rows).collect()
            ],
        }
    return answers
