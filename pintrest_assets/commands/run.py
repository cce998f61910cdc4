"""``pintrest run``: the whole pipeline end to end, on the embedded default or on real infrastructure.

Seeds the sample database if it is empty, starts the local gateway when the REST proxy URL is
local and nothing listens there, materialises the topic streams through Dagster (so the run is in
the instance the UI shows), waits until every acknowledged record has landed in the bucket, then
materialises the lake (raw JSON, DataFrames) and the transform (cleaned tables, the nine
answers), and writes a summary to ``$PINTREST_HOME/run_summary.json``. Exits non-zero if
anything sent did not land, if the records read differ from the rows plus the quarantined
lines, or if an error-severity check fails.

Each stage prints one line as it finishes; Dagster's events go to the instance, and to the
terminal with ``--verbose``.

``pintrest run --stream`` runs the streaming half instead: the same database and gateway (whose
Kinesis-proxy routes put records into the embedded kinesalite, or the configured Kinesis),
one emulation batch through the Kinesis proxy into the three Kinesis streams
(``kinesis_streams``), the three stream tables read from them by Spark Structured Streaming
with ``trigger(availableNow=True)`` (or, with the streaming service running, by the service: the
refresh waits for it to commit what was sent), and their reconciliation checks; a summary per stream goes
to ``$PINTREST_HOME/stream_run_summary.json``. Exits non-zero if a record was refused, if the
records read differ from the rows plus the quarantined records, or if a check fails (the stream
tables do not hold exactly the records the proxy acknowledged).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from pintrest_assets.commands import pintrest_command, seconds

if TYPE_CHECKING:
    import dagster as dg

    from pintrest_assets.settings import Settings


@pintrest_command(
    "run",
    short_help="Run the whole pipeline end to end.",
    help=(
        "Seed the sample database if empty, start the local gateway if needed, emulate posts, wait until "
        "they land, read them into the DataFrames, clean them, answer the nine questions, run every check, "
        "and print and write a summary ($PINTREST_HOME/run_summary.json). Exits 1 if anything sent did not "
        "land or become a row, or an error-severity check failed."
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
    import json

    from pintrest_assets import run_summary
    from pintrest_assets.gateway.process import local_gateway

    if stream:
        return run_stream(settings, verbose, posts, seed)
    prepare_database(settings)
    pipeline = Pipeline(settings, verbose)
    try:
        with local_gateway(settings.rest_proxy_url, kinesis=False, quiet=not verbose) as started:
            print(f"gateway started on {settings.rest_proxy_url}" if started else f"REST proxy: {settings.rest_proxy_url}")
            topics = pipeline.emulate(posts, seed)
            wait_until_landed(settings, topics, land_timeout)
        pipeline.lake(topics)
        pipeline.transform()
    except StageFailed as failed:
        print(f"pintrest run: {failed}", file=sys.stderr)
        return 1
    print(run_summary.render_checks(pipeline.checks), flush=True)
    summary = {"topics": topics, "checks": pipeline.checks, "answers": read_answers(settings)}

    path = settings.home / "run_summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(run_summary.render_table(summary["topics"].values()))
    print(run_summary.render_answers(summary["answers"]))
    print(f"\nsummary written to {path}")
    problems = run_summary.problems(summary)
    for problem in problems:
        print(f"pintrest run: {problem}", file=sys.stderr)
    return 1 if problems else 0


# --- the stages -------------------------------------------------------------------------------


def prepare_database(settings: Settings) -> None:
    """Seeds the sample database if it is empty; a database the user pointed at is only checked."""
    from pintrest_assets.settings import redact_url

    if settings.db_url_is_secret:
        from pintrest_assets.resources import database_for

        database_for(settings, resolve_secrets=True).check()  # never write sample data into it
        print(f"posts database: {redact_url(settings.db_url)}", flush=True)
        return
    from pintrest_assets.database.seed import seed_if_empty

    started = time.perf_counter()
    inserted = seed_if_empty(settings.db_url)
    if inserted is None:
        print(f"posts database: {redact_url(settings.db_url)}", flush=True)
    else:
        posts = max(inserted.values(), default=0)
        print(f"seeded the sample database: {posts:,} posts ({seconds(time.perf_counter() - started)})", flush=True)


class StageFailed(Exception):
    """A stage's Dagster run failed; its events are in the instance."""


