"""Where each shard of a stream stands against what a stream table has read.

Kinesis has no call that answers a shard's newest sequence number, so "is there anything the
table has not read?" is asked the way a consumer would find out: a GetShardIterator after the
last sequence number the table read (``AFTER_SEQUENCE_NUMBER``; ``TRIM_HORIZON`` for a shard
it has not read), then one GetRecords with ``Limit=1``. Two calls per shard, whatever the
stream holds: cheap enough for a sensor every 10 seconds and a following run every 2 (Kinesis
allows five GetRecords a second per shard). The answer gives the first unread record, its arrival time, and Kinesis's
``MillisBehindLatest``: how far that record is behind the shard's tip (AWS reports it; kinesalite
always answers 0). How many records are unread is not knowable without reading them: the
reconciliation's count of records acknowledged minus records read stands in for it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

# GetRecords may answer an empty page before the records of a sparse shard (on AWS, with
# MillisBehindLatest > 0): the probe follows that many empty pages at most.
MAX_EMPTY_PAGES = 5


@dataclass(frozen=True)
class ShardPosition:
    """One shard against the table: the last record read, and the first one not read."""

    shard_id: str
    read_through: str | None  # sequence number of the last record read; None: none read yet
    next_sequence: str | None = None  # the first record not read; None: the table is at the tip
    next_arrival: float | None = None  # its ApproximateArrivalTimestamp (epoch seconds)
    millis_behind_latest: int | None = None  # GetRecords' figure for that page (0 on kinesalite)
    closed: bool = False  # a shard closed by a reshard

    @property
    def waiting(self) -> bool:
        """Whether records arrived that the table has not read."""
        return self.next_sequence is not None

    def waiting_seconds(self, now: float | None = None) -> float:
        """How long the first unread record has been waiting (0 when none is)."""
        if self.next_arrival is None:
            return 0.0
        return max(0.0, (now if now is not None else time.time()) - self.next_arrival)


def list_shards(client, stream: str) -> list[dict]:
    """Every shard the stream retains (ListShards, every page)."""
    page = client.list_shards(StreamName=stream)
    shards = list(page["Shards"])
    while page.get("NextToken"):
        page = client.list_shards(NextToken=page["NextToken"])
        shards.extend(page["Shards"])
    return shards


def unread(client, stream: str, positions: Mapping[str, str]) -> list[ShardPosition]:
    """Each shard of ``stream`` against ``positions`` (shard id -> last sequence number read)."""
    return [_probe(client, stream, shard, positions.get(shard["ShardId"])) for shard in list_shards(client, stream)]


def _probe(client, stream: str, shard: dict, read_through: str | None) -> ShardPosition:
    shard_id = shard["ShardId"]
    closed = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber") is not None
    if read_through is None:
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
    else:
        iterator = client.get_shard_iterator(
            StreamName=stream,
            ShardId=shard_id,
            ShardIteratorType="AFTER_SEQUENCE_NUMBER",
            StartingSequenceNumber=read_through,
        )
    iterator = iterator["ShardIterator"]
    behind = None
    for _ in range(MAX_EMPTY_PAGES):
        page = client.get_records(ShardIterator=iterator, Limit=1)
        behind = page.get("MillisBehindLatest")
        if page["Records"]:
            record = page["Records"][0]
            return ShardPosition(
                shard_id,
                read_through,
                next_sequence=record["SequenceNumber"],
                next_arrival=record["ApproximateArrivalTimestamp"].timestamp(),
                millis_behind_latest=behind,
                closed=closed,
            )
        iterator = page.get("NextShardIterator")
        if iterator is None or not behind:  # the shard's end, or its tip
            break
    return ShardPosition(shard_id, read_through, millis_behind_latest=behind, closed=closed)


def lag_table(shards: list[ShardPosition], arrivals: Mapping[str, float], now: float | None = None) -> list[dict]:
    """One plain row per shard for a materialisation's metadata: what was read, what waits."""
    now = time.time() if now is None else now
    return [
        {
            "shard": s.shard_id,
            "last_sequence_read": s.read_through or "",
            "last_read_age_s": round(now - arrivals[s.shard_id], 1) if s.shard_id in arrivals else None,
            "at_tip": not s.waiting,
            "first_unread_age_s": round(s.waiting_seconds(now), 1) if s.waiting else 0.0,
            "millis_behind_latest": s.millis_behind_latest,
            "closed": s.closed,
        }
        for s in shards
    ]
