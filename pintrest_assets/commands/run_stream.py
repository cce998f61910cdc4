"""``pintrest run --stream``: the streaming half of the pipeline end to end.

The same database and gateway as the batch half (``commands/run.py``), the gateway's
Kinesis-proxy routes putting records into the embedded kinesalite or the configured Kinesis; one
emulation batch through the Kinesis proxy into the three Kinesis streams (``kinesis_streams``);
the three stream tables read from them by Spark Structured Streaming with
``trigger(availableNow=True)`` (or, with the streaming service running, by the service: the
refresh waits for it to commit what was sent); and their reconciliation checks. A summary per
stream goes to ``$PINTREST_HOME/stream_run_summary.json``. Exits non-zero if a record was
refused, if the records read differ from the rows plus the quarantined records, or if a check
fails (the stream tables do not hold exactly the records the proxy acknowledged).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pintrest_assets.commands import seconds
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

# What the gateway's status says while its Kinesis starts (``KinesisStack.attach``).
KINESIS_STARTING = "Kinesis is starting"
STREAM_COLUMNS = ("sent", "failed", "records_read", "rows_read", "quarantined", "rows_total")


def run_stream(settings: Settings, verbose: bool, posts: int, seed: int | None) -> int:
    """``pintrest run --stream``: see the module's documentation."""
    from pintrest_assets import run_summary
    from pintrest_assets.gateway.process import local_gateway

    prepare_database(settings)
    pipeline = StreamPipeline(settings, verbose)
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
    path = write_summary(settings, "stream_run_summary.json", summary)
    print(render_streams(streams.values()))
    print(
        "\nA stream table holds every record read, one row each: a post the emulation drew twice is two rows "
        "(the batch path's cleaned tables keep one)."
    )
    print(f"summary written to {path}")
    return report_problems(stream_problems(summary))


class StreamPipeline(Stages):
    """The streaming half's stages: the Kinesis streams, the stream tables and their checks."""

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
        by_service = False
        for attempt in range(passes):
            if attempt:
                time.sleep(2.0)
            result = self._materialize("stream tables", [spec.stream_table_asset for spec in TOPICS])
            for spec in TOPICS:
                table = metadata(result, spec.stream_table_asset)
                by_service = by_service or table.get("appended_by") == "stream service"
                streams[spec.name]["table"] = table["table"]
            took_in(streams, before, self.stream_states())
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


def took_in(streams: dict[str, dict], before: dict, after: dict) -> None:
    """Sets in each of ``streams`` what its table took in between the states ``before`` and
    ``after`` (records read, rows, quarantined, micro-batches), and what it holds in all."""
    for name, stream in streams.items():
        old, new = before[name], after[name]
        stream["records_read"] = new.records_read - old.records_read
        stream["rows_read"] = new.rows - old.rows
        stream["quarantined"] = new.quarantined - old.quarantined
        stream["micro_batches"] = (new.batch_id if new.batch_id is not None else -1) - (
            old.batch_id if old.batch_id is not None else -1
        )
        stream["records_read_total"] = new.records_read
        stream["rows_total"] = new.rows
        stream["quarantined_total"] = new.quarantined


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
