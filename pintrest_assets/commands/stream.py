"""``pintrest stream``: the streaming service. The three stream tables' Structured Streaming
queries run continuously in one Spark session, a micro-batch every ``--trigger-seconds``, each
committed micro-batch recorded in the project's Dagster instance as a materialisation of its
table (no run), and the tables compacted every ``--maintain-seconds``. Ctrl-C (or SIGTERM, to
its process or its group) stops it; a SIGKILL loses nothing either (the next start replays the
batch it was in, and the table skips it if committed). ``pintrest dev`` starts it beside the
gateway and the UI.
"""

from __future__ import annotations

import signal
import threading

import click

from pintrest_assets.commands import pintrest_command


@pintrest_command(
    "stream",
    short_help="Run the streaming service: stream tables fresh within seconds.",
    help=(
        "Run the three stream tables' Structured Streaming queries continuously, in one Spark session, a "
        "micro-batch every --trigger-seconds; record each micro-batch in the Dagster instance as a materialisation "
        "of its table and evaluate the reconciliation checks; compact the tables every --maintain-seconds. "
        "Ctrl-C stops it."
    ),
)
@click.option(
    "--trigger-seconds",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Processing-time trigger: a micro-batch at most this often, when records wait.",
)
@click.option(
    "--maintain-seconds",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Compact and vacuum each table this often (between two of its micro-batches).",
)
def command(settings, verbose: bool, trigger_seconds: float, maintain_seconds: float) -> int:
    from pintrest_assets.defs.stream.reporting import DagsterReporter
    from pintrest_assets.instance import project_instance
    from pintrest_assets.resources import resources_for
    from pintrest_assets.stream.service import StreamService
    from pintrest_assets.topics import TOPICS

    stop = threading.Event()

    def stop_now(signum, frame) -> None:
        stop.set()

    def on_signals() -> None:
        signal.signal(signal.SIGINT, stop_now)
        signal.signal(signal.SIGTERM, stop_now)

    def spark_session():
        session = resources["spark"].spark_session
        on_signals()  # again: pyspark's SparkContext replaced the SIGINT handler with its own
        return session

    on_signals()

    resources = resources_for(settings, resolve_secrets=True)
    resources["spark"].for_stream_tables_only()
    resources["spark"].for_a_service()
    if resources["spark"].is_local:
        # The JVM starts while the service opens the instance and waits for the lock and the
        # streams: the first micro-batch does not wait for it.
        resources["spark"].start_in_background(warm_up=False)
    instance = project_instance(settings)
    kinesis = resources["kinesis"]
    warehouse = resources["warehouse_io_manager"]
    reporter = DagsterReporter(instance, kinesis, log=_say)
    service = StreamService(
        list(TOPICS),
        kinesis,
        warehouse.base_dir,
        spark_session,
        trigger_seconds=trigger_seconds,
        maintain_seconds=maintain_seconds,
        maintain=lambda table: warehouse.maintain_stream_table(table.table),
        on_commit=reporter,
        log=_say,
    )
    _say(f"stream service: {kinesis.where()} -> {warehouse.base_dir}")
    try:
        code = service.run(stop)
    finally:
        reporter.close()
    _say(
        f"stream service stopped: {service.commits:,} micro-batches committed, {reporter.reported:,} recorded in "
        f"the Dagster instance"
    )
    return code


def _say(line: str) -> None:
    print(line, flush=True)
