"""Which acknowledged records have landed in the bucket, by offset, and waiting until they all have."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from pintrest_assets.bucket import Bucket
from pintrest_assets.kafka.sink_layout import count_records, parse_object_key, partition_prefix


class LandingWatcher:
    """Counts the records of a topic partition landed in the bucket, reading each object once.

    An object starting at offset s with n lines holds offsets s..s+n-1 (the sink's layout), so
    the landed offsets follow from keys and line counts; polling reads only objects new since
    the last look.
    """

    def __init__(self, bucket: Bucket, topic: str, partition: int = 0):
        self.bucket = bucket
        self.prefix = partition_prefix(topic, partition)
        self._lines: dict[int, int] = {}  # start offset -> records in the object
        self._last_key: str | None = None

    def refresh(self) -> None:
        for obj in self.bucket.list(self.prefix, start_after=self._last_key):
            key = parse_object_key(obj.key)
            if key is not None:
                self._lines[key.start_offset] = count_records(self.bucket.get(obj.key))
            self._last_key = obj.key

    def landed(self, first: int, last: int) -> int:
        """How many offsets in ``first..last`` are in the bucket."""
        self.refresh()
        return sum(
            max(0, min(last, start + lines - 1) - max(first, start) + 1) for start, lines in self._lines.items()
        )


# topic -> partition -> (first, last) acknowledged offset, as a stream's ``offset_ranges`` metadata holds them
OffsetRanges = Mapping[str, Mapping[int | str, tuple[int, int] | list[int]]]


def wait_until_landed(
    bucket: Bucket,
    offset_ranges: OffsetRanges,
    *,
    timeout: float,
    poll_interval: float = 0.5,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Polls the bucket until every acknowledged offset has landed, or ``timeout`` seconds pass.

    Returns the records landed per topic (fewer than acknowledged after a timeout) and calls
    ``on_progress(landed, acknowledged)`` with the totals after each look.
    """
    watchers = {
        (topic, partition): LandingWatcher(bucket, topic, int(partition))
        for topic, partitions in offset_ranges.items()
        for partition in partitions
    }
    expected = sum(last - first + 1 for partitions in offset_ranges.values() for first, last in partitions.values())
    deadline = time.monotonic() + timeout
    while True:
        landed = {
            topic: sum(watchers[topic, partition].landed(first, last) for partition, (first, last) in partitions.items())
            for topic, partitions in offset_ranges.items()
        }
        if on_progress is not None:
            on_progress(sum(landed.values()), expected)
        if sum(landed.values()) >= expected or time.monotonic() > deadline:
            return landed
        time.sleep(poll_interval)