class Pipeline:
    """The project's assets materialised from this process, into the project's instance.

    Each stage is one Dagster run; its events are stored in the instance and reach the terminal
    only with ``--verbose``. Check results gather in ``checks``.
    """

    def __init__(self, settings: Settings, verbose: bool):
        from pintrest_assets.definitions import defs
        from pintrest_assets.instance import project_instance

        self.settings = settings
        self.instance = project_instance(settings)
        self.job = defs.resolve_implicit_global_asset_job_def()
        self.verbose = verbose
        self.checks: dict[str, str] = {}

    def emulate(self, posts: int, seed: int | None) -> dict[str, dict]:
        """Materialises the topic streams: one emulation batch through the REST proxy."""
        from pintrest_assets import run_summary

        sent = self._emulation("topic_streams", lambda spec: spec.topic_asset, posts, seed, via="")
        return {name: run_summary.stream_summary(stream) for name, stream in sent.items()}

    def _emulation(self, op: str, asset_of, posts: int, seed: int | None, via: str) -> dict[str, dict]:
        """Materialises one emulation batch (``op``) and prints what it sent; each stream's metadata."""
        from pintrest_assets.topics import TOPICS

        started = time.perf_counter()
        result = self._materialize(
            "emulation", [asset_of(spec) for spec in TOPICS], {"ops": {op: {"config": {"posts": posts, "seed": seed}}}}
        )
        sent = {spec.name: _metadata(result, asset_of(spec)) for spec in TOPICS}
        acknowledged = sum(s["records_sent"] for s in sent.values())
        failed = sum(s["records_failed"] for s in sent.values())
        drawn = max(s["posts_drawn"] for s in sent.values())
        print(
            f"emulated {drawn:,} posts{via}: {acknowledged:,} records acknowledged"
            + (f", {failed:,} failed" if failed else "")
            + f" ({seconds(time.perf_counter() - started)})",
            flush=True,
        )
        return sent

    def lake(self, topics: dict[str, dict]) -> None:
        """Mounts the landed objects and reads the new ones into the DataFrames; adds to ``topics``."""
        from pintrest_assets import run_summary
        from pintrest_assets.topics import TOPICS

        started = time.perf_counter()
        result = self._materialize("lake", [name for spec in TOPICS for name in (spec.raw_asset, spec.dataframe)])
        raw = {spec.name: _metadata(result, spec.raw_asset) for spec in TOPICS}
        for spec in TOPICS:
            topics[spec.name].update(run_summary.lake_summary(raw[spec.name], _metadata(result, spec.dataframe)))
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
        """Cleans the DataFrames and answers the nine questions."""
        from pintrest_assets.defs.transform.answers import ANSWERS
        from pintrest_assets.topics import TOPICS

        started = time.perf_counter()
        self._materialize("transform", [spec.clean_asset for spec in TOPICS] + [answer.name for answer in ANSWERS])
        print(
            f"cleaned {', '.join(spec.dataframe for spec in TOPICS)} and answered {len(ANSWERS)} questions "
            f"({seconds(time.perf_counter() - started)})",
            flush=True,
        )

    def emulate_streams(self, posts: int, seed: int | None) -> dict[str, dict]:
        """Materialises the Kinesis streams: one emulation batch through the Kinesis proxy."""
        sent = self._emulation(
            "kinesis_streams", lambda spec: spec.kinesis_asset, posts, seed, via=" through the Kinesis proxy"
        )
        return {
            name: {
                "stream": s["stream"],
                "sent": s["records_sent"],
                "failed": s["records_failed"],
                "offset_ranges": s["offset_ranges"],
            }
            for name, s in sent.items()
        }

    def stream_states(self) -> dict:
        """Each stream table's state (records read, rows, quarantined so far), from its Delta log."""
        from pintrest_assets.stream.tables import StreamTable
        from pintrest_assets.topics import TOPICS

        settings = self.settings
        return {spec.name: StreamTable.for_user(settings.warehouse, spec, settings.user_id).state() for spec in TOPICS}

    def stream_tables(self, streams: dict[str, dict], before: dict, passes: int = 3) -> None:
        """Refreshes the stream tables and checks them; adds to ``streams`` what the tables took
        in since ``before`` (their states before the posts were sent).

        With the streaming service running (``pintrest stream``, ``pintrest dev``) the refresh
        waits for it to commit what had arrived; without, it runs the queries (availableNow).
        Either way what counts is what the tables hold now against ``before``. A query reads the
        records that arrived before it started, by Kinesis's arrival time against this machine's
        clock: a record acknowledged just before, stamped a little ahead by a Kinesis whose clock
        runs ahead, waits for the next run. So while a stream's table has read fewer records
        than were sent, the tables are refreshed again, ``passes`` times in all; the checks of
        the last refresh count.
        """
        from pintrest_assets.topics import TOPICS

        started = time.perf_counter()
        batches = 0
        by_service = False
        for attempt in range(passes):
            if attempt:
                time.sleep(2.0)
            result = self._materialize("stream tables", [spec.stream_table_asset for spec in TOPICS])
            for spec in TOPICS:
                table = _metadata(result, spec.stream_table_asset)
                batches += table["micro_batches"]
                by_service = by_service or table.get("appended_by") == "stream service"
                streams[spec.name]["table"] = table["table"]
            after = self.stream_states()
            for spec in TOPICS:
                stream, old, new = streams[spec.name], before[spec.name], after[spec.name]
                stream["records_read"] = new.records_read - old.records_read
                stream["rows_read"] = new.rows - old.rows
                stream["quarantined"] = new.quarantined - old.quarantined
                stream["micro_batches"] = (new.batch_id if new.batch_id is not None else -1) - (
                    old.batch_id if old.batch_id is not None else -1
                )
                stream["records_read_total"] = new.records_read
                stream["rows_total"] = new.rows
                stream["quarantined_total"] = new.quarantined
            if all(s["records_read"] >= s["sent"] for s in streams.values()):
                break
        read = sum(s["records_read"] for s in streams.values())
        rows = sum(s["rows_read"] for s in streams.values())
        quarantined = sum(s["quarantined"] for s in streams.values())
        batches = sum(s["micro_batches"] for s in streams.values())
        print(
            f"read {read:,} records from the Kinesis streams in {batches} micro-batches into "
            f"{', '.join(s['table'] for s in streams.values())}: {rows:,} rows, {quarantined:,} quarantined "
            + ("(by the stream service) " if by_service else "")
            + f"({seconds(time.perf_counter() - started)})",
            flush=True,
        )

    def _materialize(self, stage: str, asset_names: Iterable[str], run_config: dict | None = None):
        import dagster as dg
        from tqdm import tqdm

        from pintrest_assets import run_summary
        from pintrest_assets.settings import ConfigError

        run_id = str(uuid.uuid4())
        selection = [dg.AssetKey(name) for name in asset_names]
        steps = len(self.job.get_subset(asset_selection=set(selection)).graph.node_dict)
        # Every event is stored in the instance whatever the console shows: DEBUG with
        # --verbose, otherwise nothing (a failure is reported below, in one line) but a
        # progress bar of the steps done, on a terminal.
        loggers = {"console": {"config": {"log_level": "DEBUG" if self.verbose else "CRITICAL"}}}
        bar = tqdm(total=steps, unit="step", desc=stage, file=sys.stderr, leave=False, disable=self.verbose or None)
        self.instance.add_event_listener(run_id, lambda event: _advance(bar, event))
        try:
            result = self.job.execute_in_process(
                run_config={**(run_config or {}), "loggers": loggers},
                instance=self.instance,
                asset_selection=selection,
                run_id=run_id,
                tags={"pintrest/launched_by": "pintrest run", "pintrest/stage": stage},
            )
        except ConfigError:
            raise  # a setting: named in one line by the command
        except Exception as exc:
            raise StageFailed(
                f"the {stage} run failed: {type(exc).__name__}: {exc}\n"
                f"(run {run_id}: its events are in the Dagster instance; `pintrest dev` shows them, "
                f"--verbose prints them)"
            ) from exc
        finally:
            bar.close()
        for evaluation in result.get_asset_check_evaluations():
            name = f"{evaluation.asset_key.to_user_string()}/{evaluation.check_name}"
            self.checks[name] = run_summary.check_result(evaluation.passed, evaluation.severity.value)
        return result


