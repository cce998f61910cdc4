"""The broker behind the REST proxy: topics, each one partition with its log and its sink.

State lives under ``state_dir`` as ``<topic>-0/`` (Kafka's log directory naming), holding the
log segments and the sink's ``sink.json`` mark. A lock file keeps a second gateway off the same
state directory.

A topic new to the state directory may already have objects in the bucket (the state directory
was deleted, or another machine landed them): its offsets then start after the last landed
record, so no existing object is ever overwritten.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from pintrest_assets.bucket import Bucket
from pintrest_assets.kafka.log import PartitionLog
from pintrest_assets.kafka.protocol import RestError, topic_not_found
from pintrest_assets.kafka.sink import PartitionSink, SinkMark
from pintrest_assets.kafka.rest_proxy_v2 import BROKER_NOT_AVAILABLE
from pintrest_assets.kafka.sink_layout import count_records, parse_object_key, partition_prefix
from pintrest_assets.topics import is_valid_topic_name

PARTITION = 0  # every topic has one partition, as in the original set-up


class StateDirInUse(Exception):
    """Another gateway holds the state directory."""


@dataclass
class _TopicPartition:
    log: PartitionLog
    sink: PartitionSink


class Broker:
    def __init__(
        self,
        bucket: Bucket,
        state_dir: Path,
        flush_size: int = 100,
        rotate_interval_ms: int = 5000,
        auto_create_topics: bool = True,
        fsync: bool = True,
    ):
        if flush_size < 1:
            raise ValueError(f"flush_size must be at least 1, got {flush_size}")
        if rotate_interval_ms < 1:
            raise ValueError(f"rotate_interval_ms must be at least 1, got {rotate_interval_ms}")
        self.bucket = bucket
        self.state_dir = Path(state_dir)
        self.flush_size = flush_size
        self.rotate_interval_ms = rotate_interval_ms
        self.auto_create_topics = auto_create_topics
        self.fsync = fsync
        self._topics: dict[str, _TopicPartition] = {}
        self._lock = threading.Lock()
        self._state_lock = FileLock(self.state_dir / ".lock", thread_local=False)

    def open(self) -> None:
        """Lock the state directory, recover every topic's log and start its sink."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._state_lock.acquire(timeout=0)
        except Timeout:
            raise StateDirInUse(f"another gateway is using the state directory {self.state_dir}") from None
        for path in sorted(self.state_dir.glob(f"*-{PARTITION}")):
            topic = path.name.rsplit("-", 1)[0]
            if path.is_dir() and is_valid_topic_name(topic):
                self._open_topic(topic)

    def close(self, timeout: float = 30.0) -> int:
        """Land everything pending (for up to ``timeout`` seconds), then release the state.

        Returns how many acknowledged records could not land; they land on the next start.
        """
        with self._lock:
            partitions = list(self._topics.values())
        for tp in partitions:  # all at once: the sinks land in parallel
            tp.sink.stop(timeout)
        for tp in partitions:
            tp.sink.join()
            tp.log.close()
        if self._state_lock.is_locked:
            self._state_lock.release()
        return sum(tp.sink.pending for tp in partitions)

    def topics(self) -> list[str]:
        with self._lock:
            return sorted(self._topics)

    def has_topic(self, topic: str) -> bool:
        with self._lock:
            return topic in self._topics

    def create_topic(self, topic: str) -> None:
        """Create the topic if it does not exist yet."""
        if not is_valid_topic_name(topic):
            raise ValueError(f"{topic!r} is not a valid Kafka topic name")
        with self._lock:
            if topic not in self._topics:
                self._open_topic(topic)

    def append(self, topic: str, lines: list[bytes]) -> int:
        """Append records to the topic (creating it when auto-create is on); the first offset."""
        with self._lock:
            tp = self._topics.get(topic)
            if tp is None:
                if not self.auto_create_topics:
                    raise topic_not_found()
                try:
                    tp = self._open_topic(topic)
                except Exception as exc:  # e.g. the bucket cannot be listed: the client may retry
                    raise RestError(503, BROKER_NOT_AVAILABLE, f"Cannot create topic {topic}: {exc}") from exc
        first = tp.log.append(lines) if lines else tp.log.next_offset
        tp.sink.wake()
        return first

    def status(self) -> dict:
        """Per topic: the next offset, what has landed below it, and the sink's health."""
        with self._lock:
            partitions = dict(self._topics)
        return {
            topic: {
                "next_offset": tp.log.next_offset,
                "landed_offset": tp.sink.mark.landed,
                "pending": tp.sink.pending,
                "objects_landed": tp.sink.objects_landed,
                "last_error": tp.sink.last_error,
            }
            for topic, tp in sorted(partitions.items())
        }

    def _open_topic(self, topic: str) -> _TopicPartition:
        directory = self.state_dir / f"{topic}-{PARTITION}"
        if directory.is_dir():
            mark = SinkMark.load(directory / "sink.json")
        else:
            mark = SinkMark(directory / "sink.json", landed=self._end_of_landed(topic))
            directory.mkdir(parents=True)
            mark.save(self.fsync)
        plog = PartitionLog(directory, fsync=self.fsync, start_offset=mark.landed)
        plog.discard_below(mark.landed)
        sink = PartitionSink(
            topic, PARTITION, plog, mark, self.bucket, self.flush_size, self.rotate_interval_ms, self.fsync
        )
        tp = self._topics[topic] = _TopicPartition(plog, sink)
        sink.start()
        return tp

    def _end_of_landed(self, topic: str) -> int:
        """The offset after the last record already in the bucket for the topic (0 if none)."""
        last = None
        for info in self.bucket.list(partition_prefix(topic, PARTITION)):
            key = parse_object_key(info.key)
            if key is not None and key.topic == topic:
                last = (info.key, key.start_offset)
        if last is None:
            return 0
        return last[1] + count_records(self.bucket.get(last[0]))
