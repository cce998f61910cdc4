"""Which acknowledged records have landed in the bucket, by offset."""

from __future__ import annotations

from pintrest_assets.bucket import Bucket
from pintrest_assets.sink_layout import count_records, parse_object_key, partition_prefix


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