def _advance(bar, event) -> None:
    """Moves a stage's progress bar on as its run's steps start and finish."""
    import dagster as dg

    if event.dagster_event is None:
        return
    if event.dagster_event.event_type == dg.DagsterEventType.STEP_START:
        bar.set_postfix_str(event.step_key, refresh=True)
    elif event.dagster_event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_SKIPPED):
        bar.update(1)


# --- the streaming half -----------------------------------------------------------------------

# What the gateway's status says while its Kinesis starts (``KinesisStack.attach``).
KINESIS_STARTING = "Kinesis is starting"
STREAM_COLUMNS = ("sent", "failed", "records_read", "rows_read", "quarantined", "rows_total")


def run_stream(settings: Settings, verbose: bool, posts: int, seed: int | None) -> int:
    """``pintrest run --stream``: see the module's documentation."""
    import json

    from pintrest_assets import run_summary
    from pintrest_assets.gateway.process import local_gateway

    prepare_database(settings)
    pipeline = Pipeline(settings, verbose)
    try:
        with local_gateway(settings.kinesis_proxy_url, quiet=not verbose) as started:
            url = settings.kinesis_proxy_url
            print(f"gateway started on {url}" if started else f"Kinesis proxy: {url}", flush=True)
            wait_for_kinesis(settings)
            before = pipeline.stream_states()
            streams = pipeline.emulate_streams(posts, seed)
            # Inside: the embedded Kinesis runs as long as the gateway does.
            pipeline.stream_tables(streams, before)
    except StageFailed as failed:
        print(f"pintrest run: {failed}", file=sys.stderr)
        return 1
    print(run_summary.render_checks(pipeline.checks), flush=True)
    summary = {"streams": streams, "checks": pipeline.checks}
    path = settings.home / "stream_run_summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(render_streams(streams.values()))
    print(
        "\nA stream table holds every record read, one row each: a post the emulation drew twice is two rows "
        "(the batch path's cleaned tables keep one)."
    )
    print(f"summary written to {path}")
    problems = stream_problems(summary)
    for problem in problems:
        print(f"pintrest run: {problem}", file=sys.stderr)
    return 1 if problems else 0


