"""The user posting emulation: draw random posts from the database, send them to the three topics.

The original sent one post at a time, one record per request. Here posts are drawn in chunks
(one bulk query per table) and each topic's records go out many per request, the three topics
in parallel; the records and topics are the same.

The same emulation drives either proxy client: ``RestProxyResource`` (Kafka topics, offsets by
partition number, named by ``topic_for(spec)``) or ``KinesisProxyResource`` (the streaming
half's Kinesis streams, sequence numbers by shard id, named by ``stream_for(spec)``). Both offer
``produce(name, values)``, which returns a ``ProduceResult`` (``proxy_client.py``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pintrest_assets.topics import TOPICS


@dataclass
class TopicTally:
    """What one topic's records became: acknowledged, failed, and where they landed in the log.

    ``topic`` is the Kafka topic or the Kinesis stream (``kind`` says which: "topic" or
    "stream"); ``offsets`` maps each Kafka partition (an int) or Kinesis shard id (a str) to
    the acknowledged offsets or sequence numbers (ints; Kinesis's have some 56 digits).
    """

    topic: str
    kind: str = "topic"
    sent: int = 0
    failed: int = 0
    retries: int = 0
    requests: int = 0
    # partition or shard -> acknowledged offsets; kept so a run can check each one landed.
    offsets: dict[int | str, list[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, result) -> None:
        self.sent += result.sent
        self.failed += len(result.failed)
        self.retries += result.retries
        self.requests += result.requests
        for partition, offset in result.offsets:
            self.offsets.setdefault(partition, []).append(offset)
        # Keep a few messages to show; the count above is complete.
        self.failures.extend(f"{f.error_code}: {f.message}" for f in result.failed[: max(0, 5 - len(self.failures))])

    def mark(self) -> TallyMark:
        """How far the tally has got, for ``since``."""
        return TallyMark(
            self.sent,
            self.failed,
            self.retries,
            self.requests,
            {partition: len(offsets) for partition, offsets in self.offsets.items()},
            len(self.failures),
        )

    def since(self, mark: TallyMark) -> TopicTally:
        """What was acknowledged after ``mark``, as a tally of its own: the counts since, and the
        offsets acknowledged since (each partition's list only grows, in the order acknowledged)."""
        offsets = {}
        for partition, acknowledged in self.offsets.items():
            new = acknowledged[mark.offsets.get(partition, 0) :]
            if new:
                offsets[partition] = new
        return TopicTally(
            self.topic,
            self.kind,
            sent=self.sent - mark.sent,
            failed=self.failed - mark.failed,
            retries=self.retries - mark.retries,
            requests=self.requests - mark.requests,
            offsets=offsets,
            failures=self.failures[mark.failures :],
        )

    @property
    def first_offset(self) -> int | None:
        return min((min(o) for o in self.offsets.values() if o), default=None)

    @property
    def last_offset(self) -> int | None:
        return max((max(o) for o in self.offsets.values() if o), default=None)


@dataclass(frozen=True)
class TallyMark:
    """How far a ``TopicTally`` had got: its counts, how many offsets each partition (or shard)
    held, and how many failure examples."""

    sent: int = 0
    failed: int = 0
    retries: int = 0
    requests: int = 0
    offsets: dict[int | str, int] = field(default_factory=dict)
    failures: int = 0


@dataclass(frozen=True)
class ReportMark:
    """How far an ``EmulationReport`` had got, for ``EmulationReport.since``."""

    posts: int = 0
    missing: int = 0
    seconds: float = 0.0
    topics: dict[str, TallyMark] = field(default_factory=dict)


@dataclass
class EmulationReport:
    posts: int = 0
    missing: int = 0  # drawn indexes absent from one of the tables: skipped
    seconds: float = 0.0
    interrupted: bool = False
    error: Exception | None = None  # what stopped the emulation early; the counts are still right
    topics: dict[str, TopicTally] = field(default_factory=dict)

    @property
    def records_sent(self) -> int:
        return sum(t.sent for t in self.topics.values())

    @property
    def records_per_second(self) -> float:
        return self.records_sent / self.seconds if self.seconds > 0 else 0.0

    def mark(self) -> ReportMark:
        """How far the report has got, for ``since``."""
        return ReportMark(
            self.posts, self.missing, self.seconds, {name: tally.mark() for name, tally in self.topics.items()}
        )

    def since(self, mark: ReportMark | None) -> EmulationReport:
        """What happened after ``mark`` (None: from the start), as a report of its own: the posts
        drawn, seconds taken and records acknowledged since, each topic's offsets being those
        acknowledged since. Recorded one after another, such reports add up to this one."""
        mark = mark or ReportMark()
        return EmulationReport(
            posts=self.posts - mark.posts,
            missing=self.missing - mark.missing,
            seconds=self.seconds - mark.seconds,
            interrupted=self.interrupted,
            error=self.error,
            topics={name: tally.since(mark.topics.get(name, TallyMark())) for name, tally in self.topics.items()},
        )


def emulate(
    database,
    proxy,
    posts: int | None,
    *,
    rate: float | None = None,
    rng: random.Random | None = None,
    chunk_posts: int = 500,
    on_chunk: Callable[[EmulationReport, int], None] | None = None,
    stop: threading.Event | None = None,
) -> EmulationReport:
    """Send ``posts`` random posts (``None``: until ``stop`` is set) to the three topics
    through ``proxy``, a ``RestProxyResource`` or a ``KinesisProxyResource``.

    ``rate`` caps posts per second. ``on_chunk(report, posts_in_chunk)`` is called after each
    chunk is acknowledged (progress bars, records of the batch so far), with ``report.seconds``
    the time taken so far. Setting ``stop`` ends the emulation after the chunk in
    flight, whose acknowledgements are still counted, and the report says ``interrupted``; a
    request that fails for good stops it too, with the error in ``report.error``.
    """
    rng = rng or random.Random()
    stop = stop or threading.Event()
    kind = getattr(proxy, "sends_to", "topic")
    destination = proxy.stream_for if kind == "stream" else proxy.topic_for
    report = EmulationReport(topics={spec.name: TopicTally(destination(spec), kind) for spec in TOPICS})
    chunk_posts = max(1, min(chunk_posts, int(rate) if rate else chunk_posts))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(TOPICS), thread_name_prefix="produce") as pool:
        while not stop.is_set() and (posts is None or report.posts < posts):
            n = chunk_posts if posts is None else min(chunk_posts, posts - report.posts)
            draw = database.draw_posts(n, rng)
            pending = {
                spec.name: pool.submit(proxy.produce, destination(spec), [post[spec.name] for post in draw.posts])
                for spec in TOPICS
            }
            try:
                _collect(pending, report)
            except Exception as exc:  # noqa: BLE001 - reported to the caller with the counts so far
                report.error = exc
                break
            report.posts += n
            report.missing += draw.missing
            report.seconds = time.monotonic() - started
            if on_chunk:
                on_chunk(report, n)
            if rate:
                # Wait until the posts sent so far are due at the requested rate.
                ahead = report.posts / rate - (time.monotonic() - started)
                if ahead > 0:
                    stop.wait(ahead)
    report.interrupted = stop.is_set() and (posts is None or report.posts < posts)
    report.seconds = time.monotonic() - started
    return report


def _collect(pending: dict, report: EmulationReport) -> None:
    """Wait for each topic's requests and count what was acknowledged, even if one topic failed."""
    error = None
    for name, future in pending.items():
        try:
            report.topics[name].add(future.result())
        except Exception as exc:  # noqa: BLE001 - keep the partial acknowledgements, then re-raise
            partial = getattr(exc, "partial", None)
            if partial is not None:
                report.topics[name].add(partial)
            error = error or exc
    if error is not None:
        raise error