def wait_for_kinesis(settings: Settings, timeout: float = 300.0) -> None:
    """Waits until a local gateway's Kinesis-proxy routes have their Kinesis (the embedded
    kinesalite starts in the background, and its first start installs it); a remote proxy (API
    Gateway) is not asked."""
    from urllib.parse import urlparse

    import requests

    from pintrest_assets.gateway.process import LOCAL_HOSTS
    from pintrest_assets.settings import ConfigError

    if urlparse(settings.kinesis_proxy_url).hostname not in LOCAL_HOSTS:
        return
    url = settings.kinesis_proxy_url
    deadline = time.monotonic() + timeout
    reason = "no answer"
    while time.monotonic() < deadline:
        try:
            status = requests.get(f"{url}/status", timeout=5).json().get("kinesis")
        except (requests.RequestException, ValueError, AttributeError) as exc:
            status, reason = None, str(exc)
        if isinstance(status, dict):
            if status.get("ready"):
                print(f"Kinesis: {status.get('endpoint')}", flush=True)
                return
            reason = status.get("error") or "it has no Kinesis endpoint"
            # While the gateway starts its Kinesis it says so; anything else will not change.
            if not reason.startswith(KINESIS_STARTING):
                raise ConfigError("PINTREST_KINESIS_PROXY_URL", f"the gateway on {url} serves no Kinesis: {reason}")
        time.sleep(0.5)
    raise ConfigError(
        "PINTREST_KINESIS_PROXY_URL", f"the gateway on {url} serves no Kinesis after {timeout:g} s: {reason}"
    )


def render_streams(streams: Iterable[dict]) -> str:
    """One line per stream: sent, failed, records read, rows read, quarantined, rows in all."""
    lines = [f"{'stream':<28}" + "".join(f"{c:>14}" for c in STREAM_COLUMNS)]
    for stream in streams:
        lines.append(f"{stream['stream']:<28}" + "".join(f"{stream[c]:>14,}" for c in STREAM_COLUMNS))
    return "\n".join(lines)


def stream_problems(summary: dict) -> list[str]:
    """Why a streaming run failed: a record refused by the proxy, a record sent and not read, a
    record read that became neither a row nor a quarantined record, or a failed check (the
    reconciliation: the stream tables hold exactly the records the proxy acknowledged)."""
    found = []
    for name, s in summary["streams"].items():
        if s["failed"]:
            found.append(f"{name}: {s['sent']} sent, {s['failed']} failed")
        if s["records_read"] < s["sent"]:
            found.append(f"{name}: {s['sent']} records acknowledged, {s['records_read']} read from {s['stream']}")
        if s["rows_read"] + s["quarantined"] != s["records_read"]:
            found.append(
                f"{name}: {s['records_read']} records read, but {s['rows_read']} rows + {s['quarantined']} quarantined"
            )
        if s["rows_total"] + s["quarantined_total"] != s["records_read_total"]:
            found.append(
                f"{name}: {s['records_read_total']} records read in all, but {s['table']} holds "
                f"{s['rows_total']} rows + {s['quarantined_total']} quarantined"
            )
    found += [f"check {name} {state}" for name, state in summary["checks"].items() if state != "passed"]
    return found


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


def _metadata(result: dg.ExecuteInProcessResult, asset_name: str) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == asset_name:
            return {k: v.value for k, v in materialization.metadata.items()}
    raise KeyError(asset_name)
